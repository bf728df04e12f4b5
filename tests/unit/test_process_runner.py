"""The step runner: process groups, timeouts, escaped grandchildren, cancellation, redaction (real processes)."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import time
from pathlib import Path

import psutil

from activities.process import kill_stale, run_process

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def live(token: str) -> list[psutil.Process]:
    """Live processes with ``token`` as a whole argument (``sleep 5171``; a substring would also match
    another test's random port such as ``--port 51712``)."""
    return [proc for proc in psutil.process_iter(["cmdline", "status"])
            if token in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE]


async def gone(*tokens: str) -> bool:
    """Whether every process named by ``tokens`` is gone within a few seconds (a kill is not instant)."""
    deadline = time.monotonic() + 5
    while any(live(token) for token in tokens):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def run(script: str, tmp_path: Path, **kw: object) -> tuple[object, str]:
    sink = io.StringIO()
    options: dict[str, object] = {"time_limit": 10.0, "kill_grace": 0.5, "final_read_seconds": 0.5, **kw}
    result = await run_process(["/bin/sh", "-c", script], cwd=tmp_path, env=ENV, sink=sink, **options)  # type: ignore[arg-type]
    return result, sink.getvalue()


async def test_output_exit_code_and_tail(tmp_path: Path) -> None:
    """stdout and stderr land in the log in order; the exit code and the last lines come back."""
    result, text = await run("echo one; echo two >&2; printf three; exit 4", tmp_path)
    assert text == "one\ntwo\nthree"
    assert result.exit_code == 4 and result.tail == ["one", "two", "three"] and not result.timed_out  # type: ignore[attr-defined]


async def test_missing_command_is_exit_127(tmp_path: Path) -> None:
    """A command that does not exist fails like a shell would say it, with a readable reason."""
    result = await run_process(["no-such-tool-xyz"], cwd=tmp_path, env=ENV, time_limit=5, kill_grace=0.1,
                               sink=io.StringIO())
    assert result.exit_code == 127 and "command not found: no-such-tool-xyz" in result.error


async def test_timeout_terms_then_kills_the_whole_group(tmp_path: Path) -> None:
    """A command ignoring SIGTERM with a background child is SIGKILLed, group and all, right after the grace."""
    started = time.monotonic()
    result, _ = await run("trap '' TERM; sleep 5171 & sleep 5172; wait", tmp_path, time_limit=0.5)
    assert result.timed_out and result.exit_code is None  # type: ignore[attr-defined]
    assert time.monotonic() - started < 4
    assert await gone("5171", "5172")


async def test_background_child_holding_the_pipe_is_killed_at_exit(tmp_path: Path) -> None:
    """The command exits; the child it left in its group (holding stdout) is killed; no waiting for EOF."""
    started = time.monotonic()
    result, text = await run("sleep 5173 & echo done", tmp_path, final_read_seconds=5)
    assert result.exit_code == 0 and text == "done\n"  # type: ignore[attr-defined]
    assert result.stragglers_killed >= 1 and not result.pipe_abandoned  # type: ignore[attr-defined]
    assert time.monotonic() - started < 3 and not live("5173")


async def test_escaped_grandchild_cannot_hang_the_final_read(tmp_path: Path) -> None:
    """A grandchild in its own session holding stdout: the read stops after final_read_seconds."""
    started = time.monotonic()
    try:
        result, text = await run("setsid sleep 5174 & sleep 0.3; echo done", tmp_path, final_read_seconds=0.5)
        assert result.exit_code == 0 and result.pipe_abandoned  # type: ignore[attr-defined]
        assert time.monotonic() - started < 3
        assert "kept the output open" in text
    finally:
        for proc in live("5174"):
            proc.kill()


async def test_escaped_grandchild_seen_while_running_is_killed(tmp_path: Path) -> None:
    """A session-escaping grandchild that was seen among the descendants while the step ran is killed at its end."""
    result, _ = await run("setsid sleep 5175 & sleep 0.4; echo done", tmp_path, tick_seconds=0.1)
    assert result.exit_code == 0 and result.stragglers_killed >= 1  # type: ignore[attr-defined]
    assert await gone("5175")


async def test_cancellation_kills_the_group(tmp_path: Path) -> None:
    """Cancelling the runner kills the running process group before the cancellation propagates."""
    task = asyncio.ensure_future(run("sleep 5176 & sleep 5177", tmp_path))
    for _ in range(100):
        if live("5177"):
            break
        await asyncio.sleep(0.02)
    task.cancel()
    try:
        await task
        raise AssertionError("the runner swallowed the cancellation")
    except asyncio.CancelledError:
        pass
    assert await gone("5176", "5177")


async def test_output_is_redacted_and_bounded(tmp_path: Path) -> None:
    """Secrets are redacted before they reach the log; output past max_log_bytes is dropped and counted."""
    token = "ghp_" + "Z9" * 20
    result, text = await run(f"echo 'key {token}'; head -c 5000 /dev/zero | tr '\\0' x; echo", tmp_path,
                             max_log_bytes=1000)
    assert token not in text and "key [REDACTED]" in text
    assert len(text) < 1300 and "output truncated" in text and result.output_bytes > 5000  # type: ignore[attr-defined]


def test_kill_stale_kills_what_a_dead_attempt_left(tmp_path: Path) -> None:
    """A pid file left by an earlier attempt leads to that process group being killed (pid reuse is checked)."""
    proc = subprocess.Popen(["sleep", "5178"], start_new_session=True)
    pidfile = tmp_path / "step.pid"
    pidfile.write_text(f'{{"pid": {proc.pid}, "create_time": {psutil.Process(proc.pid).create_time()}}}')
    assert kill_stale(pidfile)
    assert proc.wait(5) == -9
    pidfile.write_text(f'{{"pid": {proc.pid}, "create_time": 1.0}}')
    assert not kill_stale(pidfile)


def test_a_step_dies_with_its_worker(tmp_path: Path) -> None:
    """SIGKILL of the process running a step kills the step's command too (no bubblewrap needed)."""
    token = str(5000 + int(time.time() * 1000) % 4000)
    marker = tmp_path / "finished"
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import asyncio, io, pathlib, sys\n"
         "from activities.process import run_process\n"
         f"asyncio.run(run_process(['/bin/sh', '-c', 'sleep {token}; touch {marker}'], cwd=pathlib.Path('{tmp_path}'),"
         " env={'PATH': '/usr/bin:/bin'}, time_limit=60, kill_grace=1, sink=io.StringIO()))\n"],
        cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 20
        while not live(token):
            assert time.monotonic() < deadline and parent.poll() is None, "the step never started"
            time.sleep(0.05)
        shell = [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[:2] == ["/bin/sh", "-c"]
                 and f"sleep {token}" in " ".join(p.info["cmdline"] or [])]
        assert shell, "the step's shell is not running"
        parent.kill()
        parent.wait(10)
        psutil.wait_procs(shell, timeout=10)
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in shell)
        assert not marker.exists()
    finally:
        parent.kill()
        for proc in live(token):
            proc.kill()
