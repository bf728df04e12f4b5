"""JobForge's processes under hostile input and outages, run as a user runs them: the CLI answers one
line and exit 2 (never a traceback), refuses an oversized ``@file`` without reading it, the API
answers what its HTTP server cannot parse as problem+json, and a worker stops within its grace
period when Temporal is away."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from shared.settings import Settings
from tests.support.procs import BIN, ROOT, env_with, free_port, jobforge, wait_for
from workers.stack import temporal_binary

pytestmark = pytest.mark.e2e


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    return env_with({"JOBFORGE_TEMPORAL_ADDRESS": settings.temporal_address,
                     "JOBFORGE_DATABASE_URL": settings.database_url_value() or "",
                     "JOBFORGE_HOME": str(settings.home), "JOBFORGE_EVENTS_ENABLED": "1",
                     "JOBFORGE_TRIGGERS_ENABLED": "1", **extra})


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def one_line_error(done: subprocess.CompletedProcess[str], code: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and code in lines[0], done.stderr


def test_cli_answers_bad_input_and_outages_in_one_line(settings: Settings) -> None:
    """NUL in a payload, an over-long trigger pattern, the store away and Temporal away: each is one
    line on stderr and exit 2."""
    env = cli_env(settings)
    tenant = f"c-{uuid.uuid4().hex[:8]}"
    created = jobforge("tenants", "create", tenant, env=env)
    assert created.returncode == 0, created.stderr
    one_line_error(jobforge("events", "submit", "--tenant", tenant, "--type", "x.y",
                            "--payload", '{"a": "b\\u0000"}', env=env), "unstorable_text")
    one_line_error(jobforge("triggers", "create", "--tenant", tenant, "--name", "long", "--event", "x" * 201,
                            "--template", "autopilot.jobforge.healthcheck", env=env), "error")
    away = cli_env(settings, JOBFORGE_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    one_line_error(jobforge("runs", "list", "--tenant", tenant, env=away), "store_unavailable")
    no_temporal = cli_env(settings, JOBFORGE_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
                          JOBFORGE_AUTOPILOT_JOBS_ENABLED="1")
    one_line_error(jobforge("jobs", "request", "autopilot.jobforge.healthcheck", "--tenant", tenant,
                            env=no_temporal, timeout=60), "temporal_unavailable")


def peak_rss_kib(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``jobforge args`` under a wrapper that reports the peak resident size of its one child."""
    wrapper = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stdout.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
               "sys.stderr.write(done.stderr); sys.exit(done.returncode)")
    done = subprocess.run([sys.executable, "-c", wrapper, str(BIN / "jobforge"), *args], env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    return done, int(done.stdout.strip() or 0)


def test_payload_file_over_the_limit_is_refused_unread(settings: Settings, tmp_path: Path) -> None:
    """``events submit --payload @file`` refuses a 50 MB file without reading it: the process grows by
    no more than it does for a one-line file."""
    big, small = tmp_path / "big.json", tmp_path / "small.json"
    with big.open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    small.write_text('{"n": 1}')
    env = cli_env(settings, JOBFORGE_SECURITY_VALIDATION_ENABLED="1")
    refused, big_rss = peak_rss_kib(["events", "submit", "--tenant", "acme", "--type", "x.y", "--payload",
                                     f"@{big}"], env)
    baseline, small_rss = peak_rss_kib(["events", "submit", "--tenant", "acme", "--type", "Not A Type",
                                        "--payload", f"@{small}"], env)  # read, parsed, then refused
    one_line_error(refused, "over the limit")
    assert baseline.returncode == 2 and "Traceback" not in baseline.stderr, baseline.stderr
    assert big_rss < small_rss + 20 * 1024, f"{big_rss} KiB for 50 MB vs {small_rss} KiB for a small file"


def test_api_answers_unparsable_http_with_a_problem(settings: Settings, tmp_path: Path) -> None:
    """Headers over the server's limit get a problem+json 400, not the HTTP server's plain text."""
    port = free_port()
    env = cli_env(settings, JOBFORGE_API_PORT=str(port), JOBFORGE_API_HOST="127.0.0.1")
    api = spawn([str(BIN / "jobforge-api")], env, tmp_path / "api.log")
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 60, "the API")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
            try:
                for at in range(0, len(head), 4096):  # as a slow client sends it: the server's buffer limit bites
                    sock.sendall(head[at:at + 4096])
                    time.sleep(0.002)
            except OSError:
                pass  # the server answered and closed before the rest arrived
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), answer[:200]
        assert b"content-type: application/problem+json" in head.lower()
        assert b'"code":"invalid_http_request"' in body
    finally:
        api.send_signal(signal.SIGTERM)
        try:
            api.wait(20)
        except subprocess.TimeoutExpired:
            api.kill()


async def test_worker_stops_within_its_grace_period_while_temporal_is_down(settings: Settings,
                                                                           tmp_path: Path) -> None:
    """SIGTERM while Temporal hangs (its server stopped, connections open): the worker exits within its
    grace period plus a short margin instead of waiting out every poller's and archiver's timeouts."""
    port = free_port()
    server = await asyncio.to_thread(spawn, [str(temporal_binary()), "server", "start-dev", "--port", str(port),
                                             "--headless", "--ui-port", str(free_port()), "--log-level", "error"],
                                     env_with({}), tmp_path / "temporal.log")
    worker: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.to_thread(wait_for, lambda: _listening(port), 30, "the Temporal dev server")
        grace = 2.0
        log = tmp_path / "worker.log"
        worker = await asyncio.to_thread(spawn, [sys.executable, "-m", "workers.worker"], cli_env(
            settings, JOBFORGE_TEMPORAL_ADDRESS=f"127.0.0.1:{port}", JOBFORGE_TASK_QUEUE=settings.task_queue,
            JOBFORGE_LOG_FORMAT="json", JOBFORGE_WORKER_GRACEFUL_SHUTDOWN_SECONDS=str(grace)), log)
        await asyncio.to_thread(wait_for, lambda: "worker_started" in log.read_text(), 60, "the worker")
        server.send_signal(signal.SIGSTOP)
        await asyncio.to_thread(wait_for, lambda: psutil.Process(server.pid).status() == psutil.STATUS_STOPPED, 10,
                                "the Temporal dev server to stop")
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 60)
        took = time.monotonic() - started
        assert code == 0, log.read_text()[-2000:]
        assert took < grace + 5 + 3, f"{took:.1f}s to stop"
        assert "worker_shutdown_cut" in log.read_text()
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        server.send_signal(signal.SIGCONT)
        server.kill()
        await asyncio.to_thread(server.wait, 20)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True
