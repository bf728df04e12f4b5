"""events: when and how each event was routed, and who submitted it

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("routed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("events", sa.Column("routing", postgresql.JSONB(), nullable=True))
    # who submitted it: a router that finds the event without its signal still judges the right actor
    op.add_column("events", sa.Column("actor", sa.String(200), server_default="", nullable=False))
    # events stored before this revision were routed by their own workflow, which kept no result here
    op.execute("UPDATE events SET routed_at = received_at")
    # a router's recovery sweep: the events of a tenant still waiting to be routed
    op.create_index("ix_events_unrouted", "events", ["tenant_id", "received_at"],
                    postgresql_where=sa.text("routed_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_events_unrouted", table_name="events")
    op.drop_column("events", "actor")
    op.drop_column("events", "routing")
    op.drop_column("events", "routed_at")
