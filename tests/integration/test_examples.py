"""The integration examples in examples/integrations run as documented, against the real services."""

from __future__ import annotations

import uuid

import pytest

from examples.integrations import aias_agent_completed, keys_rotation, settler_contract_signed
from jobforge.models import Verdict
from shared.flags import Flag
from workers.runtime import Runtime

pytestmark = pytest.mark.integration


@pytest.fixture
def flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for flag in (Flag.EVENTS, Flag.TRIGGERS, Flag.AUTOPILOT_JOBS, Flag.ACTION_JOBS):
        monkeypatch.setenv(flag.value, "1")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def test_settler_example(runtime: Runtime, worker: None, flags: None) -> None:
    """Settler's contract.signed event fires its trigger and the job runs."""
    result = await settler_contract_signed.main(runtime, unique("settler"))
    assert [f.verdict for f in result.fires] == [Verdict.FIRE]


async def test_aias_example(runtime: Runtime, worker: None, flags: None) -> None:
    """AIAS's agent.execution.completed event meets a strict trigger: a dry-run record, no run."""
    tenant = unique("aias")
    records = await aias_agent_completed.main(runtime, tenant)
    assert len(records) == 1 and records[0].verdict is Verdict.DRY_RUN
    assert await runtime.client().list_runs(tenant) == []


async def test_keys_example(runtime: Runtime, worker: None, flags: None) -> None:
    """The Keys rotation example rotates a key through a policy-token-gated action job."""
    result = await keys_rotation.main(runtime, unique("keys"), grace_seconds=0)
    assert result.old_key_revoked and result.new_key_id != result.old_key_id
