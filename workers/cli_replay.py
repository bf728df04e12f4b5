"""``jobforge replay export|verify|dry-run``: replay bundles from the command line."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import typer

from shared.replay.service import ReplayService, dry_run_bundle, opened_bundle, verify_bundle
from shared.templates import import_template_module
from workers.cli_common import NegativeVerdict, command, err, out, print_json, run_async, settings
from workers.runtime import open_runtime
from workers.stack import temporal_binary
from workflows import discover

replay_app = typer.Typer(no_args_is_help=True, help="Replay bundles: export, verify, dry-run (REPLAY_PACK_ENABLED).")


def _workflows() -> list[type[object]]:
    s = settings()
    return discover([import_template_module(name) for name in s.template_modules])


@contextlib.contextmanager
def _output_captured() -> Iterator[Path]:
    """Point file descriptors 1 and 2 at a log file meanwhile: processes started inside (the throwaway dev
    server prints a banner and logs) can mix neither into this command's stdout (``--json`` stays JSON)
    nor into its stderr. The log is shown on stderr when the command fails with an error."""
    with tempfile.TemporaryDirectory(prefix="jobforge-dry-run-") as tmp:
        log = Path(tmp) / "server.log"
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        failed = False
        try:
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            yield log
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for held in (fd, *saved):
                os.close(held)
            if failed:
                tail = log.read_text(errors="replace").strip().splitlines()[-20:]
                if tail:
                    err.print("the throwaway Temporal server's output:\n" + "\n".join(tail), highlight=False,
                              markup=False)


@replay_app.command("export")
@command
def export(run_id: str = typer.Argument(..., help="Run id or workflow id."),
           out_dir: Path | None = typer.Option(None, "--out", help="Bundle directory (default ./replay-RUN_ID)."),
           tenant: str | None = typer.Option(None, "--tenant", "-t"),
           tar: bool = typer.Option(False, "--tar", help="Also write DIR.tar.gz (reproducible)."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Export a finished run as a replay bundle."""

    async def go() -> object:
        async with open_runtime(settings(), stack_flags=True) as rt:
            service = ReplayService(rt.store, rt.temporal, rt.flags)
            target = out_dir or Path(f"replay-{run_id.replace('/', '_')}")
            return await service.export(run_id, tenant, target, tarball=tar)

    result = run_async(go())
    if as_json:
        print_json(result)
        return
    out.print(f"bundle written to {getattr(result, 'directory', '')}", highlight=False)
    for name, digest in getattr(result, "files", {}).items():
        out.print(f"  {name}  sha256:{digest}", highlight=False)
    if getattr(result, "tarball", None):
        out.print(f"  tarball: {result.tarball}", highlight=False)  # type: ignore[attr-defined]


BUNDLE_HELP = "A bundle directory, or its .tar.gz (`replay export --tar`, GET /v1/runs/{id}/replay)."


@replay_app.command("verify")
@command
def verify(bundle: Path = typer.Argument(..., exists=True, metavar="BUNDLE", help=BUNDLE_HELP),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Check every hash and replay the history against today's workflow code (exit 1 on a problem)."""
    with opened_bundle(bundle) as directory:
        result = run_async(verify_bundle(directory, _workflows()))
    if as_json:
        print_json(result)
    else:
        for problem in result.files:
            out.print(f"[red]file {problem.path}: {problem.problem}[/]", highlight=False)
        out.print(f"input hash : {result.input_hash}", highlight=False)
        out.print(f"determinism: {result.determinism} ({result.events} events of {result.workflow_type})",
                  highlight=False)
        out.print("[green]bundle verified[/]" if result.ok else "[red]bundle failed verification[/]")
    if not result.ok:
        raise NegativeVerdict()


@replay_app.command("dry-run")
@command
def dry_run(bundle: Path = typer.Argument(..., exists=True, metavar="BUNDLE", help=BUNDLE_HELP),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Re-execute the recorded run with side effects disabled and compare outcomes (exit 1 if they differ)."""
    if not as_json:
        err.print("re-executing on a throwaway Temporal dev server; activities answer from the history",
                  highlight=False)
    workflows = _workflows()
    with opened_bundle(bundle) as directory, _output_captured():
        result = run_async(dry_run_bundle(directory, workflows, temporal_binary()))
    if as_json:
        print_json(result)
    else:
        out.print(f"activities answered from history: {result.activities_answered}", highlight=False)
        out.print(f"recorded: {result.recorded.get('status')}  re-executed: {result.replayed.get('status')}",
                  highlight=False)
        out.print("[green]same outcome[/]" if result.ok else f"[red]{result.detail}[/]")
    if not result.ok:
        raise NegativeVerdict()
