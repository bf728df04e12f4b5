"""The replay pack's part of the store: provenance, captured histories and bundle records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from jobforge.models import RunStatus
from shared.store import statements as sql
from shared.store.columns import fit

if TYPE_CHECKING:
    from shared.store.store import Store


class ReplayStore:
    """Provenance, histories and bundles (:attr:`shared.store.Store.replay`)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def save_provenance(self, run_id: str, tenant_id: str, input_hash: str,
                              provenance: dict[str, Any]) -> None:
        """Keep the first capture of a run (a retried activity does not overwrite it)."""
        values = fit("run_provenance", {"run_id": run_id, "tenant_id": tenant_id, "input_hash": input_hash})
        async with self._store.connection() as conn:
            await conn.execute(sql.PROVENANCE_SAVE, {**values, "provenance": Jsonb(provenance)})

    async def provenance(self, run_id: str) -> dict[str, Any] | None:
        async with self._store.connection() as conn:
            row = await (await conn.execute(sql.PROVENANCE_GET, {"run_id": run_id})).fetchone()
        return dict(row[0]) if row else None

    async def runs_without_history(self, limit: int = 50) -> Sequence[tuple[str, str, str]]:
        """(tenant, workflow id, run id) of finished runs whose history is not captured yet, newest first.

        Newest first: runs Temporal no longer has (closed before REPLAY_PACK_ENABLED was turned on, past
        retention) stay uncaptured for good, and must not keep just-closed runs from being captured.
        """
        async with self._store.connection() as conn:
            rows = await (await conn.execute(sql.RUNS_WITHOUT_HISTORY, {
                "final": [s.value for s in RunStatus.final()], "limit": limit})).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    async def save_history(self, run_id: str, tenant_id: str, workflow_id: str, history: bytes, events: int) -> None:
        values = fit("run_histories", {"run_id": run_id, "tenant_id": tenant_id, "workflow_id": workflow_id})
        async with self._store.connection() as conn:
            await conn.execute(sql.HISTORY_SAVE, {**values, "history": history, "events": events})

    async def history(self, run_id: str) -> bytes | None:
        async with self._store.connection() as conn:
            row = await (await conn.execute(sql.HISTORY_GET, {"run_id": run_id})).fetchone()
        return bytes(row[0]) if row else None

    async def record_bundle(self, tenant_id: str, run_id: str, bundle_sha256: str, replay_sha256: str,
                            location: str) -> None:
        values = fit("replay_bundles", {"tenant_id": tenant_id, "run_id": run_id, "bundle_sha256": bundle_sha256,
                                        "replay_sha256": replay_sha256, "location": location})
        async with self._store.connection() as conn:
            await conn.execute(sql.BUNDLE_RECORD, values)

    async def bundles(self, tenant_id: str, run_id: str) -> Sequence[dict[str, Any]]:
        async with self._store.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(sql.BUNDLES_OF_RUN, {"tenant_id": tenant_id, "run_id": run_id})).fetchall()
        return [{"bundle_sha256": r["bundle_sha256"], "replay_sha256": r["replay_sha256"], "location": r["location"],
                 "created_at": r["created_at"].isoformat()} for r in rows]

    async def artifacts(self, tenant_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's artifacts as manifest entries (name, kind, media type, sha256, size), by name."""
        return [{"name": a.name, "kind": a.kind, "media_type": a.media_type, "sha256": a.sha256, "size": a.size}
                for a in await self._store.list_artifacts(tenant_id, run_id)]
