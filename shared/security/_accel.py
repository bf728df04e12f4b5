"""The optional C accelerator :mod:`shared._native`: its functions, or None each.

``setup.py`` builds it when a C compiler is at hand (``optional=True``). Without it, or when the
environment sets ``JOBFORGE_NATIVE=0`` before import, :mod:`shared.security.limits` and
:mod:`shared.security.redaction` run their pure-Python code. Both paths give the same answers
(``tests/unit/test_security_native.py`` holds them to each other): the limits pre-check only says
"plain JSON within the limits" or "look closer", and the redaction engine runs the algorithm and the
rule set of :mod:`shared.security.redaction`, which configures it.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared._native import Redactor as _Redactor

#: ``check_limits(value, max_depth, max_string, max_array)``: True = plain JSON within the limits
check_limits: Callable[[Any, int, int, int], bool] | None = None
#: ``count_containers(data)``: the objects and arrays of a JSON text, counted on its bytes
count_containers: Callable[[bytes], int] | None = None
#: ``Redactor(config)``: the redaction engine in C
Redactor: type[_Redactor] | None = None


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
        count_containers = getattr(_native, "count_containers", None)
        Redactor = getattr(_native, "Redactor", None)

#: which implementation runs: "native" or "python"
IMPLEMENTATION = "native" if Redactor is not None else "python"


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a step builds a large value without cycles (a
    parsed document, a redacted copy).

    Its generation-0 passes run every 700 new containers and re-examine the young ones, so a
    container-dense document (``[[[[0]]]]`` repeated: one list per two bytes) cost 3-5x per byte what
    a plain document costs to parse or copy. Held off, the next collection sees the value once.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
