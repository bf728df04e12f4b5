"""The trigger, event-routing and sealed-secret routes of the HTTP API: what each answers, the scopes and
flags they need, tenancy, and hostile input (always a typed problem, never a 500)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from jobforge.client import JobForgeClient
from jobforge.errors import EventNotFound, FeatureDisabled, InsufficientScope, TriggerExists, TriggerNotFound
from jobforge.ids import api_key_id
from jobforge.models import EventEnvelope, SafetyConfig, TriggerKind, TriggerSpec, Verdict
from shared.flags import Flag
from tests.integration.test_api import HEALTHCHECK, PROBLEM, auth, is_problem, tenant_with_key
from workers.api import create_app
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

FLAGS = (Flag.EVENTS, Flag.TRIGGERS, Flag.AUTOPILOT_JOBS, Flag.ACTION_JOBS, Flag.AUDIT_LOGGING)


@pytest.fixture
async def api(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    for flag in FLAGS:
        monkeypatch.setenv(flag.value, "1")
    app = create_app(runtime.settings, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client


def sdk(api: httpx.AsyncClient, key: str) -> JobForgeClient:
    return JobForgeClient("http://api", key, transport=api._transport)


def event_trigger(tenant: str, name: str = "on-signed", **update: Any) -> TriggerSpec:
    return TriggerSpec(tenant_id=tenant, name=name, kind=TriggerKind.EVENT, event_pattern="contract.signed",
                       template_key=HEALTHCHECK, safety=SafetyConfig(dry_run=True), **update)


async def test_a_trigger_made_over_http_is_listed_shown_and_records_its_dry_runs(
        api: httpx.AsyncClient, runtime: Runtime, worker: None) -> None:
    """create_trigger answers the trigger's view (its actor the key's), list and get show it, a matching event
    is routed to it (wait_routed over HTTP), and its dry-run record is readable; creating it again is 409; the
    creation is audited."""
    tenant, key = await tenant_with_key(runtime, ["triggers:*", "jobs:request", "events:*", "audit:read"])
    client = sdk(api, key)
    view = await client.create_trigger(event_trigger(tenant))
    assert view.trigger.name == "on-signed" and view.trigger.tenant_id == tenant and view.state == "active"
    assert view.trigger.actor == f"key:{api_key_id(key)}"
    assert [v.trigger.name for v in await client.list_triggers()] == ["on-signed"]
    assert (await client.get_trigger("on-signed")).trigger.trigger_id == view.trigger.trigger_id
    with pytest.raises(TriggerExists):
        await client.create_trigger(event_trigger(tenant))
    receipt = await client.submit_event(EventEnvelope(tenant_id=tenant, event_id="c-1", event_type="contract.signed"))
    routed = await client.wait_routed(receipt, within=60)
    assert [(f.trigger_name, f.verdict) for f in routed.fires] == [("on-signed", Verdict.DRY_RUN)]
    state = await client.event_routing(receipt)
    assert state.routing == routed and state.routed_at is not None and state.event_id == "c-1"
    records = await client.dry_runs("on-signed")
    assert [(r.event_id, r.verdict) for r in records] == [("c-1", Verdict.DRY_RUN)]
    audit = await client.list_audit()
    assert any(e["action"] == "triggers.create" and e["decision"] == "allow" for e in audit)


async def test_trigger_routes_refuse_missing_scopes(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """Creating needs triggers:write and the template's scopes (jobs:request), reading needs triggers:read:
    each refusal is 403 insufficient_scope naming what is missing, and nothing is created."""
    tenant, reader = await tenant_with_key(runtime, ["triggers:read"])
    writer = (await runtime.gate.tenants.create_key(tenant, ["triggers:write"])).secret
    body = event_trigger(tenant).model_dump(mode="json", exclude_unset=True)
    for key, missing in ((reader, ["triggers:write"]), (writer, ["jobs:request"])):
        refused = await api.post("/v1/triggers", json=body, headers=auth(key))
        assert is_problem(refused, 403, "insufficient_scope")["details"]["missing"] == missing
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    for path in ("/v1/triggers", "/v1/triggers/on-signed", "/v1/triggers/on-signed/dry-runs"):
        assert is_problem(await api.get(path, headers=auth(writer)), 403, "insufficient_scope")["details"][
            "missing"] == ["triggers:read"]
    assert (await api.get("/v1/triggers", headers=auth(reader))).json() == []
    with pytest.raises(InsufficientScope):
        await sdk(api, reader).event_routing(
            await sdk(api, (await runtime.gate.tenants.create_key(tenant, ["events:write"])).secret).submit_event(
                EventEnvelope(tenant_id=tenant, event_id="x", event_type="a.b")))


async def test_trigger_and_event_routes_are_off_with_their_flags(api: httpx.AsyncClient, runtime: Runtime,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With JOBFORGE_TRIGGERS_ENABLED off every trigger route is 403 feature_disabled naming it (nothing is
    created); with JOBFORGE_EVENTS_ENABLED off so is an event's routing."""
    tenant, key = await tenant_with_key(runtime, ["*:*"])
    receipt = await sdk(api, key).submit_event(EventEnvelope(tenant_id=tenant, event_id="e-1", event_type="a.b"))
    monkeypatch.setenv(Flag.TRIGGERS.value, "0")
    body = event_trigger(tenant).model_dump(mode="json", exclude_unset=True)
    answers = [await api.post("/v1/triggers", json=body, headers=auth(key))]
    answers += [await api.get(p, headers=auth(key))
                for p in ("/v1/triggers", "/v1/triggers/x", "/v1/triggers/x/dry-runs")]
    for answer in answers:
        assert is_problem(answer, 403, "feature_disabled")["details"]["flag"] == Flag.TRIGGERS.value
    assert await runtime.store.triggers.list(tenant) == []
    monkeypatch.setenv(Flag.EVENTS.value, "0")
    with pytest.raises(FeatureDisabled):
        await sdk(api, key).event_routing(receipt)


async def test_trigger_bodies_are_checked_and_bound_to_the_key(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """Another tenant or actor than the key's, an invalid spec, an unknown template: each a typed 4xx problem
    naming what is wrong; a foreign tenant's trigger is not found."""
    tenant, key = await tenant_with_key(runtime, ["*:*"])
    other, other_key = await tenant_with_key(runtime, ["*:*"])
    base = event_trigger(tenant).model_dump(mode="json", exclude_unset=True)
    cases = [({**base, "tenant_id": other}, 400, "invalid_request"),
             ({**base, "actor": "root"}, 400, "invalid_request"),
             ({**base, "event_pattern": None}, 400, "invalid_request"),
             ({**base, "name": "Bad Name"}, 400, "invalid_request"),
             ({**base, "template_key": "no.such.template"}, 404, "template_not_found"),
             ({**base, "inputs": {"nope": 1}, "kind": "cron", "cron": "* * * * *", "event_pattern": None}, 422,
              "invalid_inputs"), ([1, 2], 400, "invalid_request")]
    for body, status, code in cases:
        is_problem(await api.post("/v1/triggers", json=body, headers=auth(key)), status, code)
    await sdk(api, other_key).create_trigger(event_trigger(other, "theirs"))
    with pytest.raises(TriggerNotFound):
        await sdk(api, key).get_trigger("theirs")
    with pytest.raises(TriggerNotFound):
        await sdk(api, key).dry_runs("theirs")
    assert await sdk(api, key).list_triggers() == []


async def test_event_routing_needs_the_copy_a_receipt_names(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """An unknown event (or another first sighting) is 404 event_not_found; a time without a zone and a
    malformed type or id are 400; a foreign tenant's event is not found."""
    tenant, key = await tenant_with_key(runtime, ["events:*"])
    _, other_key = await tenant_with_key(runtime, ["events:*"])
    receipt = await sdk(api, key).submit_event(EventEnvelope(tenant_id=tenant, event_id="e-1", event_type="a.b"))
    seen = receipt.first_seen_at
    with pytest.raises(EventNotFound):
        await sdk(api, other_key).event_routing(receipt)
    with pytest.raises(EventNotFound):
        await sdk(api, key).event_routing(receipt.model_copy(update={"event_id": "e-2"}))
    later = receipt.model_copy(update={"first_seen_at": seen.replace(microsecond=(seen.microsecond + 1) % 10**6)})
    with pytest.raises(EventNotFound):
        await sdk(api, key).event_routing(later)
    naive = await api.get("/v1/events/a.b/e-1", params={"first_seen_at": seen.replace(tzinfo=None).isoformat()},
                          headers=auth(key))
    is_problem(naive, 400, "invalid_request")
    bad = await api.get("/v1/events/A%20B/e-1", params={"first_seen_at": seen.isoformat()}, headers=auth(key))
    is_problem(bad, 400, "invalid_request")
    is_problem(await api.get("/v1/events/a.b/e-1", headers=auth(key)), 422, "invalid_request")


async def test_sealed_secret_route_needs_a_rotation_its_scopes_and_flags(
        api: httpx.AsyncClient, runtime: Runtime, worker: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sealed-secret route answers only for runs of autopilot.keys.rotation (400 otherwise), needs
    runs:read and keys:rotate (403 naming the missing one) and the template's flags (403 feature_disabled)."""
    tenant, key = await tenant_with_key(runtime, ["*:*"])
    handle = (await api.post("/v1/jobs", json={"template_key": HEALTHCHECK}, headers=auth(key))).json()
    path = f"/v1/runs/{handle['run_id']}/sealed-secret"
    is_problem(await api.get(path, headers=auth(key)), 400, "invalid_request")
    reader = (await runtime.gate.tenants.create_key(tenant, ["runs:read"])).secret
    assert is_problem(await api.get(path, headers=auth(reader)), 403, "insufficient_scope")["details"]["missing"] == [
        "keys:rotate"]
    is_problem(await api.get("/v1/runs/nope/sealed-secret", headers=auth(key)), 404, "run_not_found")
    monkeypatch.setenv(Flag.ACTION_JOBS.value, "0")
    assert is_problem(await api.get(path, headers=auth(key)), 403, "feature_disabled")["details"]["flag"] == (
        Flag.ACTION_JOBS.value)


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
spec_fields = st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=70) | st.sampled_from(["ok-name", "a"]), "kind": st.sampled_from(["cron", "event", "x"]),
    "template_key": st.sampled_from([HEALTHCHECK, "autopilot.keys.rotation", "x"]) | st.text(max_size=20),
    "event_pattern": st.sampled_from(["a.*", "contract.signed", "*"]) | st.text(max_size=20),
    "cron": st.sampled_from(["* * * * *", "nope"]) | st.text(max_size=20), "interval_seconds": json_values,
    "inputs": json_values, "input_pointers": json_values, "safety": json_values, "timezone": st.text(max_size=20),
    "overlap": st.text(max_size=10), "enabled": json_values, "extra": json_values})


@examples(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=spec_fields | json_values)
async def test_property_hostile_trigger_bodies_are_typed_problems(api: httpx.AsyncClient, runtime: Runtime,
                                                                  body: Any) -> None:
    """Whatever JSON a key with every scope posts as a trigger, the answer is 201 or a typed 4xx problem."""
    _, key = await tenant_with_key(runtime, ["*:*"])
    answer = await api.post("/v1/triggers", content=json.dumps(body).encode(),
                            headers={**auth(key), "content-type": "application/json"})
    assert answer.status_code == 201 or (400 <= answer.status_code < 500
                                         and answer.headers["content-type"] == PROBLEM), answer.text


@examples(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=1, max_size=80), event_type=st.text(min_size=1, max_size=40),
       event_id=st.text(min_size=1, max_size=40), seen=st.text(max_size=40))
async def test_property_hostile_names_in_trigger_and_event_urls_are_typed_problems(
        api: httpx.AsyncClient, runtime: Runtime, name: str, event_type: str, event_id: str, seen: str) -> None:
    """Any text as a trigger name, an event's type or id or its first sighting is a 4xx problem, never a 500."""
    _, key = await tenant_with_key(runtime, ["*:*"])

    def q(text: str) -> str:
        return urllib.parse.quote(text, safe="")

    answers = [await api.get(f"/v1/triggers/{q(name)}", headers=auth(key)),
               await api.get(f"/v1/triggers/{q(name)}/dry-runs", headers=auth(key)),
               await api.get(f"/v1/events/{q(event_type)}/{q(event_id)}", params={"first_seen_at": seen},
                             headers=auth(key))]
    for answer in answers:
        assert 400 <= answer.status_code < 500 and answer.headers["content-type"] == PROBLEM, answer.text


async def test_openapi_lists_the_new_routes(api: httpx.AsyncClient) -> None:
    """The OpenAPI document names the trigger, event-routing and sealed-secret routes."""
    paths = set((await api.get("/openapi.json")).json()["paths"])
    assert {"/v1/triggers", "/v1/triggers/{name}", "/v1/triggers/{name}/dry-runs",
            "/v1/events/{event_type}/{event_id}", "/v1/runs/{ident}/sealed-secret"} <= paths


