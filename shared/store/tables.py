"""SQLAlchemy 2 typed declarative tables. Schema changes go through Alembic migrations.

A text column declared with ``info=clip()`` is free text the store cuts to its length (``clip(N)``: to N
characters); every other text column is refused whole when a value does not fit (``shared/store/columns.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.store.columns import clip

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True), dict[str, Any]: JSONB}


class RunRow(Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(512), index=True)
    #: clipped: admission records a rejected run under whatever its argument named
    tenant_id: Mapped[str] = mapped_column(String(63), info=clip())
    template_key: Mapped[str] = mapped_column(String(200), info=clip())
    status: Mapped[str] = mapped_column(String(16))
    trace_id: Mapped[str] = mapped_column(String(128), default="", info=clip())
    actor: Mapped[str] = mapped_column(String(200), default="", info=clip())
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    input_hash: Mapped[str] = mapped_column(String(80), default="")
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str] = mapped_column(Text, default="", info=clip())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_runs_tenant_created", "tenant_id", "created_at"),
        Index("ix_runs_tenant_trace", "tenant_id", "trace_id"),
        Index("ix_runs_tenant_status_created", "tenant_id", "status", "created_at"),
        Index("ix_runs_tenant_template_created", "tenant_id", "template_key", "created_at"),
        # the few runs not admitted yet, for the sweep of those whose workflow closed first (shared/stale_runs)
        Index("ix_runs_queued", "created_at", postgresql_where=text("status = 'queued'")),
    )


class FlagOverrideRow(Base):
    __tablename__ = "flag_overrides"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool]
    actor: Mapped[str] = mapped_column(String(200), default="", info=clip())
    reason: Mapped[str] = mapped_column(Text, default="", info=clip())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ArtifactRow(Base):
    """A file a run produced, content-addressed by sha256 in the tenant's artifact store."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(63))
    run_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(40))
    media_type: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    #: path relative to the artifact root
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        UniqueConstraint("tenant_id", "run_id", "name", name="uq_artifacts_run_name"),
        Index("ix_artifacts_tenant_run", "tenant_id", "run_id"),
    )


class VerifyCacheRow(Base):
    """A verify-pack verdict keyed by the code fingerprint it was computed for."""

    __tablename__ = "verify_cache"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(80), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(16))
    report: Mapped[dict[str, Any]]
    run_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


# -- the security gate -------------------------------------------------------------------------------


class TenantRow(Base):
    __tablename__ = "tenants"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), info=clip())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ApiKeyRow(Base):
    """A tenant's API key: only the SHA-256 of its secret is kept."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSONB)
    description: Mapped[str] = mapped_column(Text, default="", info=clip())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]


class RateLimitRow(Base):
    """GCRA state: one theoretical arrival time per bucket."""

    __tablename__ = "rate_limits"

    #: clipped: an actor's bucket names the actor, whose id the gate does not bound
    bucket: Mapped[str] = mapped_column(String(300), primary_key=True, info=clip())
    tat: Mapped[datetime]


class EventDedupeRow(Base):
    """The first sighting of (tenant, event type, event id) while its TTL runs."""

    __tablename__ = "event_dedupe"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    first_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    trace_id: Mapped[str] = mapped_column(String(128), default="", info=clip())
    payload_hash: Mapped[str] = mapped_column(String(80), default="")
    duplicates: Mapped[int] = mapped_column(Integer, default=0)


class AuditEntryRow(Base):
    """One link of a tenant's audit hash chain; ``body`` holds the sealed canonical bytes."""

    __tablename__ = "audit_log"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200), info=clip())
    action: Mapped[str] = mapped_column(String(100))
    resource: Mapped[str] = mapped_column(String(300), info=clip())
    decision: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(Text, info=clip(2000))
    trace_id: Mapped[str] = mapped_column(String(128), info=clip())


class AuditHeadRow(Base):
    """The last sealed entry of each tenant's chain (a tail deletion shows against it)."""

    __tablename__ = "audit_heads"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class PolicyTokenRow(Base):
    """An issued policy token: its binding, its one-way reference, and whether it was used."""

    __tablename__ = "policy_tokens"

    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_ref: Mapped[str] = mapped_column(String(80), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(63))
    template_key: Mapped[str] = mapped_column(String(200))
    inputs_hash: Mapped[str] = mapped_column(String(80))
    actor: Mapped[str] = mapped_column(String(200), info=clip())
    issued_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[str] = mapped_column(String(600), default="")


class ReceiptUseRow(Base):
    """An admission receipt consumed by a run (receipts are single-use)."""

    __tablename__ = "receipt_uses"

    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(512))
    run_id: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]


class RunProvenanceRow(Base):
    """What explains a run later: fingerprints and the redacted input snapshot (captured at its start)."""

    __tablename__ = "run_provenance"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63), index=True)
    input_hash: Mapped[str] = mapped_column(String(80))
    provenance: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class RunHistoryRow(Base):
    """A closed run's redacted event history, kept beyond Temporal's retention for replay bundles."""

    __tablename__ = "run_histories"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63), index=True)
    workflow_id: Mapped[str] = mapped_column(String(512))
    #: canonical JSON bytes of the redacted history (bytea: jsonb would re-normalise it)
    history: Mapped[bytes] = mapped_column(LargeBinary)
    events: Mapped[int]
    captured_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ReplayBundleRow(Base):
    __tablename__ = "replay_bundles"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(63))
    run_id: Mapped[str] = mapped_column(String(64))
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    replay_sha256: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (Index("ix_replay_bundles_tenant_run", "tenant_id", "run_id"),)


class EventRow(Base):
    """An admitted event (duplicates within the dedupe TTL are not stored again)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(63))
    event_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(200))
    trace_id: Mapped[str] = mapped_column(String(128), info=clip())
    source_app: Mapped[str] = mapped_column(String(100))
    source_module: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]]
    occurred_at: Mapped[datetime | None]
    #: the routing workflow's id: one per admitted copy, so routing happens exactly once
    route_workflow_id: Mapped[str] = mapped_column(String(512), unique=True)
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    #: when routing finished, and its result (matched triggers, each fire's verdict and run)
    routed_at: Mapped[datetime | None]
    routing: Mapped[dict[str, Any] | None]
    #: who submitted it (the triggers' actor allow/deny lists judge it)
    actor: Mapped[str] = mapped_column(String(200), server_default="", info=clip())

    __table_args__ = (Index("ix_events_tenant_received", "tenant_id", "received_at"),
                      Index("ix_events_tenant_type_received", "tenant_id", "event_type", "received_at"),
                      Index("ix_events_tenant_source_received", "tenant_id", "source_app", "received_at"),
                      Index("ix_events_unrouted", "tenant_id", "received_at",
                            postgresql_where=text("routed_at IS NULL")))


class TriggerRow(Base):
    __tablename__ = "triggers"

    trigger_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(8))
    template_key: Mapped[str] = mapped_column(String(200))
    event_pattern: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool]
    #: the whole TriggerSpec as JSON (inputs, pointers, schedule, safety config)
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_triggers_tenant_name"),
                      Index("ix_triggers_tenant_kind", "tenant_id", "kind"))


class TriggerFireRow(Base):
    """One safety-gate decision about one fire of a trigger (dry-run records included)."""

    __tablename__ = "trigger_fires"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(63))
    trigger_id: Mapped[str] = mapped_column(String(64))
    trigger_name: Mapped[str] = mapped_column(String(63))
    #: what made this fire unique (a scheduled workflow id, an event routing id + trigger): retries find it
    fire_key: Mapped[str] = mapped_column(String(600), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSONB)
    event_type: Mapped[str | None] = mapped_column(String(200))
    event_id: Mapped[str | None] = mapped_column(String(200))
    #: the inputs the run got (or, for a dry run, would have got), redacted
    inputs: Mapped[dict[str, Any]]
    run_workflow_id: Mapped[str | None] = mapped_column(String(512))
    start_error: Mapped[str] = mapped_column(Text, default="", info=clip(2000))
    fired_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (Index("ix_trigger_fires_trigger_time", "trigger_id", "fired_at"),
                      Index("ix_trigger_fires_tenant_verdict_time", "tenant_id", "verdict", "fired_at"))


class ConsoleSessionRow(Base):
    """A signed-in console browser: only the SHA-256 of its cookie is kept."""

    __tablename__ = "console_sessions"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: None for an operator session (every tenant)
    tenant_id: Mapped[str | None] = mapped_column(String(63))
    #: the API key a tenant session was opened with: revoking it ends the session
    key_id: Mapped[str | None] = mapped_column(String(24))
    #: SHA-256 of the operator token an operator session was opened with: a new token ends it
    operator_sha256: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200), info=clip())
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(index=True)


class EventGateMinuteRow(Base):
    """What the event gate turned away in one minute for one tenant (each refusal is also audited)."""

    __tablename__ = "event_gate_minutes"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    duplicates: Mapped[int] = mapped_column(Integer, server_default="0")
    rate_limited: Mapped[int] = mapped_column(Integer, server_default="0")
