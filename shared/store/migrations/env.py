"""Alembic environment: online migrations only, URL handed over by ``shared.store.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from shared.store.tables import Base

config = context.config
url = config.attributes.get("jobforge_url")
if not url:
    raise RuntimeError("run migrations through `jobforge db upgrade` (the URL comes from JobForge settings)")

engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    # two processes migrating at once (N workers starting) take turns instead of racing
    connection.execute(text("SELECT pg_advisory_lock(7212345001)"))
    connection.commit()
    try:
        context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(7212345001)"))
        connection.commit()
engine.dispose()
