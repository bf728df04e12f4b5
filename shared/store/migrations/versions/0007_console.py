"""console: sign-in sessions, the event gate's refusals per minute, and indexes for paged filters

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a console session: only the SHA-256 of the cookie's value is kept; a tenant session names the API key
    # it was opened with (revoking the key ends it), an operator session the operator token's digest
    op.create_table(
        "console_sessions",
        sa.Column("id_sha256", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(63), nullable=True),
        sa.Column("key_id", sa.String(24), nullable=True),
        sa.Column("operator_sha256", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"])
    # what the event gate turned away, counted per tenant and minute (the audit chain has each one)
    op.create_table(
        "event_gate_minutes",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("minute", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("duplicates", sa.Integer, server_default="0", nullable=False),
        sa.Column("rate_limited", sa.Integer, server_default="0", nullable=False),
    )
    # keyset pages of runs filtered by status or template, newest first
    op.create_index("ix_runs_tenant_status_created", "runs", ["tenant_id", "status", "created_at"])
    op.create_index("ix_runs_tenant_template_created", "runs", ["tenant_id", "template_key", "created_at"])
    # keyset pages of events filtered by type or source, newest first (the type index replaces the bare one)
    op.create_index("ix_events_tenant_type_received", "events", ["tenant_id", "event_type", "received_at"])
    op.drop_index("ix_events_tenant_type", table_name="events")
    op.create_index("ix_events_tenant_source_received", "events", ["tenant_id", "source_app", "received_at"])
    # a tenant's dry-run records (or any verdict), newest first
    op.create_index("ix_trigger_fires_tenant_verdict_time", "trigger_fires", ["tenant_id", "verdict", "fired_at"])
    op.drop_index("ix_trigger_fires_tenant_verdict", table_name="trigger_fires")


def downgrade() -> None:
    op.create_index("ix_trigger_fires_tenant_verdict", "trigger_fires", ["tenant_id", "verdict"])
    op.drop_index("ix_trigger_fires_tenant_verdict_time", table_name="trigger_fires")
    op.drop_index("ix_events_tenant_source_received", table_name="events")
    op.create_index("ix_events_tenant_type", "events", ["tenant_id", "event_type"])
    op.drop_index("ix_events_tenant_type_received", table_name="events")
    op.drop_index("ix_runs_tenant_template_created", table_name="runs")
    op.drop_index("ix_runs_tenant_status_created", table_name="runs")
    op.drop_table("event_gate_minutes")
    op.drop_index("ix_console_sessions_expires_at", table_name="console_sessions")
    op.drop_table("console_sessions")
