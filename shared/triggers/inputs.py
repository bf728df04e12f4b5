"""Inputs of a trigger-fired run: static inputs plus values taken from the event by JSON pointer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobforge.errors import InvalidInputs


def resolve_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901: ``/payload/items/0/id``; a missing path raises KeyError naming it."""
    if pointer == "":
        return document
    current = document
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, Mapping) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            raise KeyError(pointer)
    return current


def build_inputs(static: Mapping[str, Any], pointers: Mapping[str, str],
                 event: Mapping[str, Any] | None) -> dict[str, Any]:
    """``static`` overlaid with ``{name: event[pointer]}``; a pointer the event lacks is a typed error."""
    inputs = dict(static)
    if not pointers:
        return inputs
    if event is None:
        raise InvalidInputs("this trigger takes inputs from an event, and there is none")
    for name, pointer in pointers.items():
        try:
            inputs[name] = resolve_pointer(event, pointer)
        except KeyError:
            raise InvalidInputs(f"input {name!r}: the event has nothing at {pointer}", input=name,
                                pointer=pointer) from None
    return inputs
