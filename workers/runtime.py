"""What every JobForge process builds from its settings: store, flags, registry, Temporal client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from temporalio.client import Client

from shared.client import JobForgeClient
from shared.errors import StoreUnavailable
from shared.flags import FlagReader
from shared.gate import Gate
from shared.settings import Settings
from shared.store import Store
from shared.templates import Registry, load_registry
from shared.temporal import connect


@dataclass
class Runtime:
    settings: Settings
    store: Store
    flags: FlagReader
    registry: Registry
    temporal: Client | None = None
    _gate: Gate | None = field(default=None, repr=False)

    @property
    def gate(self) -> Gate:
        """The security gate over this runtime's store, flags and registry (built on first use)."""
        if self._gate is None:
            self._gate = Gate(self.store.engine, self.settings, self.flags, self.registry)
        return self._gate

    def client(self) -> JobForgeClient:
        """The SDK over Temporal-direct, with the gate: trusted operator access (``operator_scopes``)."""
        assert self.temporal is not None, "runtime opened without Temporal"
        return JobForgeClient(self.temporal, self.settings, self.registry, store=self.store, flags=self.flags,
                              gate=self.gate)


def database_url(settings: Settings) -> str:
    url = settings.database_url_value()
    if not url:
        raise StoreUnavailable(
            "no database: set JOBFORGE_DATABASE_URL, or start the embedded stack with `jobforge dev`")
    return url


@asynccontextmanager
async def open_runtime(settings: Settings, *, temporal: bool = True) -> AsyncIterator[Runtime]:
    store = Store.from_url(database_url(settings), settings.database_pool_size)
    try:
        flags = FlagReader(store.flag_overrides, settings.flag_override_ttl_seconds)
        client = await connect(settings) if temporal else None
        yield Runtime(settings, store, flags, load_registry(settings), client)
    finally:
        await store.close()
