"""JobForge's own PostgreSQL store: tables, migrations and the typed :class:`Store` interface.

``Store`` loads psycopg and the store's modules when first named (``from shared.store import Store``), so
``shared.store.direct``, ``shared.store.statements`` and the other light modules of the package can be
imported without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.store.store import Store

__all__ = ["Store"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from shared.store import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
