"""Scopes: ``resource:action`` grants matched against what a request requires (pure).

Scopes are case-sensitive (RFC 6749). ``*`` is a wildcard only as a whole segment: ``jobs:*`` and
``*:*`` are grants, ``jo*:request`` is not a scope at all. A required scope is matched literally, so
requiring ``jobs:*`` needs a grant of ``jobs:*`` or ``*:*``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from jobforge.errors import InsufficientScope, InvalidRequest

_SEGMENT = r"(?:\*|[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})"
_SCOPE = re.compile(rf"{_SEGMENT}:{_SEGMENT}")

#: what an operator (Temporal access, the CLI on the dev stack) is granted
OPERATOR_SCOPES: tuple[str, ...] = ("*:*",)


def check_scope(scope: str) -> str:
    """``scope`` when it is well formed, else :class:`InvalidRequest`."""
    if not _SCOPE.fullmatch(scope):
        raise InvalidRequest(
            f"{scope[:80]!r} is not a scope: use resource:action, where '*' may stand for a whole segment",
            field="scopes")
    return scope


def parse_scopes(text: str) -> tuple[str, ...]:
    """``'jobs:*, events:write'`` → ``('events:write', 'jobs:*')`` (validated, de-duplicated, sorted)."""
    parts = [part.strip() for part in re.split(r"[,\s]+", text) if part.strip()]
    if not parts:
        raise InvalidRequest("at least one scope is needed", field="scopes")
    return tuple(sorted({check_scope(part) for part in parts}))


def grants(granted: str, required: str) -> bool:
    """Whether the single grant ``granted`` covers the single requirement ``required``."""
    if not (_SCOPE.fullmatch(granted) and _SCOPE.fullmatch(required)):
        return False
    g_resource, g_action = granted.split(":")
    r_resource, r_action = required.split(":")
    return g_resource in ("*", r_resource) and g_action in ("*", r_action)


def missing_scopes(granted: Iterable[str], required: Iterable[str]) -> list[str]:
    """The required scopes no grant covers, in the order required."""
    held = tuple(granted)
    return [need for need in dict.fromkeys(required) if not any(grants(g, need) for g in held)]


def require_scopes(granted: Iterable[str], required: Iterable[str]) -> None:
    """Raise :class:`InsufficientScope` naming every missing scope."""
    required = tuple(required)
    missing = missing_scopes(granted, required)
    if missing:
        raise InsufficientScope(missing=missing, required=list(required))
