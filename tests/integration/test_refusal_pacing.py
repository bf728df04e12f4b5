"""Refusal pacing over HTTP: a key whose requests keep being refused has its further refusals held and is
served one request at a time, while another tenant's requests (refused ones too) are answered at once;
held answers and waiting requests are capped, and a request refused over the cap is a problem+json 429
with Retry-After on a closed connection, audited as a deny entry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from shared.flags import Flag
from shared.gate import PACED_ACTION
from shared.security.pacing import Pacer
from shared.settings import Settings
from tests.integration.test_api import HEALTHCHECK, PROBLEM, auth, tenant_with_key
from tests.support.procs import free_port
from workers.api import ApiServer, create_app
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

BURST = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # a refill of one refusal a minute on a frozen pacer clock: only the burst is answered at once
    return settings.replace(refusal_pacing_burst=BURST, refusal_pacing_per_minute=1.0,
                                       refusal_pacing_max_hold_seconds=60.0, refusal_pacing_max_held=2)


@pytest.fixture(autouse=True)
def flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for flag in (Flag.AUTOPILOT_JOBS, Flag.AUDIT_LOGGING, Flag.SECURITY_VALIDATION):
        monkeypatch.setenv(flag.value, "1")


@asynccontextmanager
async def paced_api(runtime: Runtime) -> AsyncIterator[tuple[httpx.AsyncClient, Pacer]]:
    """A fresh app (its own pacer, on a frozen clock: holds end by ``release_all``) and a client of it."""
    app = create_app(runtime.settings, runtime)
    pacer: Pacer = app.pacer
    pacer.clock = lambda: 0.0
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     timeout=120) as client:
            yield client, pacer
    finally:
        pacer.release_all()


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (polling a condition, not a delay)."""
    for _ in range(20_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


#: job inputs the healthcheck's input model refuses (422 invalid_inputs)
invalid_inputs = st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
    lambda k: k not in ("task_queues", "timeout_seconds")), st.integers() | st.text(max_size=50),
    min_size=1, max_size=5)


def refused_job(key: str, inputs: dict[str, Any]) -> Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]:
    def send(api: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return api.post("/v1/jobs", json={"template_key": HEALTHCHECK, "inputs": inputs}, headers=auth(key))
    return send


@examples(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inputs=invalid_inputs)
async def test_a_flooding_keys_refusals_are_held_while_another_tenant_is_served(
        runtime: Runtime, inputs: dict[str, Any]) -> None:
    """A key's first ``BURST`` refusals are answered at once; the next is held, and the key's next request
    waits for its turn; meanwhile another tenant gets its audit page and its own refusal at once. When the
    holds end, the held request is answered 422 and the waiting one is served."""
    _, flooding = await tenant_with_key(runtime, ["*:*"])
    _, calm = await tenant_with_key(runtime, ["*:*"])
    async with paced_api(runtime) as (api, pacer):
        for _ in range(BURST):
            assert (await refused_job(flooding, inputs)(api)).status_code == 422
        held = asyncio.ensure_future(refused_job(flooding, inputs)(api))
        await until(lambda: pacer.held == 1)
        waiting = asyncio.ensure_future(api.get("/v1/audit", headers=auth(flooding)))
        await until(lambda: pacer.held == 2)

        assert (await api.get("/v1/audit", headers=auth(calm))).status_code == 200
        calm_refused = await refused_job(calm, inputs)(api)
        assert calm_refused.status_code == 422 and calm_refused.headers["content-type"] == PROBLEM
        assert not held.done() and not waiting.done()

        pacer.release_all()
        answer = await held
        assert answer.status_code == 422 and answer.json()["code"] == "invalid_inputs"
        assert (await waiting).status_code == 200


async def test_over_the_cap_a_paced_request_is_refused_at_once_and_audited(runtime: Runtime) -> None:
    """With two held at most: a held refusal and one waiting request fill the cap; the paced key's next
    request is a 429 problem with Retry-After and ``Connection: close`` at once, and the audit log
    counts it as a deny entry."""
    tenant, flooding = await tenant_with_key(runtime, ["*:*"])
    send = refused_job(flooding, {"nope": 1})
    async with paced_api(runtime) as (api, pacer):
        for _ in range(BURST):
            assert (await send(api)).status_code == 422
        held = asyncio.ensure_future(send(api))
        await until(lambda: pacer.held == 1)
        waiting = asyncio.ensure_future(send(api))
        await until(lambda: pacer.held == 2)

        over = await send(api)
        assert over.status_code == 429 and over.headers["content-type"] == PROBLEM
        assert over.json()["code"] == "rate_limited"
        assert int(over.headers["retry-after"]) >= 1
        assert over.headers["connection"] == "close"
        assert not held.done() and not waiting.done()

        pacer.release_all()
        assert (await held).status_code == 422
        assert (await waiting).status_code == 422
    entries = await runtime.gate.audit.list(tenant, limit=50)
    paced = [e for e in entries if e.action == PACED_ACTION]
    assert len(paced) == 1 and paced[0].decision == "deny"
    assert paced[0].details["refusals"] == 1


async def test_unauthenticated_floods_are_paced_by_address_not_the_keys_behind_it(runtime: Runtime) -> None:
    """Wrong keys from one address are paced by that address; a valid key from the same address is
    answered at once (its refusals count against the key, not the address)."""
    _, key = await tenant_with_key(runtime, ["*:*"])
    async with paced_api(runtime) as (api, pacer):
        for _ in range(BURST):
            assert (await api.get("/v1/audit", headers=auth("jfk_wrong"))).status_code == 401
        held = asyncio.ensure_future(api.get("/v1/audit", headers=auth("jfk_wrong")))
        await until(lambda: pacer.held == 1)
        assert (await api.get("/v1/audit", headers=auth(key))).status_code == 200
        assert (await refused_job(key, {"nope": 1})(api)).status_code == 422
        assert not held.done()
        pacer.release_all()
        assert (await held).status_code == 401


async def test_a_stopping_server_answers_held_refusals_at_once(runtime: Runtime) -> None:
    """When the API server starts to shut down, a refusal held for up to a minute is answered (422) at
    once, instead of being cut off when a one-second graceful shutdown runs out."""
    _, flooding = await tenant_with_key(runtime, ["*:*"])
    app = create_app(runtime.settings, runtime)
    app.pacer.clock = lambda: 0.0
    port = free_port()
    server = ApiServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on",
                                      timeout_graceful_shutdown=1), app.pacer)
    serving = asyncio.ensure_future(server.serve())
    try:
        await until(lambda: server.started)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            send = refused_job(flooding, {"nope": 1})
            for _ in range(BURST):
                assert (await send(client)).status_code == 422
            held = asyncio.ensure_future(send(client))
            await until(lambda: app.pacer.held == 1)
            server.should_exit = True
            answer = await held
            assert answer.status_code == 422 and answer.json()["code"] == "invalid_inputs"
    finally:
        server.should_exit = True
        await serving


async def test_the_console_is_not_paced(runtime: Runtime) -> None:
    """The console (``/ui``) signs its users in by session: its refusals (an expired sign-in form, 403)
    are answered at once however many come from one address."""
    async with paced_api(runtime) as (api, pacer):
        for _ in range(2 * BURST):
            refused = asyncio.ensure_future(api.post("/ui/login", data={"token": "wrong"}))
            await until(lambda task=refused: task.done() or pacer.held > 0)
            assert pacer.held == 0
            assert (await refused).status_code == 403
