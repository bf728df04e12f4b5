"""Replay bundles of real runs: export → verify → dry-run on verify-pack, trigger-fired and timer runs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import tarfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from temporalio.worker import Worker

from jobforge.models import EventEnvelope, RouteEventResult, RunStatus, TriggerKind, TriggerSpec, Verdict
from shared.canonical import sha256_hex
from shared.flags import Flag
from shared.replay.bundle import recorded_activities, task_queues
from shared.replay.service import DryRunResult, ReplayService, VerifyResult, dry_run_bundle, verify_bundle
from shared.settings import Settings
from shared.triggers.service import TriggerService
from shared.verify.models import TEMPLATE_KEY, StepName, StepStatus, VerifyReport
from tests.support import replay_templates
from tests.support.tenants import new_tenant
from tests.support.verify_repos import FAKE_AWS_KEY, FAKE_GITHUB_TOKEN, explicit_repo
from workers.runtime import Runtime
from workers.stack import temporal_binary
from workflows import discover

pytestmark = pytest.mark.integration

HC = "autopilot.jobforge.healthcheck"
WORKFLOWS = discover([replay_templates])
#: canaries placed in the worker's environment (GITHUB_TOKEN is not allowlisted; PATH is, so it is hashed)
ENV_TOKEN = "ghp_" + "EnvCanary0123456789abcdefghijklmnopqr"
PATH_TOKEN = "ghp_" + "PathCanary0123456789abcdefghijklmnopq"


@pytest.fixture
def settings(settings: Settings, repos: Path) -> Settings:
    """The session's services, repositories under ``repos``, and the test-only side-queue template."""
    return settings.replace(
        verify_allowed_roots=[repos], verify_heartbeat_timeout_seconds=5.0, verify_kill_grace_seconds=1.0,
        template_modules=["tests.support.replay_templates"],
    )


@pytest.fixture
def flags_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for flag in (Flag.AUTOPILOT_JOBS, Flag.VERIFY_PACK, Flag.REPLAY_PACK, Flag.EVENTS, Flag.TRIGGERS):
        monkeypatch.setenv(flag.value, "1")


async def tenant(rt: Runtime) -> str:
    return await new_tenant(rt, "rt")


async def round_trip(rt: Runtime, ident: str, tenant_id: str, out: Path) -> tuple[dict[str, Any], VerifyResult,
                                                                                    DryRunResult]:
    """Export the run, verify the bundle and dry-run it; assert what `jobforge replay verify` promises."""
    exported = await ReplayService(rt.store, rt.temporal, rt.flags).export(ident, tenant_id, out, tarball=True)
    assert exported.files == {name: sha256_hex((out / name).read_bytes()) for name in ("manifest.json",
                                                                                        "replay.json")}
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert [(f["path"], f["sha256"], f["size"]) for f in manifest["files"]] == [
        ("replay.json", exported.files["replay.json"], (out / "replay.json").stat().st_size)]
    replay = orjson.loads((out / "replay.json").read_bytes())
    verified = await verify_bundle(out, WORKFLOWS)
    assert verified.ok, verified
    assert verified.files == [] and verified.determinism == "ok" and verified.input_hash == "ok"
    assert verified.events == len(replay["history"]["events"])
    dry = await asyncio.wait_for(dry_run_bundle(out, WORKFLOWS, temporal_binary()), 60)
    assert dry.ok, dry
    assert dry.replayed == replay["outcome"] == dry.recorded and dry.differences == []
    assert dry.activities_answered == len(recorded_activities(replay["history"]))
    return replay, verified, dry


async def verify_run(rt: Runtime, tenant_id: str, inputs: dict[str, Any]) -> VerifyReport:
    report = await rt.client().result(await rt.client().request_job(tenant_id, TEMPLATE_KEY, inputs))
    assert isinstance(report, VerifyReport)
    return report


async def test_passing_verify_run_round_trips(runtime: Runtime, worker: None, flags_on: None, repos: Path,
                                              tmp_path: Path) -> None:
    """A passing verify-pack run exports, verifies (hashes, input hash, determinism) and dry-runs to its verdict."""
    t = await tenant(runtime)
    repo = explicit_repo(repos, "good", {"lint": f"echo lint {t}", "typecheck": "echo types",
                                         "build": "echo built", "test": "echo '3 passed'"})
    report = await verify_run(runtime, t, {"repo_path": str(repo)})
    assert report.passed and not report.cached
    replay, _, dry = await round_trip(runtime, report.run_id, t, tmp_path / "bundle")
    assert replay["outcome"]["status"] == "completed"
    assert replay["outcome"]["result"]["verdict"] == "passed" and replay["outcome"]["result"]["run_id"] == report.run_id
    # the subject repository is fingerprinted by prepare, after its path check (not at run start)
    assert replay["outcome"]["result"]["fingerprint_parts"]["code"]["kind"] == "files"
    assert replay["provenance"]["jobforge_code"]["is_repo"] and replay["provenance"]["subject_code"] is None
    assert {a["name"] for a in replay["manifest"]} >= {"report.json", "logs/lint.log", "logs/test.log"}
    # the verify pack's workflow and activities run on the verify queue; the dry run served that queue
    workflow_queue, others = task_queues(replay["history"])
    assert workflow_queue == runtime.settings.verify_queue and others == ()
    assert dry.task_queues == [runtime.settings.verify_queue]
    types = [a.activity_type for a in recorded_activities(replay["history"]).values()]
    assert types.count("verify.run_step") == 4 and "verify.finalize" in types
    # the same code again is answered from the cache; that run round trips too, its duration included
    cached = await verify_run(runtime, t, {"repo_path": str(repo)})
    assert cached.cached and cached.passed
    cached_replay, _, _ = await round_trip(runtime, cached.run_id, t, tmp_path / "cached")
    assert cached_replay["outcome"]["result"]["cached"] is True
    assert cached_replay["outcome"]["result"]["duration_seconds"] == cached.duration_seconds


async def test_failing_verify_runs_round_trip(runtime: Runtime, worker: None, flags_on: None, repos: Path,
                                              tmp_path: Path) -> None:
    """Failing lint and tests (a failed verdict) and a refused repository (a failed run) both round-trip."""
    t = await tenant(runtime)
    repo = explicit_repo(repos, "bad", {"lint": f"echo 'E501 {t}'; exit 3", "typecheck": "true",
                                        "test": "echo '1 failed'; exit 1"})
    report = await verify_run(runtime, t, {"repo_path": str(repo)})
    assert not report.passed and report.step(StepName.LINT).status is StepStatus.FAILED
    replay, _, dry = await round_trip(runtime, report.run_id, t, tmp_path / "failed-verdict")
    result = replay["outcome"]["result"]
    assert replay["outcome"]["status"] == "completed" and result["verdict"] == "failed"
    assert {s["name"]: s["exit_code"] for s in result["steps"]}["lint"] == 3
    assert dry.replayed["result"]["steps"] == result["steps"]

    handle = await runtime.client().request_job(t, TEMPLATE_KEY, {"repo_path": str(repos / "missing")})
    with pytest.raises(Exception, match="does not exist"):
        await runtime.client().result(handle)
    assert (await runtime.store.get_run(handle.run_id)).status is RunStatus.FAILED
    replay, _, dry = await round_trip(runtime, handle.workflow_id, t, tmp_path / "failed-run")
    assert replay["outcome"]["status"] == "failed"
    assert replay["outcome"]["failure"]["type"] == "repo_path_refused"
    assert dry.replayed["failure"] == replay["outcome"]["failure"]


async def test_trigger_fired_run_round_trips(runtime: Runtime, worker: None, flags_on: None, tmp_path: Path) -> None:
    """A healthcheck run fired by an event through a trigger exports, verifies and dry-runs like any run."""
    t = await tenant(runtime)
    assert runtime.temporal is not None
    triggers = TriggerService(runtime.store.triggers, runtime.temporal, runtime.settings,
                              runtime.registry, runtime.flags)
    await triggers.create(TriggerSpec(tenant_id=t, name="on-signed", kind=TriggerKind.EVENT, template_key=HC,
                                      event_pattern="contract.*", input_pointers={"task_queues": "/payload/queues"}))
    receipt = await runtime.client().submit_event(EventEnvelope(
        tenant_id=t, event_id=uuid.uuid4().hex, event_type="contract.signed", source_app="settler",
        payload={"queues": [runtime.settings.task_queue]}, occurred_at=datetime.now(UTC)))
    routed = await runtime.client().wait_routed(receipt)
    assert isinstance(routed, RouteEventResult)
    [fire] = routed.fires
    assert fire.verdict is Verdict.FIRE and fire.run_workflow_id is not None
    await runtime.temporal.get_workflow_handle(fire.run_workflow_id).result()
    replay, _, _ = await round_trip(runtime, fire.run_workflow_id, t, tmp_path / "fired")
    assert replay["run"]["actor"] == "trigger:on-signed" and replay["run"]["template_key"] == HC
    assert replay["outcome"]["result"]["healthy"] is True
    assert replay["input_snapshot"]["inputs"] == {"task_queues": [runtime.settings.task_queue]}


async def test_dry_run_serves_other_task_queues_and_skips_timers(runtime: Runtime, worker: None, flags_on: None,
                                                                  tmp_path: Path) -> None:
    """A run whose activity ran on another task queue and that slept dry-runs with the same outcome, faster."""
    t, side = await tenant(runtime), f"{runtime.settings.task_queue}-side"
    assert runtime.temporal is not None
    async with Worker(runtime.temporal, task_queue=side, activities=[replay_templates.side_greet]):
        started = time.monotonic()
        handle = await runtime.client().request_job(t, replay_templates.KEY,
                                                    {"side_queue": side, "seconds": 4.0, "name": t})
        result = await runtime.client().result(handle)
        recorded_seconds = time.monotonic() - started
    assert isinstance(result, replay_templates.SideQueueResult) and result.greeting == f"hello {t}"
    started = time.monotonic()
    replay, _, dry = await round_trip(runtime, handle.workflow_id, t, tmp_path / "side")
    dry_seconds = time.monotonic() - started
    assert task_queues(replay["history"]) == (runtime.settings.task_queue, (side,))
    assert dry.task_queues == [runtime.settings.task_queue, side]
    assert dry.replayed["result"] == {"greeting": f"hello {t}", "slept_seconds": 4.0}
    assert recorded_seconds >= 4.0 and dry_seconds < recorded_seconds, (dry_seconds, recorded_seconds)
    # without the template's module loaded, both say so (a dry run would otherwise wait forever)
    unknown = await verify_bundle(tmp_path / "side", discover())
    assert not unknown.ok and "JOBFORGE_TEMPLATE_MODULES" in unknown.determinism
    not_run = await asyncio.wait_for(dry_run_bundle(tmp_path / "side", discover(), temporal_binary()), 10)
    assert not not_run.ok and replay_templates.KEY in not_run.detail and not_run.replayed == {"status": "not_run"}


def payload_texts(value: Any) -> list[str]:
    """Every base64 ``data`` field of the JSON, decoded: what a bundle's payloads say in clear."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("data"), str):
                found.append(base64.b64decode(item["data"]).decode(errors="replace"))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


async def test_bundle_of_a_run_with_canaries_holds_none(runtime: Runtime, worker: None, flags_on: None,
                                                        repos: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets a step prints and secrets in the worker's environment appear nowhere in the bundle, not even
    base64-encoded in a payload; the bundle still verifies and dry-runs."""
    monkeypatch.setenv("GITHUB_TOKEN", ENV_TOKEN)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYCANARYKEY")
    canaried_path = f"/nonexistent/{PATH_TOKEN}/bin:{os.environ['PATH']}"
    monkeypatch.setenv("PATH", canaried_path)
    t = await tenant(runtime)
    script = (f"echo 'token={FAKE_GITHUB_TOKEN}'; echo 'aws {FAKE_AWS_KEY} here'; echo \"path=$PATH\"; "
              "printf -- '-----BEGIN RSA PRIVATE KEY-----\\nMIIEsecretkeymaterial\\n-----END RSA PRIVATE KEY-----\\n'; "
              "exit 1")
    repo = explicit_repo(repos, "leaky", {"lint": "echo clean", "test": script})
    report = await verify_run(runtime, t, {"repo_path": str(repo)})
    assert report.step(StepName.TEST).status is StepStatus.FAILED
    replay, _, _ = await round_trip(runtime, report.run_id, t, tmp_path / "canary")

    texts = {name: (tmp_path / "canary" / name).read_text() for name in ("replay.json", "manifest.json")}
    with tarfile.open(fileobj=io.BytesIO((tmp_path / "canary.tar.gz").read_bytes()), mode="r:gz") as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            assert extracted is not None
            texts[f"tar:{member.name}"] = extracted.read().decode()
    texts["payloads"] = "\n".join(payload_texts(replay))
    secrets = (FAKE_GITHUB_TOKEN, FAKE_AWS_KEY, "MIIEsecretkeymaterial", ENV_TOKEN, PATH_TOKEN,
               "wJalrXUtnFEMI/K7MDENG/bPxRfiCYCANARYKEY")
    for name, text in texts.items():
        assert [s for s in secrets if s in text] == [], f"a canary is in the clear in {name}"
    # the canaries did flow through: the step's output is in the bundle, redacted, and PATH was fingerprinted
    tail = "\n".join(next(s for s in replay["outcome"]["result"]["steps"] if s["name"] == "test")["tail"])
    assert "token=[REDACTED]" in tail and "path=" in tail and "[REDACTED PRIVATE KEY]" in tail
    assert replay["provenance"]["environment"]["variables"]["PATH"] == hashlib.sha256(
        canaried_path.encode()).hexdigest()
    assert await runtime.store.replay.bundles(t, report.run_id)
