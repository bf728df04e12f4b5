"""Canonical JSON and input hashing (always on).

Canonical bytes: UTF-8 JSON with sorted keys, no insignificant whitespace, integers as integers,
floats in their shortest round-trip form, strings NFC-normalised. The same value always gives the
same bytes, so the same inputs always give the same hash.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

import orjson


def _normalise(value: Any) -> Any:
    # explicit stack, no recursion: inputs may be deep before validation has run
    root: list[Any] = [None]
    stack: list[tuple[Any, list[Any] | dict[str, Any], int | str]] = [(value, root, 0)]
    while stack:
        item, parent, slot = stack.pop()
        if isinstance(item, str):
            out: Any = unicodedata.normalize("NFC", item)
        elif isinstance(item, dict):
            out = {}
            for key, child in item.items():
                stack.append((child, out, unicodedata.normalize("NFC", str(key))))
        elif isinstance(item, list | tuple):
            out = [None] * len(item)
            for index, child in enumerate(item):
                stack.append((child, out, index))
        elif isinstance(item, float) and item.is_integer() and abs(item) < 2**53:
            out = int(item)
        else:
            out = item
        parent[slot] = out  # type: ignore[index]
    return root[0]


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON-compatible value."""
    return orjson.dumps(_normalise(value), option=orjson.OPT_SORT_KEYS)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def input_hash(inputs: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``inputs``."""
    return "sha256:" + sha256_hex(canonical_json(inputs))


def verify_input_hash(inputs: Any, expected: str) -> bool:
    """Whether ``inputs`` hash to ``expected``."""
    return input_hash(inputs) == expected
