"""Capture, export, verify and dry-run of replay bundles (the I/O around ``bundle.py``)."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.common import RawValue
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from jobforge.errors import BundleInvalid, ReplayUnavailable, RunStillRunning
from shared.canonical import canonical_json, sha256_hex, verify_input_hash
from shared.flags import Flag, FlagReader
from shared.replay.bundle import (
    MANIFEST_FILE,
    REPLAY_FILE,
    FileProblem,
    build_bundle,
    bundle_digest,
    check_files,
    failure_summary,
    outcome_differences,
    recorded_activities,
    recorded_outcome,
    redact_history,
    tar_bundle,
    task_queues,
    untar_bundle,
    workflow_input,
    write_bundle,
)
from shared.search_attributes import search_attribute_args
from shared.security.redaction import redact
from shared.store import Store


class ExportResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    tenant_id: str
    directory: str
    tarball: str | None
    bundle_sha256: str
    files: dict[str, str]


class VerifyResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    ok: bool
    files: list[FileProblem] = Field(default_factory=list)
    input_hash: str = "unchecked"
    #: "ok", or what diverged (the Replayer's message names the event)
    determinism: str = "unchecked"
    workflow_type: str = ""
    events: int = 0


class DryRunResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    ok: bool
    recorded: dict[str, Any]
    replayed: dict[str, Any]
    activities_answered: int
    detail: str = ""
    #: JSON paths where the re-executed outcome differs from the recorded one
    differences: list[str] = Field(default_factory=list)
    #: the task queues the dry run served (the workflow's first)
    task_queues: list[str] = Field(default_factory=list)


class Bundle(BaseModel):
    """A run's bundle in memory: file name → canonical bytes."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    tenant_id: str
    files: dict[str, bytes]

    @property
    def sha256(self) -> str:
        """The bundle's identity (sha256 of manifest.json)."""
        return bundle_digest(self.files)


class ReplayService:
    def __init__(self, store: Store, temporal: Client | None, flags: FlagReader) -> None:
        self.store = store
        self.replay = store.replay
        self.temporal = temporal
        self.flags = flags

    # -- capture --------------------------------------------------------------------------------

    async def capture_history(self, tenant_id: str, workflow_id: str, run_id: str) -> bool:
        """Store the redacted history of a closed run; False if it is still open (try later)."""
        if self.temporal is None:
            raise ReplayUnavailable("capturing histories needs a Temporal client")
        try:
            history = await self.temporal.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        except RPCError as exc:
            raise ReplayUnavailable(f"Temporal has no history for run {run_id}: {exc.message}") from None
        data = orjson.loads(history.to_json())
        if recorded_outcome(data)["status"] == "running":
            return False
        redacted = redact_history(data)
        await self.replay.save_history(run_id, tenant_id, workflow_id, canonical_json(redacted),
                                       len(redacted.get("events") or []))
        return True

    async def capture_pending(self, limit: int = 50) -> int:
        """Capture the histories of finished runs not captured yet (when REPLAY_PACK_ENABLED is on)."""
        if not await self.flags.is_enabled(Flag.REPLAY_PACK):
            return 0
        captured = 0
        for tenant_id, workflow_id, run_id in await self.replay.runs_without_history(limit):
            try:
                captured += await self.capture_history(tenant_id, workflow_id, run_id)
            except ReplayUnavailable:
                continue  # gone from Temporal already: export will say so
        return captured

    # -- export ---------------------------------------------------------------------------------

    async def bundle(self, run_id: str, tenant_id: str | None) -> Bundle:
        """The run's bundle files, built in memory (nothing is written or recorded)."""
        await self.flags.require(Flag.REPLAY_PACK)
        run = await self.store.get_run(run_id, tenant_id)
        if not run.status.is_final:
            raise RunStillRunning(f"run {run.run_id} is still {run.status.value}; export it once it has finished "
                                  "(`jobforge runs show RUN --wait` waits for it)")
        raw = await self.replay.history(run.run_id)
        if raw is None and self.temporal is not None:
            with contextlib.suppress(ReplayUnavailable):
                await self.capture_history(run.tenant_id, run.workflow_id, run.run_id)
            raw = await self.replay.history(run.run_id)
        if raw is None:
            raise ReplayUnavailable(
                f"the history of run {run.run_id} was not captured when it closed (REPLAY_PACK_ENABLED off, or no "
                "worker running) and Temporal no longer has it")
        history = orjson.loads(raw)
        provenance = await self.replay.provenance(run.run_id)
        artifacts = await self.replay.artifacts(run.tenant_id, run.run_id)
        run_view = run.model_dump(mode="json", exclude={"updated_at"})
        files = build_bundle(run=run_view, provenance=provenance, history=history, artifacts=artifacts)
        return Bundle(run_id=run.run_id, tenant_id=run.tenant_id, files=files)

    async def export(self, run_id: str, tenant_id: str | None, out_dir: Path, *, tarball: bool = False) -> ExportResult:
        """Write the run's bundle to ``out_dir`` (and ``out_dir``.tar.gz) and record it."""
        built = await self.bundle(run_id, tenant_id)
        files = built.files
        write_bundle(files, out_dir)
        tar_path: Path | None = None
        if tarball:
            tar_path = out_dir.with_name(out_dir.name + ".tar.gz")
            tar_path.write_bytes(tar_bundle(files, out_dir.name))
        await self.replay.record_bundle(built.tenant_id, built.run_id, built.sha256, sha256_hex(files[REPLAY_FILE]),
                                        str(tar_path or out_dir))
        return ExportResult(run_id=built.run_id, tenant_id=built.tenant_id, directory=str(out_dir),
                            tarball=str(tar_path) if tar_path else None, bundle_sha256=built.sha256,
                            files={name: sha256_hex(data) for name, data in sorted(files.items())})


@contextlib.contextmanager
def opened_bundle(path: Path) -> Iterator[Path]:
    """The bundle at ``path`` as a directory: itself, or a tarball's files unpacked into a temporary one."""
    if path.is_dir():
        yield path
        return
    try:
        with path.open("rb") as stream:
            files = untar_bundle(stream, str(path))
    except IsADirectoryError:  # raced into a directory
        raise BundleInvalid(f"{path} changed while it was read") from None
    except OSError as exc:
        raise BundleInvalid(f"cannot read {path}: {exc.strerror}") from None
    with tempfile.TemporaryDirectory(prefix="jobforge-bundle-") as tmp:
        directory = Path(tmp) / (path.name.removesuffix(".gz").removesuffix(".tar") or "bundle")
        write_bundle(files, directory)
        yield directory


def load_bundle(directory: Path) -> dict[str, Any]:
    try:
        replay = orjson.loads((directory / REPLAY_FILE).read_bytes())
    except FileNotFoundError:
        raise BundleInvalid(f"{directory} has no {REPLAY_FILE}") from None
    except orjson.JSONDecodeError as exc:
        raise BundleInvalid(f"{directory / REPLAY_FILE} is not valid JSON: {exc}") from None
    if not isinstance(replay, dict) or not isinstance(replay.get("history"), dict):
        raise BundleInvalid(f"{directory / REPLAY_FILE} has no workflow history")
    return replay


def _unregistered(workflow_type: str, workflows: Sequence[type[Any]]) -> str:
    """Why ``workflow_type`` cannot be replayed here ("" when one of ``workflows`` defines it)."""
    # the dynamic catch-all (no name) answers unknown types on live task queues; it replays nothing
    names = sorted(name for wf in workflows if (name := getattr(wf, "__temporal_workflow_definition").name))
    if workflow_type in names:
        return ""
    return (f"workflow type {workflow_type!r} is not registered here (known: {', '.join(names)}); load its "
            "template module with JOBFORGE_TEMPLATE_MODULES")


async def verify_bundle(directory: Path, workflows: Sequence[type[Any]]) -> VerifyResult:
    """Check every hash, the input snapshot, and replay the history against ``workflows``."""
    if not (directory / MANIFEST_FILE).is_file() and not (directory / REPLAY_FILE).is_file():
        raise BundleInvalid(f"{directory} is not a replay bundle (no {MANIFEST_FILE}, no {REPLAY_FILE})")
    files = check_files(directory)
    try:
        replay = load_bundle(directory)
    except BundleInvalid as exc:
        return VerifyResult(ok=False, files=[*files, FileProblem(path=REPLAY_FILE, problem=exc.message)])
    snapshot = replay.get("input_snapshot") or {}
    if not snapshot:
        input_check = "no provenance captured"
    elif snapshot.get("redacted"):
        input_check = "skipped: the snapshot is redacted (verify with the original inputs)"
    else:
        input_check = "ok" if verify_input_hash(snapshot.get("inputs"), snapshot.get("input_hash", "")) else (
            "mismatch: the snapshot does not hash to its input_hash")
    history = replay["history"]
    workflow_type, _ = workflow_input(history)
    workflow_id = str((replay.get("run") or {}).get("workflow_id") or "replay")
    unknown = _unregistered(workflow_type, workflows)
    if unknown:
        determinism = unknown
    else:
        replayer = Replayer(workflows=list(workflows), data_converter=pydantic_data_converter)
        # handed over as text: the SDK parses a str with json.loads but deep-copies a dict first (slower)
        recorded = WorkflowHistory.from_json(workflow_id, orjson.dumps(history).decode())
        outcome = await replayer.replay_workflow(recorded, raise_on_replay_failure=False)
        determinism = "ok" if outcome.replay_failure is None else (
            f"{type(outcome.replay_failure).__name__}: {outcome.replay_failure}")
    ok = not files and determinism == "ok" and not input_check.startswith("mismatch")
    return VerifyResult(ok=ok, files=files, input_hash=input_check, determinism=determinism,
                        workflow_type=workflow_type, events=len(history.get("events") or []))


#: the dev server flag that lets a dry run skip the recorded run's timers (time-skipping v2)
TIME_SKIPPING_ARGS = ("--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true")


async def dry_run_bundle(directory: Path, workflows: Sequence[type[Any]], temporal_binary: Path) -> DryRunResult:
    """Re-execute the recorded run on a throwaway dev server with activities answered from the history.

    The workflow starts under its recorded id on its recorded task queue, and every task queue its
    activities were scheduled on is served (by the history, not by real activities). Timers are
    skipped (the server's per-workflow time skipping), so a grace period of hours takes no time.
    """
    replay = load_bundle(directory)
    history = replay["history"]
    workflow_type, run_input = workflow_input(history)
    workflow_queue, activity_queues = task_queues(history)
    recorded = recorded_activities(history)
    expected = recorded_outcome(history)
    unknown = _unregistered(workflow_type, workflows)
    if unknown:  # a worker without the workflow would fail its task forever: say so instead
        return DryRunResult(ok=False, recorded=expected, replayed={"status": "not_run"}, activities_answered=0,
                            detail=unknown)
    answered: list[str] = []

    @activity.defn(dynamic=True)
    async def answer_from_history(_args: Sequence[RawValue]) -> Any:
        info = activity.info()
        rec = recorded.get(info.activity_id)
        if rec is None or rec.activity_type != info.activity_type:
            raise ApplicationError(f"dry run diverged: activity {info.activity_type} (id {info.activity_id}) is not in "
                                   "the recorded history", type="dry_run_diverged", non_retryable=True)
        answered.append(info.activity_id)
        if rec.outcome == "completed":
            return rec.result
        raise ApplicationError(str(rec.failure.get("message", rec.outcome)), type=rec.failure.get("type") or None,
                               non_retryable=True)

    workflow_id = str((replay.get("run") or {}).get("workflow_id") or f"dry-run/{uuid.uuid4().hex}")
    queue = workflow_queue or f"dry-run-{uuid.uuid4().hex}"
    env = await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=str(temporal_binary), data_converter=pydantic_data_converter, ui=False,
        dev_server_log_level="error",
        # the run sets JobForge's search attributes at admission: the throwaway server must know them
        dev_server_extra_args=[*TIME_SKIPPING_ARGS,
                               *(a for sa in search_attribute_args() for a in ("--search-attribute", sa))])
    try:
        workers = [Worker(env.client, task_queue=queue, workflows=list(workflows), activities=[answer_from_history]),
                   *(Worker(env.client, task_queue=name, activities=[answer_from_history])
                     for name in activity_queues)]
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            handle = await env.client.start_workflow(workflow_type, run_input, id=workflow_id, task_queue=queue)
            try:
                replayed: dict[str, Any] = {"status": "completed",
                                            "result": redact(await handle.result(), keep_types=True)}
            except WorkflowFailureError as exc:
                history_now = orjson.loads((await handle.fetch_history()).to_json())
                replayed = recorded_outcome(redact_history(history_now))
                if replayed.get("status") != "failed":
                    replayed = {"status": "failed", "failure": failure_summary({"message": str(exc)})}
    finally:
        await env.shutdown()
    differences = outcome_differences(expected, replayed)
    detail = "" if not differences else (
        "the re-executed outcome differs from the recorded one at " + ", ".join(differences[:20]))
    return DryRunResult(ok=not differences, recorded=expected, replayed=replayed, activities_answered=len(answered),
                        detail=detail, differences=differences, task_queues=[queue, *activity_queues])
