"""Helpers for tests that run JobForge processes as a user would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from workers.stack import free_port as stack_free_port
from workers.stack import pid_alive

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


_CLAIMS = Path(tempfile.gettempdir()) / "jobforge-test-ports"


def free_port() -> int:
    """A free port on 127.0.0.1 outside the ephemeral range (``workers.stack.free_port``), claimed for this
    process: test processes running side by side (pytest-xdist workers, other checkouts' suites) never get
    the same port while the process that claimed it lives."""
    _CLAIMS.mkdir(exist_ok=True)
    for _ in range(100):
        port = stack_free_port()
        claim = _CLAIMS / str(port)
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(claim.read_text() or "0")
            except (OSError, ValueError):
                continue
            if holder and pid_alive(holder):
                continue
            claim.unlink(missing_ok=True)  # its process is gone: the port is free to claim again
            continue
        with os.fdopen(fd, "w") as out:
            out.write(str(os.getpid()))
        return port
    raise RuntimeError(f"no unclaimed free port after 100 tries (claims in {_CLAIMS})")


def env_with(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBFORGE_", "PYTEST_"))}
    env.pop("REPLAY_PACK_ENABLED", None)
    env.pop("VERIFY_PACK_ENABLED", None)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def jobforge(*args: str, env: Mapping[str, str], cwd: Path | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "jobforge"), *args], env=dict(env), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_worker(settings: object, log: Path, extra: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A real ``jobforge-worker`` process on the test's services and task queue."""
    from shared.settings import Settings

    assert isinstance(settings, Settings)
    env = env_with({
        "JOBFORGE_TEMPORAL_ADDRESS": settings.temporal_address,
        "JOBFORGE_DATABASE_URL": settings.database_url_value() or "",
        "JOBFORGE_TASK_QUEUE": settings.task_queue,
        "JOBFORGE_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "0.5",
        "JOBFORGE_LOG_FORMAT": "json",
        "JOBFORGE_HOME": str(settings.home),
        **(extra or {}),
    })
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "workers.worker"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def start_dev(env: dict[str, str], ports: dict[str, int], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``jobforge dev`` on the given ports (temporal, ui, pg, api), with ``args`` added, its output in ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(BIN / "jobforge"), "dev", "--temporal-port", str(ports["temporal"]), "--ui-port", str(ports["ui"]),
             "--pg-port", str(ports["pg"]), "--api-port", str(ports["api"]), *args],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop_dev(proc: subprocess.Popen[bytes], log: Path, sig: int = signal.SIGINT) -> None:
    """Stop a ``jobforge dev`` as Ctrl-C (or ``sig``) does; it must exit 0 within a minute."""
    proc.send_signal(sig)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("jobforge dev did not stop within 60 s: " + log.read_text()[-2000:]) from None
    assert code == 0, log.read_text()[-2000:]


@contextlib.contextmanager
def api_and_worker(env: Mapping[str, str], home: Path, port: int, timeout: float = 60) -> Iterator[str]:
    """A ``jobforge-api`` on ``port`` and a ``jobforge-worker`` (this interpreter, logs in ``home``), both
    ready; yields the API's base URL and stops both afterwards."""
    from workers.stack import terminate

    procs = []
    try:
        for name, cmd in (("api", [sys.executable, "-m", "workers.api", "--port", str(port)]),
                          ("worker", [sys.executable, "-m", "workers.worker"])):
            with (home / f"{name}.log").open("ab") as out:
                procs.append(subprocess.Popen(cmd, cwd=ROOT, env=dict(env), stdout=out,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True))
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            import httpx

            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout, "the API")
        wait_for(lambda: "worker_started" in (home / "worker.log").read_text(), timeout, "the worker")
        yield base
    finally:
        for proc in procs:
            terminate(proc, 10)
