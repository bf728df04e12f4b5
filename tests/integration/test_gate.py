"""The security gate on every entry path: the SDK (with receipt) and a raw Temporal start (without)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import WorkflowFailureError

from jobforge.errors import (
    InsufficientScope,
    InvalidRequest,
    PayloadLimitExceeded,
    PolicyTokenInvalid,
    PolicyTokenReplayed,
    PolicyTokenRequired,
    RateLimited,
    SecretInInputs,
    UnknownTenant,
    http_status,
    typed_error,
)
from jobforge.models import EventEnvelope, JobRun, RunStatus
from shared.flags import Flag
from shared.security.principal import Principal
from shared.security.tokens import token_ref
from shared.settings import Settings
from shared.temporal import run_search_attributes
from tests.support.tenants import new_tenant
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

HEALTHCHECK = "autopilot.jobforge.healthcheck"
DEPLOY = "testing.jobforge.deploy"
ECHO = "testing.jobforge.echo"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The session's settings plus the security test templates and a small rate limit."""
    return settings.replace(template_modules=["tests.support.security_templates"],
                                       rate_limit_per_minute=2)


@pytest.fixture
async def tenant(runtime: Runtime) -> str:
    return await new_tenant(runtime, "gate-")


def flags_on(monkeypatch: pytest.MonkeyPatch, *flags: Flag) -> None:
    for flag in flags:
        monkeypatch.setenv(flag.value, "1")


async def raw_start(runtime: Runtime, job: JobRun) -> Exception | None:
    """Start ``job`` as `temporal workflow start` would (no receipt) and return its typed failure."""
    assert runtime.temporal is not None
    handle = await runtime.temporal.start_workflow(
        job.template_key, job, id=f"raw-{uuid.uuid4().hex}", task_queue=runtime.settings.task_queue,
        search_attributes=run_search_attributes(job.tenant_id, job.template_key, "raw"))
    try:
        await handle.result()
    except WorkflowFailureError as exc:
        return typed_error(exc)
    return None


async def test_scope_denial_names_missing_scope_and_is_audited(runtime: Runtime, worker: None, tenant: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller without jobs:request is refused naming it, and the denial lands in the audit chain."""
    flags_on(monkeypatch, Flag.AUTOPILOT_JOBS, Flag.AUDIT_LOGGING)
    client = runtime.client()
    client.principal = Principal(actor="reader", scopes=("runs:read",), tenant_id=tenant)
    with pytest.raises(InsufficientScope) as info:
        await client.request_job(tenant, HEALTHCHECK, {}, actor="reader")
    assert info.value.missing == ["jobs:request"]
    entries = await runtime.gate.audit.list(tenant)
    assert [(e.decision, e.action) for e in entries] == [("deny", "jobs.request")]
    assert "jobs:request" in entries[0].reason
    assert (await runtime.gate.audit.verify(tenant)).ok


async def test_rate_limit_is_charged_once_and_raw_starts_meet_it(runtime: Runtime, worker: None, tenant: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With 2/min, two SDK runs complete (receipts are not charged again); the third request and a raw start
    are both refused with RateLimited carrying retry_after."""
    flags_on(monkeypatch, Flag.AUTOPILOT_JOBS, Flag.RATE_LIMITING, Flag.AUDIT_LOGGING)
    client = runtime.client()
    for _ in range(2):
        await client.result(await client.request_job(tenant, HEALTHCHECK, {}))
    with pytest.raises(RateLimited) as info:
        await client.request_job(tenant, HEALTHCHECK, {})
    assert 0 < info.value.retry_after <= 30
    failure = await raw_start(runtime, JobRun(tenant_id=tenant, template_key=HEALTHCHECK))
    assert isinstance(failure, RateLimited) and failure.retry_after > 0
    decisions = [e.decision for e in reversed(await runtime.gate.audit.list(tenant))]
    assert decisions == ["allow", "allow", "deny", "deny"]


async def test_payload_limits_apply_to_sdk_and_raw_start(runtime: Runtime, worker: None, tenant: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With validation on, a string over the limit is refused with its path on both entry paths."""
    flags_on(monkeypatch, Flag.SECURITY_VALIDATION)
    client = runtime.client()
    with pytest.raises(PayloadLimitExceeded) as info:
        await client.request_job(tenant, ECHO, {"note": "x" * 100_001})
    assert info.value.details["path"] == "$.note" and info.value.details["limit"] == "max_string"
    failure = await raw_start(runtime, JobRun(tenant_id=tenant, template_key=ECHO, inputs={"note": "x" * 100_001}))
    assert isinstance(failure, PayloadLimitExceeded) and failure.details["path"] == "$.note"
    monkeypatch.delenv(Flag.SECURITY_VALIDATION.value)
    result = await client.result(await client.request_job(tenant, ECHO, {"note": "x" * 100_001}))
    assert len(result.output) > 100_000  # type: ignore[attr-defined]


async def test_secret_in_inputs_never_starts_a_run(runtime: Runtime, worker: None, tenant: str) -> None:
    """Inputs carrying a token are refused before any workflow starts, naming the path, not the value."""
    secret = "ghp_" + "Z" * 36
    with pytest.raises(SecretInInputs) as info:
        await runtime.client().request_job(tenant, ECHO, {"note": f"use {secret}"})
    assert info.value.details["path"] == "$.note" and secret not in info.value.message
    assert list(await runtime.store.list_runs(tenant)) == []


async def test_action_jobs_need_a_single_use_bound_policy_token(runtime: Runtime, worker: None, tenant: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Action runs need a token bound to tenant, template and inputs; a replay is refused; a raw start can
    present the token's one-way reference; the token itself never enters the history."""
    flags_on(monkeypatch, Flag.ACTION_JOBS)
    client, gate = runtime.client(), runtime.gate
    operator = Principal.operator("ops")
    with pytest.raises(PolicyTokenRequired):
        await client.request_job(tenant, DEPLOY, {"target": "prod"})

    issued = await gate.issue_policy_token(operator, tenant, DEPLOY, {"target": "prod"})
    with pytest.raises(PolicyTokenInvalid, match="bound"):
        await client.request_job(tenant, DEPLOY, {"target": "staging"}, policy_token=issued.token)
    handle = await client.request_job(tenant, DEPLOY, {"target": "prod"}, policy_token=issued.token)
    assert (await client.result(handle)).deployed == "prod"  # type: ignore[attr-defined]
    with pytest.raises(PolicyTokenReplayed):
        await client.request_job(tenant, DEPLOY, {"target": "prod"}, policy_token=issued.token)

    assert runtime.temporal is not None
    history = (await runtime.temporal.get_workflow_handle(handle.workflow_id).fetch_history()).to_json()
    assert issued.token not in history

    fresh = await gate.issue_policy_token(operator, tenant, DEPLOY, {"target": "canary"})
    job = JobRun(tenant_id=tenant, template_key=DEPLOY, inputs={"target": "canary"}, policy_ref=token_ref(fresh.token))
    assert await raw_start(runtime, job) is None
    failure = await raw_start(runtime, job)
    assert isinstance(failure, PolicyTokenReplayed)
    rejected = [r for r in await runtime.store.list_runs(tenant) if r.status is RunStatus.REJECTED]
    assert len(rejected) == 1


async def test_an_unknown_tenant_is_refused_on_every_path(runtime: Runtime, worker: None, tenant: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A job, an event or a policy token for a tenant that does not exist is refused with unknown_tenant
    (HTTP 404) before anything is charged or started, through the SDK and a raw Temporal start alike; no
    audit chain is started for it; once the tenant is created the same request runs."""
    flags_on(monkeypatch, Flag.AUTOPILOT_JOBS, Flag.EVENTS, Flag.ACTION_JOBS, Flag.AUDIT_LOGGING,
             Flag.RATE_LIMITING)
    client, gate = runtime.client(), runtime.gate
    missing = f"acem-{uuid.uuid4().hex[:8]}"
    with pytest.raises(UnknownTenant) as info:
        await client.request_job(missing, HEALTHCHECK, {})
    assert info.value.details == {"tenant_id": missing} and http_status(info.value) == 404
    assert f"`jobforge tenants create {missing}`" in info.value.message
    event = EventEnvelope(tenant_id=missing, event_id="e-1", event_type="order.paid", payload={})
    with pytest.raises(UnknownTenant):
        await client.submit_event(event)
    with pytest.raises(UnknownTenant):
        await gate.issue_policy_token(Principal.operator("ops"), missing, DEPLOY, {"target": "prod"})
    failure = await raw_start(runtime, JobRun(tenant_id=missing, template_key=HEALTHCHECK))
    assert isinstance(failure, UnknownTenant) and failure.details["tenant_id"] == missing
    # the SDK's refusals started nothing; the raw start is recorded as its own rejected run
    assert [r.status for r in await runtime.store.list_runs(missing)] == [RunStatus.REJECTED]
    assert missing not in await gate.audit.tenants()

    await gate.tenants.create_tenant(missing)
    assert (await client.result(await client.request_job(missing, HEALTHCHECK, {}))).healthy  # type: ignore[attr-defined]


async def test_a_known_tenant_costs_one_lookup_per_process(runtime: Runtime, tenant: str) -> None:
    """The gate looks a tenant up once; later requests for it are answered from the process's set of known
    tenants (tenants are never deleted), and a tenant created after a refusal is found at once."""
    tenants = runtime.gate.tenants
    operator = Principal.operator("ops")
    await runtime.gate.require_tenant(operator, tenant)
    assert tenant in tenants._known
    later = f"later-{uuid.uuid4().hex[:8]}"
    with pytest.raises(UnknownTenant):
        await runtime.gate.require_tenant(operator, later)
    await tenants.create_tenant(later)
    await runtime.gate.require_tenant(operator, later)
    # a key's own tenant needs no lookup at all
    await runtime.gate.require_tenant(Principal(actor="k", scopes=(), tenant_id="never-made"), "never-made")


async def _stored_events(runtime: Runtime, tenant: str) -> list[str]:
    async with runtime.store.connection() as conn:
        rows = await (await conn.execute("SELECT event_id FROM events WHERE tenant_id = %s ORDER BY event_id",
                                         (tenant,))).fetchall()
    return [row[0] for row in rows]


async def test_concurrent_events_are_charged_exactly_and_only_charged_ones_are_claimed(
        runtime: Runtime, tenant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 2/min and one bucket (the charge made by the claim's statement), twelve events submitted at once:
    exactly two are admitted, claimed and stored; the other ten are RateLimited and leave no claim or row, so
    each can be sent again later; a duplicate of an admitted event is charged too, and refused while spent."""
    flags_on(monkeypatch, Flag.EVENTS, Flag.RATE_LIMITING)
    principal = Principal.operator("tester")
    events = [EventEnvelope(tenant_id=tenant, event_id=f"e-{i:02d}", event_type="order.paid", payload={"i": i})
              for i in range(12)]
    answers = await asyncio.gather(*(runtime.gate.admit_event(e, principal) for e in events), return_exceptions=True)
    admitted = sorted(a.receipt.event_id for a in answers if not isinstance(a, BaseException))
    assert len(admitted) == 2, answers
    assert all(isinstance(a, RateLimited) and a.retry_after > 0 for a in answers if isinstance(a, BaseException))
    assert await _stored_events(runtime, tenant) == admitted
    async with runtime.store.connection() as conn:
        claims = await (await conn.execute("SELECT count(*) FROM event_dedupe WHERE tenant_id = %s",
                                           (tenant,))).fetchone()
    assert claims is not None and claims[0] == 2
    with pytest.raises(RateLimited):  # remembered from the refusals: no statement, still refused
        await runtime.gate.admit_event(events[int(admitted[0][2:])], principal)


async def test_an_event_the_checks_refuse_is_still_charged_and_a_spent_budget_answers_first(
        runtime: Runtime, tenant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An event refused by a check that reads no database (a trace id that is not one) still spends the budget,
    as every request does; once spent, the same bad event is answered RateLimited, not its own refusal."""
    flags_on(monkeypatch, Flag.EVENTS, Flag.RATE_LIMITING)
    principal = Principal.operator("tester")
    bad = EventEnvelope(tenant_id=tenant, event_id="bad", event_type="order.paid", trace_id="no spaces allowed")
    for _ in range(2):
        with pytest.raises(InvalidRequest):
            await runtime.gate.admit_event(bad, principal)
    with pytest.raises(RateLimited):
        await runtime.gate.admit_event(bad, principal)
    with pytest.raises(RateLimited):
        await runtime.gate.admit_event(EventEnvelope(tenant_id=tenant, event_id="good", event_type="order.paid"),
                                       principal)
    assert await _stored_events(runtime, tenant) == []
