"""events, triggers and trigger fires

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("trace_id", sa.String(128), nullable=False),
        sa.Column("source_app", sa.String(100), nullable=False),
        sa.Column("source_module", sa.String(200), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("route_workflow_id", sa.String(512), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("route_workflow_id", name="uq_events_route_workflow_id"),
    )
    op.create_index("ix_events_tenant_received", "events", ["tenant_id", "received_at"])
    op.create_index("ix_events_tenant_type", "events", ["tenant_id", "event_type"])
    op.create_table(
        "triggers",
        sa.Column("trigger_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("template_key", sa.String(200), nullable=False),
        sa.Column("event_pattern", sa.String(200), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("spec", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("trigger_id", name="pk_triggers"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_triggers_tenant_name"),
    )
    op.create_index("ix_triggers_tenant_kind", "triggers", ["tenant_id", "kind"])
    op.create_table(
        "trigger_fires",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("trigger_id", sa.String(64), nullable=False),
        sa.Column("trigger_name", sa.String(63), nullable=False),
        sa.Column("fire_key", sa.String(600), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reasons", postgresql.JSONB(), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=True),
        sa.Column("event_id", sa.String(200), nullable=True),
        sa.Column("inputs", postgresql.JSONB(), nullable=False),
        sa.Column("run_workflow_id", sa.String(512), nullable=True),
        sa.Column("start_error", sa.Text(), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trigger_fires"),
        sa.UniqueConstraint("fire_key", name="uq_trigger_fires_fire_key"),
    )
    op.create_index("ix_trigger_fires_trigger_time", "trigger_fires", ["trigger_id", "fired_at"])
    op.create_index("ix_trigger_fires_tenant_verdict", "trigger_fires", ["tenant_id", "verdict"])


def downgrade() -> None:
    op.drop_table("trigger_fires")
    op.drop_table("triggers")
    op.drop_table("events")
