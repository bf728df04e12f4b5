"""``jobforge temporal setup``: prepare a Temporal namespace (any cluster) for JobForge."""

from __future__ import annotations

from datetime import timedelta

import typer

from shared.temporal import connect
from shared.temporal_setup import ensure_retention, ensure_search_attributes
from workers.cli_common import command, out, print_json, run_async, settings

temporal_app = typer.Typer(no_args_is_help=True, help="Prepare the Temporal namespace JobForge uses.")


@temporal_app.command("setup")
@command
def setup(retention_hours: float | None = typer.Option(
              None, min=1, help="Raise closed-workflow retention to at least this many hours."),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Register the JobForgeTenant/Template/Trace search attributes (idempotent); optionally raise retention."""

    async def go() -> dict[str, object]:
        s = settings()
        client = await connect(s)
        added = await ensure_search_attributes(client)
        answer: dict[str, object] = {"namespace": s.temporal_namespace, "search_attributes_added": added}
        if retention_hours:
            kept = await ensure_retention(client, timedelta(hours=retention_hours))
            answer["retention_hours"] = kept.total_seconds() / 3600
        return answer

    answer = run_async(go())
    if as_json:
        print_json(answer)
    else:
        added = answer["search_attributes_added"]
        out.print(f"namespace {answer['namespace']}: search attributes "
                  f"{'added: ' + ', '.join(added) if added else 'already registered'}",  # type: ignore[arg-type]
                  highlight=False)
        if "retention_hours" in answer:
            out.print(f"retention: {answer['retention_hours']:g} h", highlight=False)
