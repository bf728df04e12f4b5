"""Payload limits: total bytes, nesting depth, string length, array length (pure).

:func:`check_structure` first asks a pre-check whether the document is plain JSON (exact ``dict``,
``list``, ``str``, ``int``, ``float``, ``bool``, ``None``, string keys) within the limits. With the
optional C accelerator (``shared._native.check_limits``, see :mod:`shared.security._accel`) that is
one walk with an explicit stack and no allocation per node: about 0.05-0.3x of ``orjson.loads`` on
a 1 MB document (``bench/security.py``). Without it (no compiler at install, or
``JOBFORGE_NATIVE=0``), :func:`_fast_scan` makes one level-order pass with an explicit work list,
classifying each level with C-level iterators: about 1.1-2.1x of ``orjson.loads``, more on a freshly
parsed document (every string its own object). Both accept exactly the same documents.

Only when the pre-check says "look closer" (a limit broken, or a type that is not exactly a JSON
type: subclasses, tuples, non-string keys, other objects) does :func:`_find_violation`, pure Python,
walk the document in order to find the first offending node and name its JSON path; it alone
decides a refusal and its message. No recursion anywhere (no recursion limit), linear work.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import is_
from typing import Any

import orjson

from jobforge.errors import PayloadLimitExceeded, PayloadTooLarge, UnstorableText
from shared.security._accel import check_limits as _native_check_limits
from shared.security._accel import collector_paused
from shared.security._accel import count_containers as _native_count_containers

_SCALARS = frozenset({int, float, bool, type(None)})
_KNOWN = frozenset({dict, list, str}) | _SCALARS
_CONTAINERS = frozenset({dict, list})


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    """The seeded defaults of the threat model; every one is configurable."""

    max_bytes: int = 1_048_576
    max_depth: int = 10
    max_string: int = 100_000
    max_array: int = 10_000
    #: objects and arrays in one request body, counted on its bytes before it is parsed: parsing
    #: allocates one Python object per container, the dearest thing a body can ask for per byte
    max_containers: int = 50_000


DEFAULT_LIMITS = PayloadLimits()
#: with JOBFORGE_SECURITY_VALIDATION_ENABLED off, payloads are still capped at this multiple of max_bytes
HARD_CAP_FACTOR = 10


def check_size(nbytes: int, limits: PayloadLimits = DEFAULT_LIMITS) -> None:
    """Refuse a document of ``nbytes`` bytes when it is over ``max_bytes``."""
    if nbytes > limits.max_bytes:
        raise PayloadTooLarge(limit="max_bytes", allowed=limits.max_bytes, actual=nbytes)


def _fast_scan(value: Any, limits: PayloadLimits) -> bool:
    """True when ``value`` is within the structural limits (False = look closer)."""
    frontier: list[Any] = [value]
    depth = 0
    while frontier:
        types = list(map(type, frontier))
        if not _KNOWN.issuperset(types):
            return False  # subclasses or non-JSON types: let the exact walk judge them
        strings = compress(frontier, map(is_, types, repeat(str)))
        if max(map(len, strings), default=0) > limits.max_string:
            return False
        dicts = list(compress(frontier, map(is_, types, repeat(dict))))
        lists = list(compress(frontier, map(is_, types, repeat(list))))
        if not dicts and not lists:
            return True
        depth += 1
        if depth > limits.max_depth:
            return False
        if max(map(len, lists), default=0) > limits.max_array:
            return False
        keys = set(chain.from_iterable(dicts))  # documents repeat their keys: check each once
        if keys:
            if not all(map(is_, map(type, keys), repeat(str))):
                return False
            if max(map(len, keys)) > limits.max_string:
                return False
        frontier = list(chain(chain.from_iterable(map(dict.values, dicts)), chain.from_iterable(lists)))
    return True


_Path = tuple[Any, ...] | None  # linked list: (parent, key), materialised only for an error


def render_path(path: _Path) -> str:
    """``$.a[3]['odd key']`` for a linked path."""
    parts: list[str] = []
    while path is not None:
        path, key = path
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif isinstance(key, str) and key.isidentifier():
            parts.append(f".{key}")
        else:
            try:
                quoted = orjson.dumps(str(key)).decode()
            except TypeError:  # an unpaired surrogate: the stdlib escapes it
                quoted = json.dumps(str(key))
            parts.append("[" + quoted.replace('"', "'") + "]")
    return "$" + "".join(reversed(parts))


def _walk(value: Any) -> Iterator[tuple[Any, int, _Path]]:
    """Every node in document order with its depth (containers count) and path; explicit stack."""
    stack: list[tuple[Any, int, _Path]] = [(value, 0, None)]
    while stack:
        node, depth, path = stack.pop()
        yield node, depth, path
        if isinstance(node, dict):
            stack.extend((child, depth + 1, (path, key)) for key, child in reversed(list(node.items())))
        elif isinstance(node, list | tuple):
            stack.extend((node[i], depth + 1, (path, i)) for i in range(len(node) - 1, -1, -1))


def _find_violation(value: Any, limits: PayloadLimits) -> PayloadLimitExceeded | None:
    for node, depth, path in _walk(value):
        if isinstance(node, dict | list | tuple):
            if depth + 1 > limits.max_depth:
                return PayloadLimitExceeded(limit="max_depth", allowed=limits.max_depth, actual=depth + 1,
                                            path=render_path(path))
            if not isinstance(node, dict) and len(node) > limits.max_array:
                return PayloadLimitExceeded(limit="max_array", allowed=limits.max_array, actual=len(node),
                                            path=render_path(path))
            if isinstance(node, dict):
                for key in node:
                    if not isinstance(key, str):
                        return PayloadLimitExceeded(
                            "object keys must be strings", limit="key_type", allowed=0, actual=0,
                            path=render_path(path))
                    if len(key) > limits.max_string:
                        return PayloadLimitExceeded(limit="max_string", allowed=limits.max_string,
                                                    actual=len(key), path=render_path((path, key)))
        elif isinstance(node, str):
            if len(node) > limits.max_string:
                return PayloadLimitExceeded(limit="max_string", allowed=limits.max_string, actual=len(node),
                                            path=render_path(path))
        elif not (node is None or isinstance(node, bool | int | float)):
            return PayloadLimitExceeded(f"{type(node).__name__} is not a JSON value", limit="json_type",
                                        allowed=0, actual=0, path=render_path(path))
    return None


def _within_limits(value: Any, limits: PayloadLimits) -> bool:
    """True when ``value`` is plain JSON within the structural limits (False = look closer)."""
    if _native_check_limits is not None:
        try:
            return _native_check_limits(value, limits.max_depth, limits.max_string, limits.max_array)
        except (OverflowError, TypeError):  # a limit beyond a C integer (or not an int): judge in Python
            pass
    return _fast_scan(value, limits)


def check_structure(value: Any, limits: PayloadLimits = DEFAULT_LIMITS) -> None:
    """Refuse a document whose depth, strings or arrays break ``limits``, naming limit and path."""
    if _within_limits(value, limits):
        return
    problem = _find_violation(value, limits)
    if problem is not None:
        raise problem


def check_payload(value: Any, limits: PayloadLimits = DEFAULT_LIMITS, *, nbytes: int | None = None) -> None:
    """All limits on a parsed document; ``nbytes`` is its wire size (measured here when not given)."""
    if nbytes is None:
        try:
            nbytes = len(orjson.dumps(value))
        except TypeError:  # integers beyond 64 bits, or values that are not JSON at all
            try:
                nbytes = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
            except (TypeError, ValueError):
                nbytes = 0  # not JSON: check_structure names the offending value
    check_size(nbytes, limits)
    check_structure(value, limits)


# -- text PostgreSQL cannot store ----------------------------------------------------------------

#: NUL (text and jsonb refuse it) and surrogates (no UTF-8 form: only unpaired ones reach a str)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _serialised_clean(value: Any) -> bool:
    """True when ``value`` serialises as JSON without NUL or surrogates (one orjson pass; False = look closer)."""
    try:
        raw = orjson.dumps(value)
    except TypeError:  # surrogates, non-str keys, big ints, non-JSON objects: walk to be sure
        return False
    # an escaped backslash then ``u0000`` is text, not a NUL: in orjson's output every backslash starts
    # an escape, so dropping the ``\\\\`` pairs leaves exactly the real ``\\u0000`` escapes
    return b"\\u0000" not in raw or (b"\\\\" in raw and b"\\u0000" not in raw.replace(b"\\\\", b""))


def find_unstorable(value: Any) -> tuple[str, str] | None:
    """(JSON path, the character) of the first string or key PostgreSQL cannot store, or None.

    Linear: one serialisation answers the common case. A document that may hold such text is
    narrowed by halves: a run of a container's children is serialised once, and only a run that may
    hold such text is split and looked into (a dict's keys first, then its values), so finding the
    one bad string in a large document costs a few serialisations of it, not a walk in Python.
    """
    if isinstance(value, str):
        found = _UNSTORABLE.search(value)
        return ("$", found.group()) if found else None
    if _serialised_clean(value):
        return None
    # entries, next on top: a node that may hold such text, or a run of a container's children (with
    # whether it is known to serialise unclean: the root's children when its keys are clean)
    stack: list[tuple[Any, _Path, list[tuple[Any, Any]] | None, bool]] = [(value, None, None, True)]
    while stack:
        node, path, run, unclean = stack.pop()
        if run is not None:
            if len(run) > 1 and not unclean and _serialised_clean([child for _, child in run]):
                continue
            if len(run) == 1:
                key, child = run[0]
                stack.append((child, (path, key), None, False))
            else:
                half = len(run) // 2
                stack.append((None, path, run[half:], False))
                stack.append((None, path, run[:half], False))
        elif isinstance(node, str):
            found = _UNSTORABLE.search(node)
            if found:
                return render_path(path), found.group()
        elif isinstance(node, dict):
            for key in node:
                found = _UNSTORABLE.search(key) if isinstance(key, str) else None
                if found:
                    return render_path((path, key)), found.group()
            if node:
                stack.append((None, path, list(node.items()), unclean))
        elif isinstance(node, list | tuple) and node:
            stack.append((None, path, list(enumerate(node)), unclean))
    return None


def check_storable(value: Any, what: str, path: str = "$") -> None:
    """Refuse ``value`` (a document, or one string at ``path``) when it holds text PostgreSQL cannot store.

    ``what`` names it in the refusal ("the inputs", "the event"); paths are JSON paths within it.
    """
    found = find_unstorable(value)
    if found is not None:
        where, char = found
        raise UnstorableText(path if where == "$" else path + where[1:], char, what)


def pg_text(value: str) -> str:
    """``value`` storable in a PostgreSQL text column: NUL and unpaired surrogates as U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", value) if not value.isascii() or "\x00" in value else value


def storable(value: Any) -> Any:
    """``value`` with every NUL and unpaired surrogate in its strings and keys replaced by U+FFFD
    (what the store writes for text it did not refuse earlier, e.g. a step's output in a summary)."""
    if _serialised_clean(value):
        return value
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while stack:
        item, parent, slot = stack.pop()
        out: Any
        if isinstance(item, str):
            out = _UNSTORABLE.sub("\ufffd", item)
        elif isinstance(item, dict):
            out = {}
            for key, child in item.items():
                clean_key = _UNSTORABLE.sub("\ufffd", key) if isinstance(key, str) else key
                out[clean_key] = None
                stack.append((child, out, clean_key))
        elif isinstance(item, list | tuple):
            out = [None] * len(item)
            stack.extend((child, out, index) for index, child in enumerate(item))
        else:
            out = item
        parent[slot] = out
    return root[0]


def _containers(value: Any) -> int:
    """The objects and arrays of a parsed document (level by level, no recursion)."""
    count = 0
    frontier = [value]
    while frontier:
        following: list[Any] = []
        for node in frontier:
            if type(node) is dict:
                count += 1
                following.extend(node.values())
            elif type(node) is list:
                count += 1
                following.extend(node)
        frontier = following
    return count


def _too_many_containers(count: int, limits: PayloadLimits) -> PayloadLimitExceeded | None:
    if count <= limits.max_containers:
        return None
    return PayloadLimitExceeded(limit="max_containers", allowed=limits.max_containers, actual=count)


def parse_and_check(raw: bytes, limits: PayloadLimits = DEFAULT_LIMITS) -> Any:
    """Parse JSON bytes and check every limit: size and the number of objects and arrays before
    parsing (with the C accelerator; without it, the count is checked right after), then the rest."""
    from jobforge.errors import InvalidRequest

    check_size(len(raw), limits)
    # '{' and '[' anywhere bound the containers from above (two C-speed counts); only a body over the
    # limit by that bound is counted exactly, skipping its strings
    over_bound = raw.count(b"{") + raw.count(b"[") > limits.max_containers
    if over_bound and _native_count_containers is not None:
        problem = _too_many_containers(_native_count_containers(raw), limits)
        if problem is not None:
            raise problem
    try:
        with collector_paused():
            value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {str(exc).splitlines()[0][:200]}") from None
    if over_bound and _native_count_containers is None:
        problem = _too_many_containers(_containers(value), limits)
        if problem is not None:
            raise problem
    check_structure(value, limits)
    return value
