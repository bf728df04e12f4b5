"""The optional C accelerator :mod:`shared._native`: its functions, or None each.

``setup.py`` builds it when a C compiler is at hand (``optional=True``). Without it, or when the
environment sets ``JOBFORGE_NATIVE=0`` before import, :mod:`shared.security.limits` and
:mod:`shared.security.redaction` run their pure-Python code. Both paths give the same answers
(``tests/unit/test_security_native.py`` holds them to each other); the native functions are fast
pre-checks, never the code that decides a refusal or explains it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from shared._native import Matcher as _Matcher

#: ``check_limits(value, max_depth, max_string, max_array)``: True = plain JSON within the limits
check_limits: Callable[[Any, int, int, int], bool] | None = None
#: ``collect_keys(value)``: every dict key; None for a non-plain value type; False = undecided
collect_keys: Callable[[Any], set[str] | Literal[False] | None] | None = None
#: ``Matcher(words, fold_words)``: one-pass keyword search
Matcher: type[_Matcher] | None = None


def enabled() -> bool:
    """False when the environment says ``JOBFORGE_NATIVE=0`` (or false/no/off)."""
    return os.environ.get("JOBFORGE_NATIVE", "").strip().lower() not in {"0", "false", "no", "off"}


if enabled():
    try:
        from shared import _native
    except ImportError:  # installed without a C compiler
        pass
    else:
        check_limits = _native.check_limits
        collect_keys = _native.collect_keys
        Matcher = _native.Matcher

#: which implementation runs: "native" or "python"
IMPLEMENTATION = "native" if Matcher is not None else "python"
