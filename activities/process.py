"""Run one repository command the way a careful CI runner does.

* its own session and process group (``start_new_session``), so the whole tree can be signalled;
* on Linux it gets SIGKILL when the worker dies (``PR_SET_PDEATHSIG``, what bubblewrap's
  ``--die-with-parent`` does for sandboxed steps), so a SIGKILLed worker leaves no step running on
  to write results a retried step would then see twice;
* the environment given (an allowlist, built by :mod:`shared.verify.environment`), stdin closed;
* a timeout: SIGTERM to the group, ``kill_grace`` seconds, then SIGKILL to the group;
* when the command exits, what it left running in its group (and descendants seen while it ran,
  even ones that left the group) is killed too;
* the final read of its output is bounded: a grandchild that escaped with the pipe cannot hang us
  (CPython #76116 is why ``subprocess.run(timeout=)`` is not used);
* output is redacted line by line while it streams into the log file, so secrets never hit disk;
* cancellation (``asyncio.CancelledError``) kills the group before it propagates.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil
import structlog

from shared.security.redaction import StreamRedactor

log = structlog.get_logger("jobforge.activities.process")

TAIL_LINES = 20
TAIL_LINE_CHARS = 500


@dataclass(frozen=True)
class Progress:
    elapsed: float
    output_bytes: int
    last_line: str


@dataclass(frozen=True)
class ProcessResult:
    #: None when the process was killed by a signal
    exit_code: int | None
    timed_out: bool
    duration: float
    output_bytes: int
    tail: list[str]
    #: why the command could not start, or what went wrong around it
    error: str = ""
    #: the output pipe was still held open by an escaped process when we stopped reading
    pipe_abandoned: bool = False
    stragglers_killed: int = 0
    signal: int | None = None


@dataclass
class _Output:
    """Receives raw output: decodes, redacts, writes the log and keeps a tail."""

    sink: IO[str]
    max_bytes: int
    redactor: StreamRedactor = field(default_factory=StreamRedactor)
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    total: int = 0
    written: int = 0
    truncated: bool = False
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    _line: str = ""

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        self._emit(self.redactor.feed(self.decoder.decode(data)))

    def close(self) -> None:
        self._emit(self.redactor.feed(self.decoder.decode(b"", final=True)) + self.redactor.flush())
        if self._line:
            self.tail.append(self._line[:TAIL_LINE_CHARS])
            self._line = ""
        if self.truncated:
            self.sink.write(f"\n[jobforge: output truncated after {self.max_bytes} bytes; "
                            f"{self.total} bytes were produced]\n")
        self.sink.flush()

    def _emit(self, text: str) -> None:
        if not text:
            return
        lines = (self._line + text).split("\n")
        self._line = lines.pop()[-TAIL_LINE_CHARS * 4:]
        self.tail.extend(line[:TAIL_LINE_CHARS] for line in lines[-TAIL_LINES:])
        if self.written < self.max_bytes:
            piece = text[: self.max_bytes - self.written]
            self.sink.write(piece)
            self.written += len(piece)
            self.truncated = len(piece) < len(text)
        else:
            self.truncated = True

    @property
    def last_line(self) -> str:
        return (self._line or (self.tail[-1] if self.tail else ""))[:200]


def kill_stale(pidfile: Path) -> bool:
    """Kill the process group a previous attempt of this step left behind (its worker died)."""
    try:
        data = json.loads(pidfile.read_text())
        pid, created = int(data["pid"]), float(data["create_time"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    try:
        if abs(psutil.Process(pid).create_time() - created) > 0.01:
            return False  # the pid was reused by an unrelated process
    except psutil.Error:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    log.warning("stale_step_killed", pid=pid)
    return True


def _write_pidfile(pidfile: Path, pid: int) -> None:
    with contextlib.suppress(psutil.Error, OSError):
        pidfile.write_text(json.dumps({"pid": pid, "create_time": psutil.Process(pid).create_time()}))


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies do not count: a sandbox's exited init can linger
    unreaped under a PID 1 that reaps slowly)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _descendants(pid: int) -> dict[int, float]:
    try:
        return {child.pid: child.create_time() for child in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return {}


def _kill_pids(pids: Mapping[int, float]) -> int:
    killed = 0
    for pid, created in pids.items():
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) > 0.01:
                continue
            proc.kill()
            killed += 1
        except psutil.Error:
            continue
    return killed


class _Exit:
    """Tells when a child exits: a pidfd on Linux, polling elsewhere."""

    def __init__(self, proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.proc = proc
        self.loop = loop
        self.event = asyncio.Event()
        self.fd: int | None = None
        try:
            self.fd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            self.fd = None
        if self.fd is not None:
            loop.add_reader(self.fd, self._check)
        self._check()

    def _check(self) -> None:
        if self.proc.poll() is not None:
            self.event.set()
            self.close()

    async def wait(self, within: float) -> bool:
        """Whether the process exited within ``within`` seconds."""
        if self.fd is None:
            deadline = time.monotonic() + within
            while self.proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - fallback without pidfd
                await asyncio.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
            self._check()
            return self.event.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), within)
        return self.event.is_set()

    def close(self) -> None:
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None


class _Reader:
    """Non-blocking reads of the output pipe on the event loop."""

    def __init__(self, fd: int, out: _Output, loop: asyncio.AbstractEventLoop) -> None:
        self.fd: int | None = fd
        self.out = out
        self.loop = loop
        self.eof = asyncio.Event()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read)

    def _read(self) -> None:
        while self.fd is not None:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                data = b""
            if not data:
                self.eof.set()
                self.close()
                return
            self.out.feed(data)

    async def drain(self, within: float) -> bool:
        """Read until EOF for at most ``within`` seconds; whether EOF was reached."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.eof.wait(), within)
        if not self.eof.is_set():
            self._read()
        return self.eof.is_set()

    def close(self) -> None:
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None


async def _terminate(proc: subprocess.Popen[bytes], exit_: _Exit, grace: float) -> None:
    """SIGTERM the group, give it ``grace`` seconds, then SIGKILL the group."""
    _signal_group(proc.pid, signal.SIGTERM)
    await exit_.wait(grace)
    _signal_group(proc.pid, signal.SIGKILL)
    await exit_.wait(5.0)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` giving the child SIGKILL when this process dies (Linux), else None.

    The kernel sends it when the *thread* that forked exits: :func:`run_process` starts commands from
    the event loop's thread, which lives as long as the worker.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the worker died between fork and prctl
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


_DIE_WITH_PARENT = _die_with_parent()


async def run_process(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], time_limit: float, kill_grace: float, sink: IO[str],
    on_tick: Callable[[Progress], None] | None = None, tick_seconds: float = 1.0, pidfile: Path | None = None,
    final_read_seconds: float = 2.0, max_log_bytes: int = 20 * 1024 * 1024,
) -> ProcessResult:
    """Run ``argv`` to completion, timeout or cancellation; see the module docstring."""
    loop = asyncio.get_running_loop()
    out = _Output(sink=sink, max_bytes=max_log_bytes)
    started = time.monotonic()
    read_fd, write_fd = os.pipe()
    try:
        # starting is instant; all waiting below is asynchronous
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,  # noqa: ASYNC220
                                stdout=write_fd, stderr=write_fd, start_new_session=True, close_fds=True,
                                preexec_fn=_DIE_WITH_PARENT)
    except FileNotFoundError:
        os.close(read_fd)
        return ProcessResult(exit_code=127, timed_out=False, duration=time.monotonic() - started, output_bytes=0,
                             tail=[], error=f"command not found: {argv[0]}")
    except PermissionError:
        os.close(read_fd)
        return ProcessResult(exit_code=126, timed_out=False, duration=time.monotonic() - started, output_bytes=0,
                             tail=[], error=f"permission denied: {argv[0]}")
    finally:
        os.close(write_fd)
    if pidfile is not None:
        _write_pidfile(pidfile, proc.pid)  # synchronous: no await may sit between start and supervision
    reader = _Reader(read_fd, out, loop)
    exit_ = _Exit(proc, loop)
    seen: dict[int, float] = {}
    timed_out = False
    deadline = started + time_limit
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                await _terminate(proc, exit_, kill_grace)
                break
            if await exit_.wait(min(tick_seconds, remaining)):
                break
            seen.update(_descendants(proc.pid))
            if on_tick is not None:
                on_tick(Progress(time.monotonic() - started, out.total, out.last_line))
    except asyncio.CancelledError:
        # the activity was cancelled: the whole group goes, whatever else cancels us meanwhile
        cleanup = asyncio.ensure_future(_terminate(proc, exit_, kill_grace))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(cleanup)
        _kill_pids(seen)
        reader.close()
        exit_.close()
        out.close()
        raise
    # what the command left behind: its group, then descendants that left the group
    stragglers = 0
    if _group_alive(proc.pid):
        stragglers += 1
        _signal_group(proc.pid, signal.SIGTERM)
        give_up = time.monotonic() + min(0.5, kill_grace)
        while _group_alive(proc.pid) and time.monotonic() < give_up:  # noqa: ASYNC110 - no event for a group's end
            await asyncio.sleep(0.005)
        _signal_group(proc.pid, signal.SIGKILL)
    stragglers += _kill_pids(seen)
    eof = await reader.drain(final_read_seconds)
    reader.close()
    exit_.close()
    out.close()
    code = proc.returncode
    duration = time.monotonic() - started
    if not eof:
        sink.write("\n[jobforge: a background process kept the output open; stopped reading]\n")
    return ProcessResult(
        exit_code=code if code is not None and code >= 0 else None, timed_out=timed_out, duration=duration,
        output_bytes=out.total, tail=list(out.tail), pipe_abandoned=not eof, stragglers_killed=stragglers,
        signal=-code if code is not None and code < 0 else None,
    )
