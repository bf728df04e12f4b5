"""Run the shell blocks of a Markdown page, as written, as one shell session against the embedded stack.

A page is a session a user pastes: its ``sh``/``bash``/``shell`` fenced blocks run in order in one
``bash`` process (variables, ``cd`` and ``export`` carry from block to block; each block's stdin is
``/dev/null``), each block with errexit semantics: the first command that fails ends the block, and a
block that fails ends the session. Other fences (``python``, ``json``, ``text``) are not run unless
marked ``run`` (a ``python`` block then runs as ``python -`` in the same session: its working
directory and exported variables).

HTML comments right before a block (blank lines between are fine) steer the runner; they do not
render, so the page reads the same::

    <!-- docrun: skip REASON -->          not run (a reason is required; keep these rare)
    <!-- docrun: stack -->                this block starts ``jobforge dev``: run it in the background,
                                          on free ports, and wait until its state file is written
    <!-- docrun: known-failure REASON --> expected to fail until REASON (an issue) is fixed; the
                                          session goes on; a pass is reported, so the mark is removed
    <!-- docrun: expect REGEX -->         the block's output (stdout + stderr) must match REGEX
    <!-- docrun: timeout SECONDS -->      this block may take longer than the default
    <!-- docrun: run -->                  run this ``python`` block (a complete program, not a fragment)
    <!-- docrun: file PATH -->            write the block's text to PATH (relative to the session's working
                                          directory; folders are made): a module or config file the page
                                          shows in its own language, which later blocks use

A ``stack`` block holds exactly one ``jobforge dev`` command (and comments); the runner appends
``--temporal-port/--ui-port/--pg-port/--api-port`` with free ports, so the commands after it find the
stack exactly as a user's shell does: through ``.jobforge/state.json`` under the session's working
directory (or ``$JOBFORGE_HOME``). The stock ``temporal`` CLI finds it the same way, through
``TEMPORAL_ADDRESS``, which the session's environment carries. A page with no ``stack`` block gets
one started before its first block when ``stack=True``. Whatever way it started, the runner stops the
stack (SIGTERM, as a supervisor would) when the session ends. ``activate=True`` starts the session
with the virtualenv's ``bin`` first on ``PATH``, for pages that assume ``jobforge`` is on it.

:func:`checkout_view` builds the working directory a session runs in: the repository as a user's
clone looks (``.venv`` and the sources as symlinks, ``examples/`` copied so the stack's workers, which
run there, may verify it), so files the page writes (bundles, keys) stay out of the repository.

Used by ``tests/e2e/test_readme.py`` for README.md and, through ``tests/support/docpages.py``, by
``tests/e2e/test_docs_*.py`` for the documentation site's tutorials and how-to guides.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from tests.support.procs import free_port

#: fenced blocks in these languages are run
SHELL_LANGUAGES = frozenset({"sh", "bash", "shell"})
#: fenced blocks in these languages run when marked ``docrun: run``
PROGRAM_LANGUAGES = frozenset({"python"})
DEFAULT_BLOCK_TIMEOUT = 120.0
STACK_TIMEOUT = 90.0

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docrun:\s*(?P<kind>[a-z-]+)\s*(?P<arg>.*?)\s*-->\s*$")
_KINDS = frozenset({"skip", "stack", "known-failure", "expect", "timeout", "run", "file"})


class DocrunError(Exception):
    """The page cannot be run as marked (a directive without a block, an unknown directive, ...)."""


@dataclass(frozen=True)
class Block:
    """One fenced block of a page, with the directives that precede it."""

    source: str
    #: 1-based line of the opening fence
    line: int
    lang: str
    text: str
    skip: str | None = None
    stack: bool = False
    known_failure: str | None = None
    expect: tuple[str, ...] = ()
    timeout: float = DEFAULT_BLOCK_TIMEOUT
    #: a non-shell block marked to run
    run: bool = False
    #: write the text to this path instead of running it
    file: str | None = None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    @property
    def runs(self) -> bool:
        """Whether the block belongs to the session (skipped or not)."""
        return self.lang in SHELL_LANGUAGES or self.run or self.file is not None

    @property
    def runnable(self) -> bool:
        return self.runs and self.skip is None

    def script(self) -> str:
        """The shell text that runs this block."""
        if self.lang in SHELL_LANGUAGES and self.file is None:
            return self.text
        end = "__DOCRUN_END__"
        if end in self.text:
            raise DocrunError(f"{self.where}: the block contains {end}")
        if self.file is not None:
            path = shlex.quote(self.file)
            return f"mkdir -p \"$(dirname {path})\"\ncat > {path} <<'{end}'\n{self.text}{end}\n"
        return f"python -c {shlex.quote(PYTHON_BLOCK)} <<'{end}'\n{self.text}{end}\n"


#: How a python block runs: its text (stdin) in a child interpreter whose stderr is passed on. A child that
#: aborts while its interpreter finalizes with CPython's ``PyGILState_Release`` fatal error, after its program
#: has ended, counts as exit 0 with a line saying so: that abort is the Temporal Python SDK's
#: (temporalio/sdk-python#300, named on docs/temporal.md), and the block's ``expect`` patterns still have to
#: match what the program printed. Any other death by a signal is 128 + the signal, as a shell reports it.
PYTHON_BLOCK = """\
import signal, subprocess, sys
child = subprocess.run([sys.executable, "-c", sys.stdin.read()], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
sys.stderr.buffer.write(child.stderr)
if (child.returncode == -signal.SIGABRT and b"Fatal Python error: PyGILState_Release" in child.stderr
        and b"Python runtime state: finalizing" in child.stderr):
    sys.stderr.write("docrun: the interpreter aborted at exit (temporalio/sdk-python#300): counted as exit 0\\n")
    sys.exit(0)
sys.exit(child.returncode if child.returncode >= 0 else 128 - child.returncode)
"""


def parse(markdown: str, source: str = "<page>") -> list[Block]:
    """Every fenced block of ``markdown`` (nested in list items too), with its directives applied."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    pending: list[tuple[int, str, str]] = []  # (line, kind, arg) of directives waiting for their block
    index = 0
    while index < len(lines):
        line = lines[index]
        directive = _DIRECTIVE.match(line)
        opening = _FENCE.match(line)
        if directive:
            if directive["kind"] not in _KINDS:
                raise DocrunError(f"{source}:{index + 1}: unknown docrun directive {directive['kind']!r} "
                                  f"(known: {', '.join(sorted(_KINDS))})")
            pending.append((index + 1, directive["kind"], directive["arg"]))
        elif opening:
            indent, marker = len(opening["indent"]), opening["fence"]
            lang = (opening["info"].split() or [""])[0].lower()
            first = index + 1
            body: list[str] = []
            index += 1
            while index < len(lines):
                closing = lines[index].strip()
                if closing.startswith(marker) and not closing.strip(marker[0]):
                    break
                text = lines[index]
                body.append(text[indent:] if not text[:indent].strip() else text.lstrip(" "))
                index += 1
            blocks.append(_with_directives(Block(source, first, lang, "\n".join(body) + "\n"), pending, source))
            pending = []
        elif pending and line.strip():
            raise DocrunError(f"{source}:{pending[0][0]}: a docrun directive must come right before a fenced block")
        index += 1
    if pending:
        raise DocrunError(f"{source}:{pending[0][0]}: a docrun directive at the end of the page has no block")
    return blocks


def _with_directives(block: Block, directives: Sequence[tuple[int, str, str]], source: str) -> Block:
    changes: dict[str, object] = {}
    expects: list[str] = []
    for line, kind, arg in directives:
        where = f"{source}:{line}"
        if kind in ("skip", "known-failure") and not arg:
            raise DocrunError(f"{where}: `docrun: {kind}` needs a reason")
        if kind == "skip":
            changes["skip"] = arg
        elif kind == "known-failure":
            changes["known_failure"] = arg
        elif kind == "stack":
            changes["stack"] = True
        elif kind == "run":
            changes["run"] = True
        elif kind == "file":
            if not arg:
                raise DocrunError(f"{where}: `docrun: file` needs a path")
            changes["file"] = arg
        elif kind == "expect":
            try:
                re.compile(arg)
            except re.error as exc:
                raise DocrunError(f"{where}: `docrun: expect` is not a regular expression: {exc}") from None
            expects.append(arg)
        elif kind == "timeout":
            try:
                changes["timeout"] = float(arg)
            except ValueError:
                raise DocrunError(f"{where}: `docrun: timeout` needs seconds, not {arg!r}") from None
    if expects:
        changes["expect"] = tuple(expects)
    result = Block(**{**block.__dict__, **changes})  # type: ignore[arg-type]
    if result.file is not None and (result.run or result.stack):
        raise DocrunError(f"{result.where}: a `docrun: file` block is written, not run")
    if result.run and result.lang not in PROGRAM_LANGUAGES:
        raise DocrunError(f"{result.where}: `docrun: run` is for {', '.join(sorted(PROGRAM_LANGUAGES))} blocks "
                          f"(shell blocks always run), not {result.lang or 'plain'} ones")
    if not result.runs and directives:
        raise DocrunError(f"{result.where}: docrun directives on a {result.lang or 'plain'} block, which is never run "
                          "(mark it `docrun: run` to run it)")
    if result.stack:
        stack_command(result)  # refuse a malformed stack block early
    return result


def stack_command(block: Block) -> list[str]:
    """The ``jobforge dev`` command of a ``stack`` block, as argv (comments and line continuations removed)."""
    joined = block.text.replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in joined.splitlines()]
    commands = [c for c in commands if c]
    if len(commands) != 1:
        raise DocrunError(f"{block.where}: a `docrun: stack` block holds exactly one command, not {len(commands)}")
    argv = commands[0]
    words = [w for w in argv if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)]
    if len(words) < 2 or Path(words[0]).name != "jobforge" or words[1] != "dev":
        raise DocrunError(f"{block.where}: a `docrun: stack` block must run `jobforge dev`, not {shlex.join(argv)!r}")
    return argv


# -- running ----------------------------------------------------------------------------------------


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    #: failed, as its known-failure mark says
    KNOWN_FAILURE = "known failure"
    #: passed although marked as a known failure: remove the mark
    UNEXPECTED_PASS = "unexpected pass"
    #: after a failed block (the session stopped)
    NOT_RUN = "not run"


@dataclass
class BlockResult:
    block: Block
    outcome: Outcome
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    problem: str = ""


@dataclass
class SessionReport:
    results: list[BlockResult] = field(default_factory=list)
    stack_log: str = ""

    @property
    def ok(self) -> bool:
        return not any(r.outcome in (Outcome.FAILED, Outcome.UNEXPECTED_PASS) for r in self.results)

    def explain(self, tail: int = 40) -> str:
        """A readable account of every block that did not go as the page says."""
        parts: list[str] = []
        for r in self.results:
            if r.outcome not in (Outcome.FAILED, Outcome.UNEXPECTED_PASS):
                continue
            out = "\n".join((r.stdout.rstrip() + "\n" + r.stderr.rstrip()).strip().splitlines()[-tail:])
            parts.append(f"--- {r.block.where} ({r.outcome.value}, exit {r.exit_code}, {r.seconds:.1f}s): "
                         f"{r.problem}\n{r.block.text.rstrip()}\n--- its output (last {tail} lines):\n{out}")
        if not self.ok and self.stack_log:
            parts.append("--- the stack's log (last lines):\n" + "\n".join(self.stack_log.splitlines()[-tail:]))
        return "\n".join(parts) or "every block ran as written"

    def summary(self) -> str:
        return "\n".join(f"{r.block.where:<22} {r.outcome.value:<16} {r.seconds:6.1f}s" for r in self.results
                         if r.block.runs)


def checkout_view(root: Path, dest: Path, copy: Sequence[str] = ("examples",)) -> Path:
    """A directory that looks like a clone of ``root`` to a shell session, without writing into ``root``.

    Top-level entries are symlinks (``.venv`` points at the environment running this code), except the
    ``copy`` ones, which are copied (without caches or installed dependencies).
    """
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("node_modules", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache",
                                    ".pytest_cache", "*.egg-info", "build", "dist")
    for entry in root.iterdir():
        if entry.name in (".git", ".jobforge", ".venv") or entry.name.endswith(".egg-info"):
            continue
        target = dest / entry.name
        if entry.name in copy and entry.is_dir():
            shutil.copytree(entry, target, ignore=ignore, symlinks=True)
        else:
            target.symlink_to(entry)
    (dest / ".venv").symlink_to(Path(sys.prefix))
    return dest


class Session:
    """One page run as one shell session (see the module docstring)."""

    def __init__(self, blocks: Sequence[Block], workdir: Path, env: Mapping[str, str], *,
                 stack: bool = False, activate: bool = False, scratch: Path | None = None) -> None:
        self.blocks = list(blocks)
        self.workdir = workdir
        self.stack = stack
        self.scratch = scratch or workdir.parent / f"{workdir.name}.docrun"
        self.ports = {"temporal": free_port(), "ui": free_port(), "pg": free_port(), "api": free_port()}
        self.env = dict(env)
        # the stock temporal CLI reads TEMPORAL_ADDRESS: pointed at the session's stack, as a user would
        self.env.setdefault("TEMPORAL_ADDRESS", f"127.0.0.1:{self.ports['temporal']}")
        if activate:
            bin_dir = Path(sys.prefix) / "bin"
            self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"
            self.env["VIRTUAL_ENV"] = sys.prefix

    # -- the script ------------------------------------------------------------------------------

    def _stack_code(self, argv: Sequence[str]) -> str:
        ports = ["--temporal-port", str(self.ports["temporal"]), "--ui-port", str(self.ports["ui"]),
                 "--pg-port", str(self.ports["pg"]), "--api-port", str(self.ports["api"])]
        log = shlex.quote(str(self.scratch / "stack.log"))
        where = shlex.quote(str(self.scratch / "state-path"))
        return (
            f"{shlex.join([*argv, *ports])} >{log} 2>&1 </dev/null &\n"
            "__docrun_stack=$!\n"
            '__docrun_state="${JOBFORGE_HOME:-.jobforge}/state.json"\n'
            'case "$__docrun_state" in /*) ;; *) __docrun_state="$PWD/$__docrun_state" ;; esac\n'
            f'printf "%s\\n" "$__docrun_state" >{where}\n'
            f"__docrun_deadline=$((SECONDS + {int(STACK_TIMEOUT)}))\n"
            'until [ -s "$__docrun_state" ]; do\n'
            '  if ! kill -0 "$__docrun_stack" 2>/dev/null; then\n'
            '    echo "jobforge dev exited while starting" >&2; false; fi\n'
            '  if [ "$SECONDS" -ge "$__docrun_deadline" ]; then\n'
            '    echo "jobforge dev did not start in time" >&2; false; fi\n'
            "  sleep 0.1\n"
            "done\n"
        )

    def _script(self, plan: Sequence[tuple[int, Block]]) -> str:
        q = shlex.quote
        lines = ["set -o pipefail", f"exec 3>>{q(str(self.scratch / 'marks'))}"]
        for number, block in plan:
            path = self.scratch / f"block{number}.sh"
            path.write_text(self._stack_code(stack_command(block)) if block.stack else block.script())
            out, err = self.scratch / f"block{number}.out", self.scratch / f"block{number}.err"
            lines += [
                f"printf 'begin {number} %s\\n' \"$EPOCHREALTIME\" >&3",
                # errexit for the block alone: the first failing command returns from the sourced block
                "trap '__docrun_rc=$?; trap - ERR; return $__docrun_rc' ERR",
                f"{{ . {q(str(path))} </dev/null; }} >{q(str(out))} 2>{q(str(err))}",
                "__docrun_rc=$?",
                "trap - ERR",
                f"printf 'end {number} %s %s\\n' \"$__docrun_rc\" \"$EPOCHREALTIME\" >&3",
            ]
            if block.known_failure is None:
                lines.append('[ "$__docrun_rc" -eq 0 ] || exit 0')
        return "\n".join(lines) + "\n"

    # -- running ---------------------------------------------------------------------------------

    def run(self, timeout: float = 900.0) -> SessionReport:
        """Run every runnable block; the stack (if one started) is stopped before this returns."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        plan: list[tuple[int, Block]] = []
        if self.stack and not any(b.stack for b in self.blocks):
            jobforge = shlex.quote(str(Path(sys.prefix) / "bin" / "jobforge"))
            plan.append((0, Block("<docrun>", 0, "sh", f"{jobforge} dev --headless\n", stack=True,
                                  timeout=STACK_TIMEOUT)))
        plan += [(n, b) for n, b in enumerate(self.blocks, start=1) if b.runnable]
        marks = self.scratch / "marks"
        marks.write_text("")
        script = self.scratch / "session.sh"
        script.write_text(self._script(plan))
        report = SessionReport()
        proc = subprocess.Popen(["bash", str(script)], cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        timed_out: tuple[int, float] | None = None
        try:
            timed_out = self._watch(proc, marks, dict(plan), time.monotonic() + timeout)
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
            report.stack_log = self._stop_stack()
        ended = self._ended(marks)
        for number, block in plan:
            report.results.append(self._result(number, block, ended, timed_out))
        for block in self.blocks:
            if block.runs and block.skip is not None:
                report.results.append(BlockResult(block, Outcome.SKIPPED, problem=block.skip))
        report.results.sort(key=lambda r: r.block.line)
        return report

    def _watch(self, proc: subprocess.Popen[bytes], marks: Path, plan: dict[int, Block],
               deadline: float) -> tuple[int, float] | None:
        """Wait for the shell; (block, seconds) when a block overran its timeout (the shell is then stopped)."""
        current: tuple[int, float] | None = None
        while proc.poll() is None:
            lines = marks.read_text().splitlines()
            if lines and lines[-1].startswith("begin "):
                number = int(lines[-1].split()[1])
                if current is None or current[0] != number:
                    current = (number, time.monotonic())
                elapsed = time.monotonic() - current[1]
                if elapsed > plan[number].timeout or time.monotonic() > deadline:
                    return number, elapsed
            elif time.monotonic() > deadline:
                return -1, 0.0
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.1)
        return None

    @staticmethod
    def _ended(marks: Path) -> dict[int, tuple[int, float]]:
        """Exit status and seconds of each block that ended, from the marks the shell wrote."""
        began: dict[int, float] = {}
        ended: dict[int, tuple[int, float]] = {}
        for line in marks.read_text().splitlines():
            parts = line.split()
            if parts[0] == "begin":
                began[int(parts[1])] = float(parts[2])
            elif parts[0] == "end":
                number = int(parts[1])
                ended[number] = (int(parts[2]), float(parts[3]) - began.get(number, float(parts[3])))
        return ended

    def _result(self, number: int, block: Block, ended: dict[int, tuple[int, float]],
                timed_out: tuple[int, float] | None) -> BlockResult:
        out_file, err_file = self.scratch / f"block{number}.out", self.scratch / f"block{number}.err"
        stdout = out_file.read_text(errors="replace") if out_file.exists() else ""
        stderr = err_file.read_text(errors="replace") if err_file.exists() else ""
        if number not in ended:
            if timed_out is not None and timed_out[0] == number:
                return BlockResult(block, Outcome.FAILED, None, stdout, stderr, timed_out[1],
                                   f"still running after {timed_out[1]:.0f}s (timeout {block.timeout:.0f}s)")
            return BlockResult(block, Outcome.NOT_RUN, None, stdout, stderr)
        code, seconds = ended[number]
        problem = f"exit status {code}" if code else ""
        combined = stdout + stderr
        missing = [pattern for pattern in block.expect if not re.search(pattern, combined, re.MULTILINE)]
        if not problem and missing:
            problem = "its output does not match " + ", ".join(repr(p) for p in missing)
        if block.known_failure is not None:
            if problem:
                return BlockResult(block, Outcome.KNOWN_FAILURE, code, stdout, stderr, seconds,
                                   problem=f"{problem} (known: {block.known_failure})")
            return BlockResult(block, Outcome.UNEXPECTED_PASS, code, stdout, stderr, seconds,
                               problem=f"marked as a known failure ({block.known_failure}) but it passes: "
                                       "remove the mark")
        return BlockResult(block, Outcome.FAILED if problem else Outcome.PASSED, code, stdout, stderr, seconds,
                           problem=problem)

    def _stop_stack(self, grace: float = 60.0) -> str:
        """SIGTERM the stack the session started (as a supervisor would) and wait until it has stopped."""
        log = self.scratch / "stack.log"
        where = self.scratch / "state-path"
        if not where.exists():
            return log.read_text(errors="replace") if log.exists() else ""
        state_file = Path(where.read_text().strip())
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = None
        if state is not None:
            pids = [int(state["pid"]), *(int(p) for p in state.get("pids", {}).values())]
            postmaster = Path(state.get("home", "")) / "pgdata" / "postmaster.pid"
            with contextlib.suppress(OSError, ValueError, IndexError):
                pids.append(int(postmaster.read_text().split()[0]))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pids[0], signal.SIGTERM)
            stop_by = time.monotonic() + grace
            while time.monotonic() < stop_by and any(_pid_alive(p) for p in pids):
                time.sleep(0.1)
            for pid in pids:  # what did not stop in time
                if _pid_alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        return log.read_text(errors="replace") if log.exists() else ""


def run_page(page: Path, workdir: Path, env: Mapping[str, str], *, stack: bool = False, activate: bool = False,
             timeout: float = 900.0, source: str | None = None) -> SessionReport:
    """Parse ``page`` and run it as one session in ``workdir`` (see the module docstring)."""
    blocks = parse(page.read_text(), source or page.name)
    return Session(blocks, workdir, env, stack=stack, activate=activate).run(timeout)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


