"""How the service processes start: ``jobforge-worker`` and ``jobforge-api`` (and ``python -m workers.boot worker|api``,
which ``jobforge dev`` launches) import their modules with the cyclic garbage collector paused, then run ``main()``.

Importing a process's code (Temporal's SDK, FastAPI, pydantic's models) makes hundreds of thousands of objects
that live as long as the process; the collector's passes over them while they are being made free nothing. Paused,
the API's import takes about a fifth less CPU (docs/performance.md, start-up). The collector runs as usual from
``main()`` on. ``python -m workers.worker`` / ``workers.api`` start the same processes without the pause.
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Callable

#: the service processes: name (``jobforge-NAME``) → the module whose ``main()`` runs it
SERVICES = {"worker": "workers.worker", "api": "workers.api"}


def imported_main(module: str) -> Callable[[], None]:
    """``module``'s ``main``, imported with the collector paused (it is enabled again whatever the import did)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        main: Callable[[], None] = importlib.import_module(module).main
    finally:
        if was_enabled:
            gc.enable()
    return main


def worker() -> None:
    """``jobforge-worker``."""
    imported_main(SERVICES["worker"])()


def api() -> None:
    """``jobforge-api``."""
    imported_main(SERVICES["api"])()


def boot(argv: list[str]) -> None:
    """``python -m workers.boot NAME ARGS...``: the service NAME with ARGS, as ``jobforge-NAME ARGS...`` runs it."""
    if not argv or argv[0] not in SERVICES:
        raise SystemExit(f"usage: python -m workers.boot {{{'|'.join(SERVICES)}}} [ARGS...]")
    main = imported_main(SERVICES[argv[0]])
    sys.argv = [f"jobforge-{argv[0]}", *argv[1:]]
    main()


if __name__ == "__main__":
    boot(sys.argv[1:])
