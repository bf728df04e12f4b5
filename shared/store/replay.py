"""The replay pack's part of the store: provenance, captured histories and bundle records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.models import RunStatus
from shared.store.store import Store
from shared.store.tables import ArtifactRow, ReplayBundleRow, RunHistoryRow, RunProvenanceRow, RunRow


class ReplayStore:
    def __init__(self, store: Store) -> None:
        self._session = async_sessionmaker(store.engine, expire_on_commit=False)

    async def save_provenance(self, run_id: str, tenant_id: str, input_hash: str,
                              provenance: dict[str, Any]) -> None:
        """Keep the first capture of a run (a retried activity does not overwrite it)."""
        stmt = insert(RunProvenanceRow).values(run_id=run_id, tenant_id=tenant_id, input_hash=input_hash,
                                               provenance=provenance)
        async with self._session.begin() as session:
            await session.execute(stmt.on_conflict_do_nothing(index_elements=[RunProvenanceRow.run_id]))

    async def provenance(self, run_id: str) -> dict[str, Any] | None:
        async with self._session() as session:
            row = await session.get(RunProvenanceRow, run_id)
        return dict(row.provenance) if row else None

    async def runs_without_history(self, limit: int = 50) -> Sequence[tuple[str, str, str]]:
        """(tenant, workflow id, run id) of finished runs whose history is not captured yet, newest first.

        Newest first: runs Temporal no longer has (closed before REPLAY_PACK_ENABLED was turned on, past
        retention) stay uncaptured for good, and must not keep just-closed runs from being captured.
        """
        stmt = (select(RunRow.tenant_id, RunRow.workflow_id, RunRow.run_id)
                .outerjoin(RunHistoryRow, RunHistoryRow.run_id == RunRow.run_id)
                .where(RunRow.status.in_([s.value for s in RunStatus.final()]), RunHistoryRow.run_id.is_(None))
                .order_by(RunRow.finished_at.desc().nulls_last()).limit(limit))
        async with self._session() as session:
            return [(r[0], r[1], r[2]) for r in (await session.execute(stmt)).all()]

    async def save_history(self, run_id: str, tenant_id: str, workflow_id: str, history: bytes, events: int) -> None:
        stmt = insert(RunHistoryRow).values(run_id=run_id, tenant_id=tenant_id, workflow_id=workflow_id,
                                            history=history, events=events)
        async with self._session.begin() as session:
            await session.execute(stmt.on_conflict_do_nothing(index_elements=[RunHistoryRow.run_id]))

    async def history(self, run_id: str) -> bytes | None:
        async with self._session() as session:
            row = await session.get(RunHistoryRow, run_id)
        return bytes(row.history) if row else None

    async def record_bundle(self, tenant_id: str, run_id: str, bundle_sha256: str, replay_sha256: str,
                            location: str) -> None:
        async with self._session.begin() as session:
            session.add(ReplayBundleRow(tenant_id=tenant_id, run_id=run_id, bundle_sha256=bundle_sha256,
                                        replay_sha256=replay_sha256, location=location))

    async def bundles(self, tenant_id: str, run_id: str) -> Sequence[dict[str, Any]]:
        stmt = (select(ReplayBundleRow).where(ReplayBundleRow.tenant_id == tenant_id,
                                              ReplayBundleRow.run_id == run_id)
                .order_by(ReplayBundleRow.created_at.desc()))
        async with self._session() as session:
            rows = (await session.execute(stmt)).scalars().all()
        return [{"bundle_sha256": r.bundle_sha256, "replay_sha256": r.replay_sha256, "location": r.location,
                 "created_at": r.created_at.isoformat()} for r in rows]

    async def artifacts(self, tenant_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's artifacts as manifest entries (name, kind, media type, sha256, size), by name."""
        stmt = (select(ArtifactRow).where(ArtifactRow.tenant_id == tenant_id, ArtifactRow.run_id == run_id)
                .order_by(ArtifactRow.name))
        async with self._session() as session:
            rows = (await session.execute(stmt)).scalars().all()
        return [{"name": r.name, "kind": r.kind, "media_type": r.media_type, "sha256": r.sha256, "size": r.size}
                for r in rows]
