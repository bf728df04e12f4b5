"""JobForge's own PostgreSQL store: tables, migrations and the typed :class:`Store` interface."""

from shared.store.store import Store, create_engine

__all__ = ["Store", "create_engine"]
