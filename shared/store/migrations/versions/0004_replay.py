"""provenance, captured histories and replay bundles

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_provenance",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("input_hash", sa.String(80), nullable=False),
        sa.Column("provenance", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_run_provenance"),
    )
    op.create_index("ix_run_provenance_tenant_id", "run_provenance", ["tenant_id"])
    op.create_table(
        "run_histories",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("workflow_id", sa.String(512), nullable=False),
        sa.Column("history", sa.LargeBinary(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_run_histories"),
    )
    op.create_index("ix_run_histories_tenant_id", "run_histories", ["tenant_id"])
    op.create_table(
        "replay_bundles",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("bundle_sha256", sa.String(64), nullable=False),
        sa.Column("replay_sha256", sa.String(64), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_replay_bundles"),
    )
    op.create_index("ix_replay_bundles_tenant_run", "replay_bundles", ["tenant_id", "run_id"])


def downgrade() -> None:
    op.drop_index("ix_replay_bundles_tenant_run", table_name="replay_bundles")
    op.drop_table("replay_bundles")
    op.drop_index("ix_run_histories_tenant_id", table_name="run_histories")
    op.drop_table("run_histories")
    op.drop_index("ix_run_provenance_tenant_id", table_name="run_provenance")
    op.drop_table("run_provenance")
