"""the security gate: tenants, API keys, rate limits, event dedupe, audit chain, policy tokens, receipts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenants"),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(24), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("scopes", postgresql.JSONB(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_table(
        "rate_limits",
        sa.Column("bucket", sa.String(300), nullable=False),
        sa.Column("tat", TS, nullable=False),
        sa.PrimaryKeyConstraint("bucket", name="pk_rate_limits"),
    )
    op.create_table(
        "event_dedupe",
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("trace_id", sa.String(128), nullable=False),
        sa.Column("payload_hash", sa.String(80), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "event_type", "event_id", name="pk_event_dedupe"),
    )
    op.create_table(
        "audit_log",
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("trace_id", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "seq", name="pk_audit_log"),
    )
    op.create_table(
        "audit_heads",
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_audit_heads"),
    )
    op.create_table(
        "policy_tokens",
        sa.Column("jti", sa.String(32), nullable=False),
        sa.Column("token_ref", sa.String(80), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("template_key", sa.String(200), nullable=False),
        sa.Column("inputs_hash", sa.String(80), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("issued_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("used_by", sa.String(600), nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_policy_tokens"),
        sa.UniqueConstraint("token_ref", name="uq_policy_tokens_token_ref"),
    )
    op.create_table(
        "receipt_uses",
        sa.Column("jti", sa.String(32), nullable=False),
        sa.Column("workflow_id", sa.String(512), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("used_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_receipt_uses"),
    )


def downgrade() -> None:
    for table in ("receipt_uses", "policy_tokens", "audit_heads", "audit_log", "event_dedupe", "rate_limits"):
        op.drop_table(table)
    op.drop_index("ix_api_keys_tenant_id", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")
