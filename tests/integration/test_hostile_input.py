"""Hostile input at the HTTP gate, and outages: refused requests are charged before the body is read,
text the store cannot hold is refused naming its path, secrets do not rest in the event store, scope
names stay readable, every failure of the store or Temporal is a problem+json 503 with Retry-After,
and a run whose bookkeeping meets a value PostgreSQL refuses fails typed instead of retrying forever."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from jobforge.client import JobForgeClient
from jobforge.errors import StoreUnavailable, TemporalUnavailable
from jobforge.models import RunStatus
from shared.flags import Flag
from shared.search_attributes import search_attribute_args
from shared.settings import Secret, Settings
from shared.temporal import DATA_CONVERTER
from tests.integration.test_api import HEALTHCHECK, PROBLEM, auth, is_problem, tenant_with_key
from tests.unit.test_security_limits import bad_text, documents, first_unstorable
from workers.activity_errors import ActivityErrors
from workers.api import create_app
from workers.runtime import Runtime, open_runtime
from workers.stack import temporal_binary
from workers.worker import WORKFLOW_RUNNER, collect

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(rate_limit_per_minute=5, max_payload_bytes=20_000)


@pytest.fixture
async def api(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    for flag in (Flag.AUTOPILOT_JOBS, Flag.AUDIT_LOGGING, Flag.SECURITY_VALIDATION, Flag.EVENTS):
        monkeypatch.setenv(flag.value, "1")
    app = create_app(runtime.settings, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client


async def test_refused_requests_are_charged_before_the_body_is_read(api: httpx.AsyncClient, runtime: Runtime,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With 5/min, five requests refused for their inputs spend the budget: the sixth is 429 although its
    body is not even JSON (the rate limit comes before reading it)."""
    monkeypatch.setenv(Flag.RATE_LIMITING.value, "1")
    _, key = await tenant_with_key(runtime, ["*:*"])
    for _ in range(5):
        refused = await api.post("/v1/jobs", json={"template_key": HEALTHCHECK, "inputs": {"nope": 1}},
                                 headers=auth(key))
        is_problem(refused, 422, "invalid_inputs")
    limited = await api.post("/v1/jobs", content=b"{not json", headers=auth(key))
    is_problem(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1


@pytest.mark.parametrize(("path", "body", "where"), [
    ("/v1/jobs", {"template_key": HEALTHCHECK, "inputs": {"task_queues": ["a\u0000b"]}}, "$.task_queues[0]"),
    ("/v1/jobs", {"template_key": HEALTHCHECK, "inputs": {"k\u0000": 1}}, "$['k\\\\u0000']"),
    ("/v1/events", {"event_id": "e1", "event_type": "x.y", "payload": {"a": [{"b": "\u0000"}]}}, "$.a[0].b"),
    ("/v1/events", {"event_id": "e2", "event_type": "x.y", "payload": {"\u0000": "v"}}, "$['\\\\u0000']"),
    ("/v1/events", {"event_id": "e3", "event_type": "x.y", "source_app": "s\u0000"}, "$.source_app"),
    ("/v1/events", {"event_id": "e4", "event_type": "x.y", "source_module": "\u0000"}, "$.source_module"),
])
async def test_unstorable_text_is_refused_naming_its_path(api: httpx.AsyncClient, runtime: Runtime, path: str,
                                                          body: dict[str, Any], where: str) -> None:
    """NUL anywhere in inputs, payloads, keys, source_app or source_module is a 422 naming the JSON path."""
    _, key = await tenant_with_key(runtime, ["*:*"])
    problem = is_problem(await api.post(path, json=body, headers=auth(key)), 422, "unstorable_text")
    assert problem["details"] == {"path": where.replace("\\\\", "\\"), "code_point": "U+0000"}
    assert "\u0000" not in problem["detail"]


async def test_nul_in_url_ids_is_a_problem_not_a_500(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """``%00`` in a run id (run, artifacts, replay) is a 422 problem naming the parameter."""
    _, key = await tenant_with_key(runtime, ["*:*"])
    for path in ("/v1/runs/a%00b", "/v1/runs/a%00b/artifacts", "/v1/runs/%00/replay"):
        problem = is_problem(await api.get(path, headers=auth(key)), 422, "unstorable_text")
        assert problem["details"]["path"] == "{run}"


async def test_over_long_queue_names_are_refused_at_validation(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """A healthcheck naming a 1,001-character queue is refused when requested, not failed inside its run."""
    _, key = await tenant_with_key(runtime, ["*:*"])
    refused = await api.post("/v1/jobs", json={"template_key": HEALTHCHECK, "inputs": {"task_queues": ["q" * 1001]}},
                             headers=auth(key))
    assert "task_queues" in is_problem(refused, 422, "invalid_inputs")["detail"]


async def test_scope_names_are_not_redacted(api: httpx.AsyncClient, runtime: Runtime,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A 403 names the missing scope as it is (``tokens:issue`` is not a secret)."""
    monkeypatch.setenv(Flag.ACTION_JOBS.value, "1")
    _, key = await tenant_with_key(runtime, ["jobs:request"])
    denied = is_problem(await api.post("/v1/policy-tokens", json={"template_key": "autopilot.keys.rotation"},
                                       headers=auth(key)), 403, "insufficient_scope")
    assert "tokens:issue" in denied["detail"] and denied["details"]["missing"][0] == "tokens:issue"


async def test_event_payloads_are_stored_redacted(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """The event store keeps payloads redacted (types kept): the submitter's secrets are not at rest."""
    tenant, key = await tenant_with_key(runtime, ["events:write"])
    payload = {"password": "hunter2", "note": "token=abc123", "n": 3, "queues": ["jobforge"],
               "log": '{"api_key": "s3cr3t"}'}
    admitted = await api.post("/v1/events", json={"event_id": "r1", "event_type": "x.y", "payload": payload},
                              headers=auth(key))
    assert admitted.status_code == 202, admitted.text
    [stored] = await runtime.store.triggers.events(tenant)
    assert stored.payload == {"password": "[REDACTED]", "note": "token=[REDACTED]", "n": 3, "queues": ["jobforge"],
                              "log": '{"api_key": "[REDACTED]"}'}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_store_outage_is_a_503_problem_everywhere(settings: Settings, runtime: Runtime,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the database away, every endpoint (reads, writes, the body cap that reads flags) answers
    a problem+json 503 store_unavailable with Retry-After."""
    monkeypatch.setenv(Flag.EVENTS.value, "1")
    _, key = await tenant_with_key(runtime, ["*:*"])
    dead = settings.replace(database_url=Secret(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"))
    async with open_runtime(dead) as away:
        app = create_app(dead, away)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            answers = [
                await client.post("/v1/jobs", json={"template_key": HEALTHCHECK}, headers=auth(key)),
                await client.post("/v1/events", json={"event_id": "e", "event_type": "x.y"}, headers=auth(key)),
                await client.get("/v1/runs/r", headers=auth(key)),
                await client.get("/v1/audit", headers=auth(key)),
                await client.post("/v1/policy-tokens", json={"template_key": HEALTHCHECK}, headers=auth(key)),
            ]
    for answer in answers:
        is_problem(answer, 503, "store_unavailable")
        assert answer.headers["retry-after"] == "1"


async def test_temporal_outage_is_a_503_problem(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """With Temporal away, a job request and an event answer a problem+json 503 temporal_unavailable."""
    monkeypatch.setenv(Flag.EVENTS.value, "1")
    monkeypatch.setenv(Flag.AUTOPILOT_JOBS.value, "1")
    _, key = await tenant_with_key(runtime, ["*:*"])
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), data_converter=pydantic_data_converter, ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=[arg for sa in search_attribute_args() for arg in ("--search-attribute", sa)])
    client = await Client.connect(env.client.service_client.config.target_host, data_converter=DATA_CONVERTER)
    await env.shutdown()
    away = Runtime(runtime.settings, runtime.store, runtime.flags, runtime.registry, client)
    app = create_app(runtime.settings, away)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
        job = await api.post("/v1/jobs", json={"template_key": HEALTHCHECK}, headers=auth(key))
        event = await api.post("/v1/events", json={"event_id": f"t-{uuid.uuid4().hex[:6]}", "event_type": "x.y"},
                               headers=auth(key))
    for answer in (job, event):
        is_problem(answer, 503, "temporal_unavailable")
        assert answer.headers["retry-after"] == "1"


@activity.defn(name="jobforge.capture_provenance")
async def refusing_provenance(_req: Any) -> None:
    """A test double of provenance capture that meets a value PostgreSQL refuses."""
    raise psycopg.DataError("unsupported Unicode escape sequence")


async def test_a_value_the_store_refuses_fails_the_run_typed(runtime: Runtime,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A bookkeeping activity failing on a PostgreSQL data error fails the run at once with a typed,
    non-retryable error, and the run record says failed (instead of retrying forever)."""
    for flag in (Flag.AUTOPILOT_JOBS, Flag.REPLAY_PACK):
        monkeypatch.setenv(flag.value, "1")
    assert runtime.temporal is not None
    workflows, activities = collect(runtime)
    activities = [a for a in activities if getattr(a, "__temporal_activity_definition").name
                  != "jobforge.capture_provenance"] + [refusing_provenance]
    worker = Worker(runtime.temporal, task_queue=runtime.settings.task_queue, workflows=workflows,
                    activities=activities, workflow_runner=WORKFLOW_RUNNER, interceptors=[ActivityErrors()])
    async with worker:
        client = runtime.client()
        tenant = f"r-{uuid.uuid4().hex[:8]}"
        await runtime.gate.tenants.create_tenant(tenant)
        handle = await client.request_job(tenant, HEALTHCHECK, {})
        with pytest.raises(WorkflowFailureError) as failed:  # retried forever, it would never end
            await asyncio.wait_for(runtime.temporal.get_workflow_handle(handle.workflow_id).result(), 30)
        assert "store_refused_value" in str(failed.value.cause) or "PostgreSQL refused" in str(failed.value.cause)
        record = await runtime.store.get_run(handle.run_id)
        assert record.status is RunStatus.FAILED and record.summary["error_type"] == "store_refused_value"


# -- generated: text the store cannot hold, anywhere in a request ---------------------------------

unstorable_docs = documents.filter(lambda d: isinstance(d, dict))
maybe_bad_text = st.text(max_size=8) | bad_text


def nul_only(value: Any) -> bool:
    """True when the only unstorable text in ``value`` is NUL (JSON cannot carry a lone surrogate:
    the body is refused before its text is judged)."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


@examples(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=unstorable_docs, source_app=maybe_bad_text, source_module=maybe_bad_text)
async def test_property_events_with_unstorable_text_are_refused_unstored(
        api: httpx.AsyncClient, runtime: Runtime, payload: dict[str, Any], source_app: str,
        source_module: str) -> None:
    """An event with NUL (or a lone surrogate) anywhere — payload values, payload keys at any depth,
    source_app, source_module — is a 4xx problem (NUL: 422 unstorable_text naming the first path) and
    is not stored; one without is admitted and stored."""
    tenant, key = await tenant_with_key(runtime, ["events:write"])
    body = {"event_id": f"g-{uuid.uuid4().hex[:8]}", "event_type": "gen.x", "payload": payload,
            "source_app": source_app, "source_module": source_module}
    answer = await api.post("/v1/events", content=json.dumps(body).encode(), headers={
        **auth(key), "content-type": "application/json"})
    expected = (first_unstorable(source_app) and "$.source_app") or (first_unstorable(source_module)
                                                                     and "$.source_module") or first_unstorable(payload)
    stored = await runtime.store.triggers.events(tenant)
    if expected is None:
        assert answer.status_code == 202, answer.text
        assert [e.event_id for e in stored] == [body["event_id"]]
        return
    assert 400 <= answer.status_code < 500 and answer.headers["content-type"] == PROBLEM, answer.text
    assert stored == []
    if nul_only(body):
        problem = is_problem(answer, 422, "unstorable_text")
        assert problem["details"]["path"] == expected


nul_text = st.builds(lambda a, b: a + "\x00" + b, st.text(max_size=4), st.text(max_size=4))
nul_keys = st.text(max_size=6) | nul_text
nul_docs = st.recursive(
    st.none() | st.integers() | st.booleans() | st.text(max_size=6) | nul_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(nul_keys, children, max_size=4), max_leaves=20)
#: inputs with at least one NUL: in a value or a key, at any depth (the last entry holds one for sure)
nul_inputs = st.builds(lambda head, key, value: {**head, key: value}, st.dictionaries(nul_keys, nul_docs, max_size=3),
                       nul_keys, nul_text | st.lists(nul_text, min_size=1, max_size=2)
                       | st.dictionaries(st.text(max_size=3), nul_text, min_size=1, max_size=2))


@examples(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inputs=nul_inputs)
async def test_property_job_inputs_with_nul_are_refused_naming_the_path(
        api: httpx.AsyncClient, runtime: Runtime, inputs: dict[str, Any]) -> None:
    """A job request whose inputs hold NUL anywhere is a 422 unstorable_text naming its first path,
    and no run is recorded."""
    tenant, key = await tenant_with_key(runtime, ["*:*"])
    answer = await api.post("/v1/jobs", json={"template_key": HEALTHCHECK, "inputs": inputs}, headers=auth(key))
    assert is_problem(answer, 422, "unstorable_text")["details"]["path"] == first_unstorable(inputs)
    assert (await runtime.store.list_runs(tenant)) == []


@examples(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.text(max_size=6), after=st.text(max_size=6), where=st.sampled_from(["", "/artifacts", "/replay"]))
async def test_property_nul_in_a_url_id_is_a_problem(api: httpx.AsyncClient, runtime: Runtime, before: str,
                                                     after: str, where: str) -> None:
    """``%00`` anywhere in a run id, with any text around it, is a 4xx problem: a 422 naming the
    parameter (a 404 when a newline keeps the path from naming a run at all)."""
    _, key = await tenant_with_key(runtime, ["*:*"])
    ident = urllib.parse.quote(before + "\x00" + after, safe="")
    answer = await api.get(f"/v1/runs/{ident}{where}", headers=auth(key))
    if "\n" in before + after:
        is_problem(answer, 404, "not_found")
    else:
        assert is_problem(answer, 422, "unstorable_text")["details"]["path"] == "{run}"


async def test_sdk_answers_outages_with_typed_retryable_errors(settings: Settings, runtime: Runtime,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK, Temporal-direct or over HTTP, raises StoreUnavailable / TemporalUnavailable (retryable)
    when the store or Temporal is away, never a driver's or gRPC's own exception."""
    for flag in (Flag.AUTOPILOT_JOBS, Flag.EVENTS):
        monkeypatch.setenv(flag.value, "1")
    tenant, key = await tenant_with_key(runtime, ["*:*"])
    dead = settings.replace(database_url=Secret(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"))
    async with open_runtime(dead) as away:
        direct = away.client()
        with pytest.raises(StoreUnavailable) as no_store:
            await direct.request_job(tenant, HEALTHCHECK, {})
        assert no_store.value.retryable
        with pytest.raises(StoreUnavailable):
            await direct.get_run("some-run", tenant)
        app = create_app(dead, away)
        async with JobForgeClient("http://api", key, transport=httpx.ASGITransport(app=app)) as http:
            with pytest.raises(StoreUnavailable) as over_http:
                await http.request_job(tenant, HEALTHCHECK, {})
            assert over_http.value.retryable

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), data_converter=pydantic_data_converter, ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=[arg for sa in search_attribute_args() for arg in ("--search-attribute", sa)])
    client = await Client.connect(env.client.service_client.config.target_host, data_converter=DATA_CONVERTER)
    await env.shutdown()
    no_temporal = Runtime(runtime.settings, runtime.store, runtime.flags, runtime.registry, client)
    with pytest.raises(TemporalUnavailable) as no_server:
        await no_temporal.client().request_job(tenant, HEALTHCHECK, {})
    assert no_server.value.retryable
