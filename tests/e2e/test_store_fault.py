"""PostgreSQL killed and restarted under event load, against a real ``jobforge-api`` process on a
private PostgreSQL (never the machine's shared server): every answer is an accepted event, a refusal
the request earned (4xx), or a problem+json 503 with Retry-After; no accepted event is lost and no
refused event is stored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.settings import Secret, Settings
from shared.store.migrate import upgrade
from tests.support.procs import ROOT, env_with, free_port, wait_for
from workers.runtime import open_runtime
from workers.stack import EmbeddedPostgres, pid_alive

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"
#: events per second the senders aim at, together
RATE = 20


def crash(pg: EmbeddedPostgres) -> None:
    """SIGKILL the postmaster and every backend under it, as a machine crash or the OOM killer would."""
    pid = int((pg.pgdata / "postmaster.pid").read_text().splitlines()[0])
    children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == pid]
    for victim in (pid, *children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(v) for v in (pid, *children)), 30, "PostgreSQL's processes to die")
    # here nobody may reap the killed postmaster (a container's init), and PostgreSQL takes a zombie
    # holding its old pid for a live server: drop its lock file, as a reboot would
    (pg.pgdata / "postmaster.pid").unlink()


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class Answers:
    """Every event sent and what the API answered."""

    def __init__(self) -> None:
        self.accepted: set[str] = set()
        self.refused: set[str] = set()
        self.unavailable: set[str] = set()
        self.wrong: list[str] = []

    def judge(self, event_id: str, hostile: bool, answer: httpx.Response | None, error: str = "") -> None:
        if answer is None:
            self.wrong.append(f"{event_id}: no answer ({error})")
            return
        status, kind = answer.status_code, answer.headers.get("content-type", "")
        if status in (200, 202) and not hostile:
            self.accepted.add(event_id)
        elif status == 422 and hostile and kind == PROBLEM and answer.json()["code"] == "unstorable_text":
            self.refused.add(event_id)
        elif status == 503 and kind == PROBLEM and answer.headers.get("retry-after") and answer.json()["code"] in (
                "store_unavailable", "temporal_unavailable"):
            self.unavailable.add(event_id)
        else:
            self.wrong.append(f"{event_id} (hostile={hostile}): {status} {kind} {answer.text[:200]}")


async def send_events(url: str, key: str, answers: Answers, stop: asyncio.Event, senders: int = 4) -> None:
    """``senders`` clients sending RATE events a second in all until ``stop``; every fifth event has a NUL."""
    counter = iter(range(10**9))

    async def sender(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            n = next(counter)
            hostile = n % 5 == 4
            event_id = f"e{n}"
            payload: dict[str, Any] = {"n": n, "note": "bad\u0000" if hostile else "ok"}
            started = time.monotonic()
            try:
                answer = await client.post("/v1/events", json={"event_id": event_id, "event_type": "load.tick",
                                                               "payload": payload})
                answers.judge(event_id, hostile, answer)
            except httpx.TransportError as exc:
                answers.judge(event_id, hostile, None, type(exc).__name__)
            await asyncio.sleep(max(0.0, senders / RATE - (time.monotonic() - started)))

    async with httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        await asyncio.gather(*(sender(client) for _ in range(senders)))


async def test_postgres_killed_and_restarted_under_event_load(settings: Settings, stack_tmp_path: Path) -> None:
    """Kill PostgreSQL (postmaster and backends) while 20 events/s arrive, restart it: the API answers
    only 2xx, the 422 the NUL events earn, and problem+json 503s with Retry-After meanwhile; afterwards
    every accepted event is stored, no refused one is, and retrying the 503-answered ones stores each once."""
    pg = EmbeddedPostgres(stack_tmp_path / "pgdata", free_port())
    db_url = await asyncio.to_thread(pg.start)
    api: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.to_thread(upgrade, db_url)
        private = settings.replace(database_url=Secret(db_url))
        tenant = f"fault-{uuid.uuid4().hex[:6]}"
        async with open_runtime(private, temporal=False) as rt:
            await rt.gate.tenants.create_tenant(tenant)
            key = (await rt.gate.tenants.create_key(tenant, ["events:write"])).secret
        port = free_port()
        log = stack_tmp_path / "api.log"
        env = env_with({
            "JOBFORGE_DATABASE_URL": db_url, "JOBFORGE_TEMPORAL_ADDRESS": settings.temporal_address,
            "JOBFORGE_TASK_QUEUE": settings.task_queue, "JOBFORGE_HOME": str(settings.home),
            "JOBFORGE_API_HOST": "127.0.0.1", "JOBFORGE_API_PORT": str(port), "JOBFORGE_LOG_FORMAT": "json",
            "JOBFORGE_EVENTS_ENABLED": "1", "JOBFORGE_SECURITY_VALIDATION_ENABLED": "1",
            "JOBFORGE_AUDIT_LOGGING_ENABLED": "1", "JOBFORGE_RATE_LIMITING_ENABLED": "1",
            "JOBFORGE_RATE_LIMIT_PER_MINUTE": "100000",
            # one event in five is refused by design (4 refusals/s): measured here are outage answers at a
            # steady rate, so the sender is not paced as a repeat offender (docs/security.md)
            "JOBFORGE_REFUSAL_PACING_PER_MINUTE": "600",
        })
        with log.open("wb") as out:
            api = subprocess.Popen([sys.executable, "-m", "workers.api"], cwd=ROOT, env=env, stdout=out,  # noqa: ASYNC220 - started once, before the load
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"

        def api_up() -> bool:
            try:
                return httpx.get(url + "/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        await asyncio.to_thread(wait_for, api_up, 60, "jobforge-api")
        answers, stop = Answers(), asyncio.Event()
        load = asyncio.ensure_future(send_events(url, key, answers, stop))

        async def until(predicate: Any, seconds: float, what: str) -> None:
            deadline = time.monotonic() + seconds
            while not predicate():
                assert not load.done(), load.exception()
                assert time.monotonic() < deadline, f"timed out waiting for {what}: {len(answers.wrong)} wrong"
                await asyncio.sleep(0.05)

        await until(lambda: len(answers.accepted) >= 20, 60, "events accepted before the crash")
        await asyncio.to_thread(crash, pg)
        await until(lambda: len(answers.unavailable) >= 5, 60, "503s while PostgreSQL is down")
        await asyncio.to_thread(pg.start)
        after_restart = len(answers.accepted)
        await until(lambda: len(answers.accepted) >= after_restart + 20, 120, "events accepted after the restart")
        stop.set()
        await load

        assert answers.wrong == [], "\n".join(answers.wrong[:20])
        assert answers.refused, "no NUL event was refused: the load did not exercise refusals"
        async with open_runtime(private, temporal=False) as rt:
            stored = {e.event_id for e in await rt.store.triggers.events(tenant, limit=100_000)}
            assert answers.accepted <= stored, f"accepted but lost: {sorted(answers.accepted - stored)[:20]}"
            assert not answers.refused & stored, f"refused but stored: {sorted(answers.refused & stored)[:20]}"
            # a 503 is "not known": the client retries with the same id, and dedupe keeps one copy
            async with httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as c:
                for event_id in sorted(answers.unavailable):
                    n = int(event_id[1:])
                    if n % 5 == 4:
                        continue
                    again = await c.post("/v1/events", json={"event_id": event_id, "event_type": "load.tick",
                                                             "payload": {"n": n, "note": "ok"}})
                    assert again.status_code in (200, 202), again.text
            rows = await rt.store.triggers.events(tenant, limit=100_000)
        ids = [e.event_id for e in rows]
        assert len(ids) == len(set(ids)), "an event is stored twice"
        assert not [i for i in ids if int(i[1:]) % 5 == 4], "an event with a NUL in its payload is stored"
        expected = answers.accepted | {e for e in answers.unavailable if int(e[1:]) % 5 != 4}
        assert set(ids) == expected
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        if api is not None:
            api.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(api.wait, 30)
            except subprocess.TimeoutExpired:
                api.kill()
        await asyncio.to_thread(pg.stop)
