"""Replay bundles: canonical files, hashes, history redaction and history reading (pure).

A bundle is a directory with ``replay.json`` (provenance, input snapshot, the workflow's full event
history as Temporal gives it, the recorded outcome, the artifact manifest) and ``manifest.json`` (the
sha256 and size of every other file). Everything is canonical JSON, so exporting the same run twice
gives byte-identical files.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from jobforge.errors import BundleInvalid
from shared.canonical import canonical_json, sha256_hex
from shared.security.redaction import redact, redact_text

BUNDLE_FORMAT = "jobforge.replay/v1"
REPLAY_FILE = "replay.json"
MANIFEST_FILE = "manifest.json"
_JSON_PLAIN = base64.b64encode(b"json/plain").decode()
_TEXT_FIELDS = frozenset({"message", "stackTrace", "stack_trace", "identity_detail"})


class FileProblem(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    problem: str


class RecordedActivity(BaseModel):
    """One activity the run executed, as its history recorded it."""

    model_config = ConfigDict(frozen=True)

    activity_id: str
    activity_type: str
    #: completed | failed | timed_out | cancelled | scheduled (never finished)
    outcome: str
    result: Any = None
    failure: dict[str, Any] = Field(default_factory=dict)


#: the marker Temporal's SDK core records for each local activity's outcome
LOCAL_ACTIVITY_MARKER = "core_local_activity"


def _payload_value(payload: Mapping[str, Any]) -> Any:
    """The JSON value of a ``json/plain`` payload (None when it is not one)."""
    meta = payload.get("metadata") or {}
    if meta.get("encoding") != _JSON_PLAIN:
        return None
    try:
        return orjson.loads(base64.b64decode(payload.get("data", "")))
    except (binascii.Error, orjson.JSONDecodeError):
        return None


def _encode_payload(payload: Mapping[str, Any], value: Any) -> dict[str, Any]:
    out = dict(payload)
    out["data"] = base64.b64encode(orjson.dumps(value)).decode()
    return out


def redact_history(history: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a history JSON whose payloads and failure texts carry no secret.

    ``json/plain`` payloads are decoded, redacted keeping their types (``redact(keep_types=True)``:
    strings under secret field names and secrets inside strings go, numbers and the shape stay) and
    re-encoded; failure messages and stack traces are redacted as text. The structure stays replayable.
    """
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, str]] = [(history, root, 0, "")]
    while stack:
        item, parent, slot, key = stack.pop()
        if isinstance(item, dict):
            if "metadata" in item and "data" in item and isinstance(item.get("metadata"), dict):
                value = _payload_value(item)
                out: Any = (_encode_payload(item, redact(value, keep_types=True)) if value is not None
                            else dict(item))
            else:
                out = {}
                for k, child in item.items():
                    out[k] = None
                    stack.append((child, out, k, k))
        elif isinstance(item, list):
            out = [None] * len(item)
            stack.extend((child, out, i, key) for i, child in enumerate(item))
        elif isinstance(item, str) and key in _TEXT_FIELDS:
            out = redact_text(item)
        else:
            out = item
        parent[slot] = out
    return root[0]  # type: ignore[no-any-return]


def _attrs(event: Mapping[str, Any], suffix: str) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith(suffix) and isinstance(value, dict):
            return value
    return {}


def failure_summary(failure: Mapping[str, Any]) -> dict[str, Any]:
    """The innermost application failure's type and message (what a user needs to compare)."""
    current: Mapping[str, Any] | None = failure
    found: dict[str, Any] = {"message": failure.get("message", "")}
    while current:
        info = current.get("applicationFailureInfo")
        if info is not None:
            found = {"type": info.get("type", ""), "message": current.get("message", "")}
        current = current.get("cause")
    return found


def recorded_outcome(history: Mapping[str, Any]) -> dict[str, Any]:
    """How the run ended: ``{"status": "completed", "result": ...}`` or failed/cancelled/... with why."""
    events = history.get("events") or []
    for event in reversed(events):
        kind = str(event.get("eventType", ""))
        if kind.endswith("WORKFLOW_EXECUTION_COMPLETED"):
            payloads = (_attrs(event, "CompletedEventAttributes").get("result") or {}).get("payloads") or []
            return {"status": "completed", "result": _payload_value(payloads[0]) if payloads else None}
        if kind.endswith("WORKFLOW_EXECUTION_FAILED"):
            failure = _attrs(event, "FailedEventAttributes").get("failure", {})
            return {"status": "failed", "failure": failure_summary(failure)}
        for status in ("CANCELED", "TERMINATED", "TIMED_OUT", "CONTINUED_AS_NEW"):
            if kind.endswith(f"WORKFLOW_EXECUTION_{status}"):
                return {"status": status.lower()}
    return {"status": "running"}


def workflow_input(history: Mapping[str, Any]) -> tuple[str, Any]:
    """(workflow type, first input value) from the history's started event."""
    events = history.get("events") or []
    if not events:
        raise ValueError("the history has no events")
    attrs = _attrs(events[0], "StartedEventAttributes")
    payloads = (attrs.get("input") or {}).get("payloads") or []
    return str((attrs.get("workflowType") or {}).get("name", "")), (
        _payload_value(payloads[0]) if payloads else None)


def recorded_activities(history: Mapping[str, Any]) -> dict[str, RecordedActivity]:
    """Every scheduled activity by activity id, with the outcome its history recorded.

    Local activities count too: their outcome is a ``core_local_activity`` marker whose data names
    the activity id and type (the same id sequence as the workflow's other activities).
    """
    scheduled: dict[str, tuple[str, str]] = {}  # event id -> (activity id, type)
    found: dict[str, RecordedActivity] = {}
    for event in history.get("events") or []:
        kind = str(event.get("eventType", ""))
        if kind.endswith("MARKER_RECORDED"):
            local = _local_activity(_attrs(event, "RecordedEventAttributes"))
            if local is not None:
                found[local.activity_id] = local
            continue
        if kind.endswith("ACTIVITY_TASK_SCHEDULED"):
            attrs = _attrs(event, "ScheduledEventAttributes")
            ident, type_ = str(attrs.get("activityId")), str((attrs.get("activityType") or {}).get("name"))
            scheduled[str(event.get("eventId"))] = (ident, type_)
            found[ident] = RecordedActivity(activity_id=ident, activity_type=type_, outcome="scheduled")
            continue
        for suffix, outcome in (("ACTIVITY_TASK_COMPLETED", "completed"), ("ACTIVITY_TASK_FAILED", "failed"),
                                ("ACTIVITY_TASK_TIMED_OUT", "timed_out"), ("ACTIVITY_TASK_CANCELED", "cancelled")):
            if kind.endswith(suffix):
                attrs = next((v for k, v in event.items() if k.endswith("EventAttributes") and isinstance(v, dict)),
                             {})
                ident, type_ = scheduled.get(str(attrs.get("scheduledEventId")), ("", ""))
                if not ident:
                    break
                payloads = (attrs.get("result") or {}).get("payloads") or []
                found[ident] = RecordedActivity(
                    activity_id=ident, activity_type=type_, outcome=outcome,
                    result=_payload_value(payloads[0]) if payloads else None,
                    failure=failure_summary(attrs["failure"]) if "failure" in attrs else {})
                break
    return found


def _local_activity(attrs: Mapping[str, Any]) -> RecordedActivity | None:
    """The local activity a ``core_local_activity`` marker records (None for other markers)."""
    if attrs.get("markerName") != LOCAL_ACTIVITY_MARKER:
        return None
    details = attrs.get("details") or {}
    data = ((details.get("data") or {}).get("payloads") or [None])[0]
    meta = _payload_value(data) if isinstance(data, dict) else None
    if not isinstance(meta, dict) or "activity_id" not in meta:
        return None
    ident, type_ = str(meta["activity_id"]), str(meta.get("activity_type", ""))
    if "failure" in attrs:
        return RecordedActivity(activity_id=ident, activity_type=type_, outcome="failed",
                                failure=failure_summary(attrs["failure"]))
    payloads = (details.get("result") or {}).get("payloads") or []
    return RecordedActivity(activity_id=ident, activity_type=type_, outcome="completed",
                            result=_payload_value(payloads[0]) if payloads else None)


def task_queues(history: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """(the workflow's task queue, the other task queues its activities were scheduled on, sorted)."""
    events = history.get("events") or []
    if not events:
        raise ValueError("the history has no events")
    workflow_queue = str((_attrs(events[0], "StartedEventAttributes").get("taskQueue") or {}).get("name", ""))
    others: set[str] = set()
    for event in events:
        if str(event.get("eventType", "")).endswith("ACTIVITY_TASK_SCHEDULED"):
            name = (_attrs(event, "ScheduledEventAttributes").get("taskQueue") or {}).get("name")
            if name and name != workflow_queue:
                others.add(str(name))
    return workflow_queue, tuple(sorted(others))


def outcome_differences(recorded: Any, replayed: Any, path: str = "$") -> list[str]:
    """The JSON paths at which two outcomes differ (``$`` is the root), depth first."""
    differences: list[str] = []
    stack: list[tuple[Any, Any, str]] = [(recorded, replayed, path)]
    while stack:
        left, right, where = stack.pop()
        if isinstance(left, dict) and isinstance(right, dict):
            stack.extend((left.get(key), right.get(key), f"{where}.{key}")
                         for key in sorted(left.keys() | right.keys(), reverse=True))
        elif isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
            stack.extend((a, b, f"{where}[{i}]") for i, (a, b) in reversed(list(enumerate(zip(left, right,
                                                                                                  strict=True)))))
        elif canonical_json(left) != canonical_json(right):
            differences.append(where)
    return differences


def build_bundle(*, run: Mapping[str, Any], provenance: Mapping[str, Any] | None, history: Mapping[str, Any],
                 artifacts: Sequence[Mapping[str, Any]]) -> dict[str, bytes]:
    """The bundle's files (name → canonical bytes); ``history`` must already be redacted."""
    replay = {
        "format": BUNDLE_FORMAT,
        "run": dict(run),
        "provenance": dict(provenance) if provenance is not None else None,
        "input_snapshot": (provenance or {}).get("input_snapshot"),
        "history": dict(history),
        "outcome": recorded_outcome(history),
        "manifest": [dict(a) for a in artifacts],
    }
    files = {REPLAY_FILE: canonical_json(replay) + b"\n"}
    manifest = {"format": BUNDLE_FORMAT,
                "files": [{"path": name, "sha256": sha256_hex(data), "size": len(data)}
                          for name, data in sorted(files.items())]}
    files[MANIFEST_FILE] = canonical_json(manifest) + b"\n"
    return files


def bundle_digest(files: Mapping[str, bytes]) -> str:
    """The bundle's identity: sha256 of its manifest file."""
    return sha256_hex(files[MANIFEST_FILE])


def write_bundle(files: Mapping[str, bytes], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        tmp = directory / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(directory / name)


def tar_bundle(files: Mapping[str, bytes], root_name: str) -> bytes:
    """A reproducible .tar.gz of the bundle (fixed order, mtimes, owners and modes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(f"{root_name}/{name}")
            info.size, info.mtime, info.mode, info.uid, info.gid = len(files[name]), 0, 0o644, 0, 0
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


#: what a bundle tarball may hold: a handful of files, at most this many bytes unpacked (a tarball built
#: to exhaust memory or disk is refused while it is read, not after)
MAX_TAR_MEMBERS = 64
MAX_TAR_BYTES = 1 << 30


def untar_bundle(stream: IO[bytes], name: str = "the tarball", max_bytes: int = MAX_TAR_BYTES) -> dict[str, bytes]:
    """The files of a bundle tarball (as :func:`tar_bundle` writes it): one top directory of regular files.

    Refused with :class:`BundleInvalid` naming the problem: not a gzip'd tar, links, devices, nested or
    absolute paths, ``..``, a name twice, more than ``MAX_TAR_MEMBERS`` members or ``max_bytes`` bytes.
    """
    files: dict[str, bytes] = {}
    roots: set[str] = set()
    total = 0
    try:
        with tarfile.open(fileobj=stream, mode="r:gz") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_TAR_MEMBERS:
                    raise BundleInvalid(f"{name} holds more than {MAX_TAR_MEMBERS} entries; a bundle holds a few files")
                parts = member.name.split("/")
                if member.isdir() and len(parts) == 1 and parts[0] not in ("", ".", ".."):
                    roots.add(parts[0])
                    continue
                if not member.isreg():
                    raise BundleInvalid(f"{name}: {member.name!r} is not a regular file")
                if len(parts) != 2 or any(part in ("", ".", "..") for part in parts):
                    raise BundleInvalid(f"{name}: {member.name!r} is not a file in the bundle's directory")
                roots.add(parts[0])
                if len(roots) > 1:
                    raise BundleInvalid(f"{name} holds more than one directory ({', '.join(sorted(roots))})")
                if parts[1] in files:
                    raise BundleInvalid(f"{name} holds {parts[1]!r} twice")
                total += member.size
                if total > max_bytes:
                    raise BundleInvalid(f"{name} unpacks to more than {max_bytes} bytes")
                extracted = tar.extractfile(member)
                assert extracted is not None  # a regular file
                data = extracted.read(member.size + 1)
                if len(data) != member.size:
                    raise BundleInvalid(f"{name}: {member.name!r} is truncated")
                files[parts[1]] = data
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BundleInvalid(f"{name} is not a readable .tar.gz bundle: {type(exc).__name__}: {exc}") from None
    if not files:
        raise BundleInvalid(f"{name} holds no files")
    return files


def check_files(directory: Path) -> list[FileProblem]:
    """Every file listed in manifest.json exists with its size and sha256; nothing else is there."""
    manifest_path = directory / MANIFEST_FILE
    try:
        manifest = orjson.loads(manifest_path.read_bytes())
        listed = {entry["path"]: entry for entry in manifest["files"]}
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return [FileProblem(path=MANIFEST_FILE, problem=f"unreadable manifest: {type(exc).__name__}")]
    problems: list[FileProblem] = []
    for name, entry in sorted(listed.items()):
        path = directory / name
        if not path.is_file() or path.resolve().parent != directory.resolve():
            problems.append(FileProblem(path=name, problem="missing"))
            continue
        data = path.read_bytes()
        if len(data) != entry.get("size") or sha256_hex(data) != entry.get("sha256"):
            problems.append(FileProblem(path=name, problem=f"sha256 mismatch (expected {entry.get('sha256')}, "
                                                           f"got {sha256_hex(data)})"))
    extra = sorted(p.name for p in directory.iterdir()
                   if p.is_file() and p.name not in listed and p.name != MANIFEST_FILE)
    problems.extend(FileProblem(path=name, problem="not listed in manifest.json") for name in extra)
    return problems
