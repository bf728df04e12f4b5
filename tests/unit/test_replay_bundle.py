"""Replay bundle files, history reading and redaction (pure)."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobforge.errors import BundleInvalid
from shared.replay.bundle import (
    build_bundle,
    bundle_digest,
    check_files,
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
from shared.replay.provenance import env_fingerprint, input_snapshot
from shared.security.redaction import redact
from tests.support.depth import examples

ENC = base64.b64encode(b"json/plain").decode()
CANARY = "ghp_" + "A" * 36


def payload(value: Any) -> dict[str, Any]:
    return {"metadata": {"encoding": ENC}, "data": base64.b64encode(orjson.dumps(value)).decode()}


def history() -> dict[str, Any]:
    return {"events": [
        {"eventId": "1", "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
         "workflowExecutionStartedEventAttributes": {"workflowType": {"name": "a.b.c"},
                                                     "input": {"payloads": [payload({"tenant_id": "t",
                                                                                     "inputs": {"api_token": CANARY,
                                                                                                "retries": 3}})]}}},
        {"eventId": "5", "eventType": "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED",
         "activityTaskScheduledEventAttributes": {"activityId": "1", "activityType": {"name": "jobforge.admit"}}},
        {"eventId": "7", "eventType": "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
         "activityTaskCompletedEventAttributes": {"scheduledEventId": "5", "result": {"payloads": [payload(
             {"admitted": True})]}}},
        {"eventId": "8", "eventType": "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED",
         "activityTaskScheduledEventAttributes": {"activityId": "2", "activityType": {"name": "x.step"}}},
        {"eventId": "9", "eventType": "EVENT_TYPE_ACTIVITY_TASK_FAILED",
         "activityTaskFailedEventAttributes": {"scheduledEventId": "8", "failure": {
             "message": f"boom {CANARY}", "stackTrace": f"at x {CANARY}",
             "applicationFailureInfo": {"type": "step_failed"}}}},
        {"eventId": "12", "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
         "workflowExecutionCompletedEventAttributes": {"result": {"payloads": [payload({"ok": True})]}}},
    ]}


def test_history_reading() -> None:
    """The started input, each activity's recorded outcome and the run's outcome are read from history."""
    h = history()
    assert workflow_input(h) == ("a.b.c", {"tenant_id": "t", "inputs": {"api_token": CANARY, "retries": 3}})
    acts = recorded_activities(h)
    assert acts["1"].outcome == "completed" and acts["1"].result == {"admitted": True}
    assert acts["2"].outcome == "failed" and acts["2"].failure["type"] == "step_failed"
    assert recorded_outcome(h) == {"status": "completed", "result": {"ok": True}}
    assert recorded_outcome({"events": h["events"][:3]}) == {"status": "running"}


def test_redact_history_removes_secrets_and_keeps_shape() -> None:
    """Payloads and failure texts lose their secrets; numbers and structure stay replayable."""
    redacted = redact_history(history())
    text = orjson.dumps(redacted).decode()
    assert CANARY not in text and CANARY not in base64.b64decode(
        redacted["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]["data"]).decode()
    _, started = workflow_input(redacted)
    assert started["inputs"] == {"api_token": "[REDACTED]", "retries": 3}
    assert len(redacted["events"]) == len(history()["events"])
    assert redact({"token_count": 5, "password": {"a": 1, "b": "x"}}, keep_types=True) == {
        "token_count": 5, "password": {"a": 1, "b": "[REDACTED]"}}


def test_bundle_is_canonical_and_hash_checked(tmp_path: Path) -> None:
    """The same run gives the same bytes; a changed byte or an extra file is named by check_files."""
    args: dict[str, Any] = {"run": {"run_id": "r", "b": 1, "a": 2}, "provenance": None,
                            "history": redact_history(history()), "artifacts": []}
    files = build_bundle(**args)
    assert files == build_bundle(**args) and bundle_digest(files) == bundle_digest(build_bundle(**args))
    assert tar_bundle(files, "x") == tar_bundle(files, "x")
    write_bundle(files, tmp_path / "b")
    assert check_files(tmp_path / "b") == []
    (tmp_path / "b" / "extra.txt").write_text("hi")
    data = bytearray((tmp_path / "b" / "replay.json").read_bytes())
    data[10] ^= 1
    (tmp_path / "b" / "replay.json").write_bytes(bytes(data))
    assert {(p.path, p.problem.split(" ")[0]) for p in check_files(tmp_path / "b")} == {
        ("replay.json", "sha256"), ("extra.txt", "not")}
    (tmp_path / "b" / "replay.json").unlink()
    assert any(p.path == "replay.json" and p.problem == "missing" for p in check_files(tmp_path / "b"))


def test_env_fingerprint_hashes_values_only() -> None:
    """Only allowlisted variables count, by the hash of their values; secrets elsewhere are ignored."""
    fp = env_fingerprint({"PATH": "/usr/bin", "AWS_SECRET_ACCESS_KEY": "nope", "TZ": "UTC"})
    assert set(fp.variables) == {"PATH", "TZ"} and "/usr/bin" not in fp.model_dump_json()
    assert fp.sha256 == env_fingerprint({"TZ": "UTC", "PATH": "/usr/bin"}).sha256
    assert fp.sha256 != env_fingerprint({"PATH": "/bin", "TZ": "UTC"}).sha256


def test_input_snapshot_redacts_but_hashes_the_original() -> None:
    """The snapshot never holds a secret in clear; its hash is that of the original inputs."""
    from shared.canonical import input_hash

    snap = input_snapshot({"repo": "x", "password": "hunter2"})
    assert snap.inputs == {"repo": "x", "password": "[REDACTED]"} and snap.redacted
    assert snap.input_hash == input_hash({"password": "hunter2", "repo": "x"})
    assert not input_snapshot({"repo": "x"}).redacted


def test_task_queues_are_read_from_the_history() -> None:
    """The workflow's task queue comes from its started event; other queues from scheduled activities."""
    def scheduled(queue: str) -> dict[str, Any]:
        return {"eventType": "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED",
                "activityTaskScheduledEventAttributes": {"taskQueue": {"name": queue}}}

    h = {"events": [{"eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
                     "workflowExecutionStartedEventAttributes": {"taskQueue": {"name": "main"}}},
                    scheduled("main"), scheduled("side-b"), scheduled("side-a"), scheduled("side-b")]}
    assert task_queues(h) == ("main", ("side-a", "side-b"))
    assert task_queues({"events": h["events"][:2]}) == ("main", ())


def test_outcome_differences_name_the_paths() -> None:
    """Equal outcomes have no differences; changed leaves, lengths and types are named by JSON path."""
    recorded = {"status": "completed", "result": {"steps": [{"exit": 0}, {"exit": 1}], "n": 1.0}}
    assert outcome_differences(recorded, {"status": "completed", "result": {"n": 1, "steps": [{"exit": 0},
                                                                                             {"exit": 1}]}}) == []
    changed = {"status": "completed", "result": {"steps": [{"exit": 0}, {"exit": 2}], "n": 1, "extra": True}}
    assert outcome_differences(recorded, changed) == ["$.result.extra", "$.result.steps[1].exit"]
    assert outcome_differences(recorded, {"status": "failed"}) == ["$.result", "$.status"]
    assert outcome_differences([1, 2], [1]) == ["$"]


def _tarball(members: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """A .tar.gz of (name, type, data) members; type None = a regular file."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data) if kind is None else 0
            if kind is not None:
                info.type = kind
                info.linkname = "/etc/passwd"
            tar.addfile(info, io.BytesIO(data) if kind is None else None)
    return raw.getvalue()


def test_a_bundle_tarball_unpacks_to_its_files() -> None:
    """What tar_bundle writes (export --tar, the API's download), untar_bundle reads back byte for byte."""
    files = {"replay.json": b'{"a": 1}\n', "manifest.json": b'{"files": []}\n'}
    assert untar_bundle(io.BytesIO(tar_bundle(files, "replay-r1"))) == files


@pytest.mark.parametrize(("members", "problem"), [
    ([("b/../../etc/x", None, b"x")], "not a file in the bundle's directory"),
    ([("/abs/replay.json", None, b"x")], "not a file in the bundle's directory"),
    ([("b/sub/replay.json", None, b"x")], "not a file in the bundle's directory"),
    ([("b/replay.json", tarfile.SYMTYPE, b"")], "not a regular file"),
    ([("b/replay.json", tarfile.LNKTYPE, b"")], "not a regular file"),
    ([("a/replay.json", None, b"x"), ("b/manifest.json", None, b"x")], "more than one directory"),
    ([("b/replay.json", None, b"x"), ("b/replay.json", None, b"y")], "twice"),
    ([(f"b/f{i}", None, b"") for i in range(100)], "more than 64 entries"),
    ([], "holds no files"),
])
def test_a_tarball_that_is_not_a_flat_bundle_is_refused(members: list[tuple[str, bytes | None, bytes]],
                                                        problem: str) -> None:
    """Links, traversal, nesting, two roots, duplicates and floods are refused with a reason, never unpacked."""
    with pytest.raises(BundleInvalid, match=problem):
        untar_bundle(io.BytesIO(_tarball(members)))


def test_a_tarball_past_the_size_limit_is_refused_while_read() -> None:
    """A member that would take the unpacked total over the limit is refused before its bytes are read."""
    data = _tarball([("b/replay.json", None, b"0" * 5000)])
    with pytest.raises(BundleInvalid, match="unpacks to more than 4096 bytes"):
        untar_bundle(io.BytesIO(data), max_bytes=4096)


@settings(max_examples=examples(ci=100, deep=200), deadline=None)
@given(st.binary(max_size=4096))
def test_any_bytes_give_files_or_bundle_invalid(data: bytes) -> None:
    """Whatever the bytes (garbage, truncated or damaged gzip), the answer is files or BundleInvalid."""
    good = tar_bundle({"replay.json": b"{}", "manifest.json": b"{}"}, "r")
    for candidate in (data, good[: len(data) % len(good)], good[:40] + data):
        try:
            files = untar_bundle(io.BytesIO(candidate))
        except BundleInvalid:
            continue
        assert all("/" not in name and name not in ("", ".", "..") for name in files)
