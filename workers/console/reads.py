"""What each console page shows, assembled from the store's and services' read functions.

Nothing here writes SQL: runs, events, fires, audit entries, provenance and artifacts come from
:mod:`shared.store`; a trigger's live Schedule from :class:`TriggerService`; a run's inputs, result
and step timeline from its Temporal history (two events, or the captured history); a verify run's
live progress from its ``progress`` query. Everything shown that a run or an event carried passes
through redaction first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import structlog
from google.protobuf.json_format import MessageToDict
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistoryEventFilterType, WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError

from jobforge.errors import NotFound, RunNotFound
from jobforge.models import ArtifactRecord, RunRecord
from shared.flags import Flag, FlagReader, FlagValue
from shared.manifest import MANIFEST_NAME
from shared.replay.bundle import recorded_outcome, workflow_input
from shared.security.redaction import redact, redact_text
from shared.triggers.service import TriggerService
from shared.verify.models import TEMPLATE_KEY as VERIFY_TEMPLATE
from workers.console import charts
from workers.console.charts import Chart, Span
from workers.console.timeline import spans_from_history, spans_from_progress
from workers.runtime import Runtime

log = structlog.get_logger("jobforge.console")

#: how long a page waits on Temporal for a live answer before showing what the store knows
TEMPORAL_TIMEOUT = timedelta(seconds=2)
#: the most bytes of a JSON artifact (report, manifest) a page reads
MAX_JSON_ARTIFACT = 4 * 1024 * 1024
RUN_SERIES = ("succeeded", "failed", "running", "queued", "rejected", "cancelled", "timed_out")
#: chart windows a runs or events page offers: label -> (span, bucket seconds)
WINDOWS: dict[str, tuple[timedelta, int]] = {"1h": (timedelta(hours=1), 60), "6h": (timedelta(hours=6), 300),
                                             "24h": (timedelta(hours=24), 900)}


def now() -> datetime:
    return datetime.now(UTC)


def triggers(rt: Runtime) -> TriggerService:
    assert rt.temporal is not None, "the console needs a Temporal client"
    return TriggerService(rt.store.triggers, rt.temporal, rt.settings, rt.registry, rt.flags)


def buckets(window: str, at: datetime) -> tuple[list[datetime], int, datetime]:
    """The bucket starts of a chart window ending at ``at`` (oldest first), the bucket size and the start."""
    span, size = WINDOWS.get(window, WINDOWS["1h"])
    end = datetime.fromtimestamp(at.timestamp() // size * size, UTC)
    count = int(span.total_seconds() // size)
    starts = [end - timedelta(seconds=size * i) for i in range(count - 1, -1, -1)]
    return starts, size, starts[0]


# -- runs ---------------------------------------------------------------------------------------------


async def run_charts(rt: Runtime, tenant_id: str, window: str) -> tuple[Chart, Chart]:
    """Runs per interval by outcome, and p50/p95 durations per template (same window)."""
    starts, size, since = buckets(window, now())
    counts_task = rt.store.run_counts(tenant_id, since, size)
    durations_task = rt.store.run_durations(tenant_id, since)
    counts, durations = await asyncio.gather(counts_task, durations_task)
    by_key = {(c.bucket, c.status.value): c.count for c in counts}
    per = "minute" if size == 60 else f"{size // 60} minutes"
    outcome = charts.stacked_bars("runs-per-minute", f"Runs per {per} by outcome", starts, RUN_SERIES, by_key)
    timing = charts.duration_bars("run-durations", "Run duration per template (p50, p95)",
                                  [(d.template_key, d.runs, d.p50_seconds, d.p95_seconds) for d in durations])
    return outcome, timing


def temporal_link(rt: Runtime, run: RunRecord) -> str:
    """The run's workflow in the Temporal Web UI ('' when no UI address is configured)."""
    base = rt.settings.temporal_ui_url.rstrip("/")
    if not base:
        return ""
    namespace = quote(rt.settings.temporal_namespace, safe="")
    return f"{base}/namespaces/{namespace}/workflows/{quote(run.workflow_id, safe='')}/{quote(run.run_id)}/history"


@dataclass
class ManifestEntry:
    name: str
    sha256: str
    size: int
    #: the artifact store's record agrees with the manifest
    matches: bool


@dataclass
class RunPage:
    run: RunRecord
    duration: float | None
    artifacts: Sequence[ArtifactRecord]
    inputs: Any = None
    inputs_source: str = ""
    outcome: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    manifest_entries: list[ManifestEntry] = field(default_factory=list)
    provenance: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    progress_note: str = ""
    spans: list[Span] = field(default_factory=list)
    timeline: Chart | None = None
    temporal_url: str = ""
    replay_note: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def is_verify(self) -> bool:
        return self.run.template_key == VERIFY_TEMPLATE

    @property
    def live(self) -> bool:
        return not self.run.status.is_final

    @property
    def note(self) -> str:
        return self.progress_note


def duration_of(run: RunRecord, at: datetime | None = None) -> float | None:
    if run.finished_at is not None:
        return max((run.finished_at - run.created_at).total_seconds(), 0.0)
    if at is not None:
        return max((at - run.created_at).total_seconds(), 0.0)
    return None


def _event_dict(event: Any) -> dict[str, Any]:
    return MessageToDict(event)


async def _edge_events(rt: Runtime, run: RunRecord) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The run's first history event and (once closed) its close event, from Temporal (None when gone)."""
    if rt.temporal is None:
        return None, None
    handle = rt.temporal.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    first: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    try:
        async for event in handle.fetch_history_events(page_size=1, rpc_timeout=TEMPORAL_TIMEOUT):
            first = _event_dict(event)
            break
        if run.status.is_final:
            async for event in handle.fetch_history_events(
                    event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT, rpc_timeout=TEMPORAL_TIMEOUT):
                if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                    last = _event_dict(event)
    except RPCError as exc:
        log.info("console_history_unavailable", run_id=run.run_id, error=exc.message[:200])
    return first, last


async def _history_events(rt: Runtime, run: RunRecord) -> list[dict[str, Any]]:
    """The run's whole (redacted) history: captured in the store, else from Temporal."""
    raw = await rt.store.replay.history(run.run_id)
    if raw is not None:
        events = orjson.loads(raw).get("events") or []
        return [e for e in events if isinstance(e, dict)]
    if rt.temporal is None:
        return []
    try:
        history = await rt.temporal.get_workflow_handle(run.workflow_id, run_id=run.run_id).fetch_history(
            rpc_timeout=TEMPORAL_TIMEOUT)
    except RPCError:
        return []
    events = orjson.loads(history.to_json()).get("events") or []
    return [e for e in events if isinstance(e, dict)]


def read_artifact_json(root: Path, record: ArtifactRecord) -> dict[str, Any] | None:
    """A JSON artifact's content (None when missing, too large or not a JSON object)."""
    path = (root / record.path).resolve()
    if not path.is_relative_to(root.resolve()) or record.size > MAX_JSON_ARTIFACT:
        return None
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


async def verify_progress(rt: Runtime, run: RunRecord) -> tuple[dict[str, Any] | None, str]:
    """A running verify run's ``progress`` answer (and why there is none)."""
    if rt.temporal is None:
        return None, "no Temporal client"
    handle = rt.temporal.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    try:
        answer = await handle.query("progress", rpc_timeout=TEMPORAL_TIMEOUT)
    except RPCError as exc:
        return None, f"Temporal did not answer the progress query: {exc.message[:200]}"
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:  # shown, not raised
        return None, f"the progress query failed: {redact_text(str(exc))[:200]}"
    return (answer if isinstance(answer, dict) else None), ""


async def run_page(rt: Runtime, tenant_id: str, run_id: str) -> RunPage:
    run = await rt.store.get_run(run_id, tenant_id)
    if run.run_id != run_id:
        raise RunNotFound(run_id)  # the page of a run is addressed by its run id
    at = now()
    replay = rt.store.replay
    artifacts_task = rt.store.list_artifacts(tenant_id, run.run_id)
    provenance_task = replay.provenance(run.run_id)
    edges_task = _edge_events(rt, run)
    artifacts, provenance, (first, last) = await asyncio.gather(artifacts_task, provenance_task, edges_task)
    page = RunPage(run=run, duration=duration_of(run, at), artifacts=artifacts, temporal_url=temporal_link(rt, run))
    if provenance is not None:
        page.provenance = redact(provenance)
        snapshot = provenance.get("input_snapshot") or {}
        page.inputs, page.inputs_source = redact(snapshot.get("inputs")), "provenance snapshot (redacted)"
    elif first is not None:
        with contextlib.suppress(ValueError):
            _, job = workflow_input({"events": [first]})
            if isinstance(job, dict):
                page.inputs, page.inputs_source = redact(job.get("inputs")), "workflow input (redacted)"
    if last is not None:
        page.outcome = redact(recorded_outcome({"events": [last]}))
    root = rt.settings.artifact_root
    by_name = {a.name: a for a in artifacts}
    if "report.json" in by_name:
        page.report = redact(await asyncio.to_thread(read_artifact_json, root, by_name["report.json"]))
    if MANIFEST_NAME in by_name:
        manifest = await asyncio.to_thread(read_artifact_json, root, by_name[MANIFEST_NAME])
        if manifest is not None:
            page.manifest = manifest
            for entry in manifest.get("artifacts") or []:
                if isinstance(entry, dict):
                    name = str(entry.get("name", ""))
                    record = by_name.get(name)
                    page.manifest_entries.append(ManifestEntry(
                        name=name, sha256=str(entry.get("sha256", "")), size=int(entry.get("size") or 0),
                        matches=record is not None and record.sha256 == entry.get("sha256")))
    if page.is_verify:
        if page.live:
            page.progress, page.progress_note = await verify_progress(rt, run)
            if page.progress:
                page.spans = spans_from_progress(page.progress.get("steps") or [], at)
        else:
            page.spans = spans_from_history(await _history_events(rt, run))
        if page.spans:
            page.timeline = charts.timeline("verify-steps", "Verify steps over time", page.spans)
    if not await rt.flags.is_enabled(Flag.REPLAY_PACK):
        page.replay_note = f"{Flag.REPLAY_PACK.value} is off"
    elif page.live:
        page.replay_note = "the run has not finished"
    return page


@dataclass
class Progress:
    run: RunRecord
    duration: float | None
    progress: dict[str, Any] | None
    note: str
    spans: list[Span]
    timeline: Chart | None

    @property
    def live(self) -> bool:
        return not self.run.status.is_final


async def run_progress(rt: Runtime, tenant_id: str, run_id: str) -> Progress:
    """A run's status and, for a running verify run, its steps as they go (the live fragment)."""
    run = await rt.store.get_run(run_id, tenant_id)
    at = now()
    progress, note, spans = None, "", []
    if run.template_key == VERIFY_TEMPLATE and not run.status.is_final:
        progress, note = await verify_progress(rt, run)
        if progress:
            spans = spans_from_progress(progress.get("steps") or [], at)
    timeline = charts.timeline("verify-steps", "Verify steps over time", spans) if spans else None
    return Progress(run, duration_of(run, at), progress, note, spans, timeline)


# -- events -------------------------------------------------------------------------------------------


async def event_chart(rt: Runtime, tenant_id: str, window: str) -> Chart:
    """Admitted events, duplicates and rate-limit refusals per interval."""
    starts, size, since = buckets(window, now())
    admitted, refusals = await asyncio.gather(rt.gate.events.event_counts(tenant_id, since, size),
                                              rt.gate.deduper.refusals(tenant_id, since))
    counts: dict[tuple[datetime, str], int] = {}
    for bucket, count in admitted.items():
        counts[(bucket, "admitted")] = count
    for minute in refusals:
        bucket = datetime.fromtimestamp(minute.minute.timestamp() // size * size, UTC)
        counts[(bucket, "duplicates")] = counts.get((bucket, "duplicates"), 0) + minute.duplicates
        counts[(bucket, "rate_limited")] = counts.get((bucket, "rate_limited"), 0) + minute.rate_limited
    per = "minute" if size == 60 else f"{size // 60} minutes"
    return charts.stacked_bars("events-per-minute", f"Events per {per}: admitted, duplicates, rate-limited",
                               starts, ("admitted", "duplicates", "rate_limited"), counts, unit="events")


# -- flags --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagRow:
    value: FlagValue
    override: Mapping[str, Any] | None


async def flag_rows(rt: Runtime) -> list[FlagRow]:
    """Every flag's value and source, read now (not through the TTL cache), with its store override."""
    overrides = await rt.store.flag_override_rows()
    values = await FlagReader(rt.store.flag_overrides, 0).values(tuple(Flag))  # now, not the cached view
    return [FlagRow(value, overrides.get(value.flag.value)) for value in values]


def text(value: str) -> str:
    """A string from a run or an event, redacted for display."""
    return redact_text(value)


def require(found: Any, what: str) -> Any:
    if found is None:
        raise NotFound(f"no {what} here")
    return found
