"""tenants: every tenant that already has runs, triggers, events or keys becomes a tenant row; runs: a
partial index of the queued ones

Requests for a tenant that does not exist are refused (``unknown_tenant``) from this revision on; a
deployment that used tenants without creating them keeps them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: the tenant id rule of sdk/jobforge/ids.py (a rejected run may carry any text as its tenant)
_VALID = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def upgrade() -> None:
    op.execute(f"""
        INSERT INTO tenants (tenant_id, name)
        SELECT t, t FROM (
            SELECT tenant_id AS t FROM runs WHERE status <> 'rejected'
            UNION SELECT tenant_id FROM triggers
            UNION SELECT tenant_id FROM events
            UNION SELECT tenant_id FROM api_keys
        ) AS used
        WHERE t ~ '{_VALID}'
        ON CONFLICT (tenant_id) DO NOTHING
    """)
    # the runs not admitted yet, for the sweep of those whose workflow closed first (shared/stale_runs.py)
    op.create_index("ix_runs_queued", "runs", ["created_at"], postgresql_where="status = 'queued'")


def downgrade() -> None:
    op.drop_index("ix_runs_queued", table_name="runs")
    # the tenant rows stay: they are tenants like any other now
