"""Verify-pack corpus: does the pack agree with what each repository's own CI commands give?

Reads a corpus file (default ``bench/verify_corpus.toml``): repositories, each with where to get it
and the outcome per step its own CI commands give, plus deliberately broken copies (an edit that
introduces a lint error, a type error or a failing test) with the outcomes those give. Sources:

* ``pypi:NAME==VERSION`` an sdist, ``pip download --no-deps --no-binary NAME``;
* ``npm:NAME@VERSION`` a package tarball, ``npm pack``;
* ``git:URL[#REF]`` a clone (``https://``, ``file://``, ...);
* ``mirror:OWNER/NAME`` a GitHub snapshot brought onto this machine beforehand (``/work/.mirror``);
  skipped, with the reason, where it is absent;
* ``path:DIR`` a directory.

Downloads are kept under ``--cache`` (default ``~/.cache/jobforge-verify-corpus``), never in git.
Each case runs through the embedded stack (Temporal dev server, PostgreSQL, one worker) like
``jobforge verify --no-cache``. Printed per case: each step's outcome against the expected one; then
agreement per step and per verdict, the pack's time without its install against the same commands
run by hand one after another (``--by-hand``: the install commands of the report replayed into a
directory of the harness, then each step's command in turn, unsandboxed), and the install time of
runs whose download caches were warm (a broken copy after its intact repository).

``--establish`` instead runs each repository's recorded CI commands (``[repo.ci]``: a setup and a
command per step) by hand, in a fresh environment outside JobForge, on the intact and broken copies,
and prints the outcomes: that is how the expectations in the corpus file were made.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.settings import Secret, Settings  # noqa: E402 - after the checkout is on sys.path, as the imports below
from shared.verify.models import TEMPLATE_KEY, StepName, StepStatus, VerifyReport  # noqa: E402
from tests.support.procs import free_port  # noqa: E402
from workers.dev import DevPorts, DevStack  # noqa: E402
from workers.runtime import open_runtime  # noqa: E402

STEPS = ("lint", "typecheck", "build", "test")
MIRRORS = Path(os.environ.get("JOBFORGE_CORPUS_MIRRORS", "/work/.mirror"))
CASE_TIMEOUT = 1800.0


@dataclass
class Case:
    repo: str
    name: str  # "intact" or the broken copy's name
    source_dir: Path
    edits: list[dict[str, str]]
    expect: dict[str, str]
    ci: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    case: Case
    report: VerifyReport | None = None
    error: str = ""
    wall: float = 0.0
    by_hand: float | None = None
    by_hand_install: float | None = None
    by_hand_statuses: dict[str, str] = field(default_factory=dict)
    by_hand_steps: dict[str, float] = field(default_factory=dict)  # each step's seconds by hand
    phases: list[Phase] = field(default_factory=list)

    def status(self, step: str) -> str:
        if self.report is None:
            return "error"
        with contextlib.suppress(KeyError):
            return self.report.step(StepName(step)).status.value
        return "skipped"

    @property
    def verdict(self) -> str:
        return self.report.verdict.value if self.report is not None else "error"

    @property
    def install_seconds(self) -> float:
        if self.report is None:
            return 0.0
        install = self.report.step(StepName.INSTALL)
        return install.duration_seconds if install.status is StepStatus.PASSED else 0.0


# -- fetching ----------------------------------------------------------------------------------------


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


def _unpack(archive: Path, dest: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".unpack-"))
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    inner = [p for p in tmp.iterdir() if p.is_dir()]
    (inner[0] if len(inner) == 1 else tmp).rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return dest


def fetch(source: str, cache: Path) -> tuple[Path | None, str]:
    """The unpacked source (cached) or None with the reason it cannot be had here."""
    kind, _, spec = source.partition(":")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", source)
    dest = cache / "sources" / slug
    if dest.is_dir():
        return dest, ""
    dest.parent.mkdir(parents=True, exist_ok=True)
    download = cache / "downloads" / slug
    download.mkdir(parents=True, exist_ok=True)
    if kind == "pypi":
        name = re.split(r"[=<>!~ ]", spec, maxsplit=1)[0]
        done = _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", name, "-d",
                     str(download), spec])
        archives = sorted(download.glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            return None, f"pip download {spec} failed: {done.stderr.strip()[-300:]}"
        return _unpack(archives[0], dest), ""
    if kind == "npm":
        npm = shutil.which("npm")
        if npm is None:
            return None, "npm is not installed here"
        done = _run([npm, "pack", "--silent", spec], cwd=download)
        archives = sorted(download.glob("*.tgz"))
        if done.returncode != 0 or not archives:
            return None, f"npm pack {spec} failed: {done.stderr.strip()[-300:]}"
        return _unpack(archives[0], dest), ""
    if kind in ("git", "mirror"):
        if kind == "mirror":
            owner, _, name = spec.partition("/")
            mirror = MIRRORS / f"{owner}+{name}" / "repo"
            if not mirror.is_dir():
                return None, f"no snapshot of {spec} on this machine ({mirror}); fetch it first or give a git: URL"
            url, ref = f"file://{mirror}", ""
        else:
            url, _, ref = spec.partition("#")
        # one commit is enough (and a snapshot may lack objects of older ones)
        done = _run(["git", "clone", "--quiet", "--depth", "1", *(["--branch", ref] if ref else []), "--", url,
                     str(dest)], timeout=900)
        if done.returncode != 0:
            shutil.rmtree(dest, ignore_errors=True)
            return None, f"git clone {url} failed: {done.stderr.strip()[-300:]}"
        return dest, ""
    if kind == "path":
        path = Path(spec).expanduser().resolve()
        return (path, "") if path.is_dir() else (None, f"{path} is not a directory")
    return None, f"unknown source kind {kind!r} (pypi:, npm:, git:, mirror:, path:)"


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "corpus", "GIT_AUTHOR_EMAIL": "corpus@example.invalid",
           "GIT_COMMITTER_NAME": "corpus", "GIT_COMMITTER_EMAIL": "corpus@example.invalid"}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, timeout=300)


def materialise(case: Case, work: Path) -> Path:
    """A fresh copy of the case's source with its edits applied (committed, as a CI checkout would be)."""
    dest = work / f"{case.repo}--{case.name}"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(case.source_dir, dest, symlinks=True)
    fresh = not (dest / ".git").exists()
    if fresh:
        _git(dest, "init", "-q", "-b", "main")
        setup_cfg = dest / "setup.cfg"
        if (dest / "PKG-INFO").is_file() and setup_cfg.is_file():  # an sdist: setuptools added [egg_info]
            text = setup_cfg.read_text()
            kept = re.sub(r"\n*\[egg_info\]\n(?:[^\[\n][^\n]*\n?)*", "\n", text).strip("\n")
            if kept:
                setup_cfg.write_text(kept + "\n")
            else:  # the repository has no setup.cfg: sdist-building made it
                setup_cfg.unlink()
    for edit in case.edits:
        path = dest / edit["file"]
        text = path.read_text() if path.exists() else ""
        if "replace" in edit:
            if edit["replace"] not in text:
                raise SystemExit(f"{case.repo}/{case.name}: {edit['replace']!r} not found in {edit['file']}")
            text = text.replace(edit["replace"], edit.get("with", ""), 1)
        text += edit.get("append", "")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if fresh or case.edits:
        _git(dest, "add", "-A")
        _git(dest, "commit", "-q", "--no-verify", "--allow-empty", "-m", f"corpus: {case.name}")
    _git(dest, "clean", "-fdXq")  # what a clone holds: no ignored files (an sdist ships generated ones)
    return dest


# -- by hand -----------------------------------------------------------------------------------------


def _shell(command: str, cwd: Path, env: dict[str, str], timeout: float = CASE_TIMEOUT) -> tuple[int, float, str]:
    started = time.perf_counter()
    try:
        done = subprocess.run(["/bin/bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, time.perf_counter() - started, "timed out"
    return done.returncode, time.perf_counter() - started, (done.stdout + done.stderr)[-2000:]


def _hand_env(extra_path: list[str], home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBFORGE_", "VIRTUAL_ENV", "PYTEST_"))}
    env.update(PATH=":".join([*extra_path, env.get("PATH", "/usr/bin:/bin")]), CI="true", HOME=str(home))
    return env


def by_hand(outcome: Outcome, settings: Settings, tenant: str, work: Path) -> None:
    """The report's install, then each step's command one after another, in a shell: timed."""
    report = outcome.report
    assert report is not None
    repo = materialise(outcome.case, work / "by-hand")
    workspace = str(settings.home.resolve() / "verify" / "runs" / tenant / report.run_id)
    hand_ws = work / "by-hand" / f"ws-{outcome.case.repo}"
    shutil.rmtree(hand_ws, ignore_errors=True)
    (hand_ws / "home").mkdir(parents=True)
    cache_root = (settings.verify_cache_dir or settings.home / "verify" / "cache").resolve()
    cache_home = cache_root / "tenants" / tenant
    # as the pack's steps have it: the provisioned runners first, then uv, then the environment
    paths = [t.bin_dir for t in report.toolchains if t.bin_dir]
    uv_dirs = [str(p) for p in sorted((cache_root / "toolchains" / "uv").glob("*/bin"))]
    paths += uv_dirs
    paths += [str(hand_ws / "env" / "bin"), str(repo / "node_modules" / ".bin")]
    paths.append(str(cache_root / "toolchains" / "interpreters" / "bin"))
    env = _hand_env(paths, hand_ws / "home")
    env.update(VIRTUAL_ENV=str(hand_ws / "env"), UV_PROJECT_ENVIRONMENT=str(hand_ws / "env"),
               UV_CACHE_DIR=str(cache_home / "uv"), PRE_COMMIT_HOME=str(cache_home / "pre-commit"),
               npm_config_cache=str(cache_home / "npm"), HATCH_DATA_DIR=str(hand_ws / "env-hatch"),
               npm_config_store_dir=str(cache_home / "pnpm-store"), YARN_ENABLE_GLOBAL_CACHE="true",
               YARN_GLOBAL_FOLDER=str(cache_home / "yarn-berry"), COREPACK_ENABLE_STRICT="0",
               npm_config_manage_package_manager_versions="false", UV_PYTHON_DOWNLOADS="never")
    if uv_dirs:
        env["HATCH_ENV_TYPE_VIRTUAL_UV_PATH"] = f"{uv_dirs[-1]}/uv"
    config = Path(workspace) / "pre-commit-config.yaml"
    if (repo / ".pre-commit-config.yaml").is_file():  # the pack runs the hooks from its registry translation
        from shared.verify import precommit

        hooks_on = next((m.group(1) for n in report.notes
                         if (m := re.match(r"pre-commit's Python hooks run on Python (\d+\.\d+)", n))), "")
        translated = precommit.translate((repo / ".pre-commit-config.yaml").read_text(),
                                         str(hand_ws / "pre-commit-config.yaml"), hooks_on)
        (hand_ws / "pre-commit-config.yaml").write_text(precommit.dump(translated.config))

    def local(command: str) -> str:
        return command.replace(workspace, str(hand_ws)).replace(str(config), str(hand_ws / "pre-commit-config.yaml"))

    install = report.step(StepName.INSTALL)
    if install.command:
        code, seconds, tail = _shell(local(install.command), repo, env)
        outcome.by_hand_install = seconds
        if code != 0:
            outcome.error = f"by hand, install failed ({code}): {tail[-300:]}"
            return
    total = 0.0
    for step in report.steps:
        if step.name is StepName.INSTALL or not step.command or step.status is StepStatus.SKIPPED:
            continue
        code, seconds, tail = _shell(local(step.command), repo, env)
        total += seconds
        outcome.by_hand_steps[step.name.value] = round(seconds, 3)
        outcome.by_hand_statuses[step.name.value] = "passed" if code == 0 else "failed"
        if code != 0:
            outcome.by_hand_statuses[f"{step.name.value}:tail"] = tail[-300:].replace("\n", " | ")
    outcome.by_hand = total


def establish(case: Case, work: Path, cache: Path) -> dict[str, str]:
    """The outcome of each step's recorded CI command, run by hand on this copy (see the module doc)."""
    repo = materialise(case, work / "establish")
    home = work / "establish" / f"home-{case.repo}"
    home.mkdir(parents=True, exist_ok=True)
    from activities.toolchains import uv_binary

    ci_env = work / "establish" / f"env-{case.repo}-{case.name}"  # outside the checkout, as CI's runner has it
    env = _hand_env([str(ci_env / "bin"), str(repo / "node_modules" / ".bin"), str(Path(uv_binary()).parent)], home)
    env.update(CI_ENV=str(ci_env), VIRTUAL_ENV=str(ci_env), UV_PROJECT_ENVIRONMENT=str(ci_env),
               UV_CACHE_DIR=str(cache / "establish-uv"), npm_config_cache=str(cache / "establish-npm"),
               COREPACK_HOME=str(cache / "establish-corepack"), COREPACK_ENABLE_DOWNLOAD_PROMPT="0",
               COREPACK_NPM_REGISTRY=os.environ.get("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org"))
    out: dict[str, str] = {}
    setup = case.ci.get("setup", "")
    if setup:
        code, _, tail = _shell(setup, repo, env)
        if code != 0:
            return {"setup": f"failed ({code}): {tail[-400:]}"}
    for step in STEPS:
        command = case.ci.get(step)
        if not command:
            out[step] = "skipped"
            continue
        code, _, tail = _shell(command, repo, env)
        out[step] = "passed" if code == 0 else "failed"
        if code != 0:
            out[f"{step}:tail"] = tail[-300:].replace("\n", " | ")
    ran = [out[s] for s in STEPS if out[s] != "skipped"]
    out["verdict"] = "failed" if "failed" in ran else ("passed" if ran else "nothing_to_verify")
    return out


# -- the pack ----------------------------------------------------------------------------------------


async def run_pack(settings: Settings, tenant: str, repo: Path) -> tuple[float, VerifyReport, list[Phase]]:
    async with open_runtime(settings) as rt:
        await rt.gate.tenants.ensure_tenant(tenant)  # requests name tenants that exist
        client = rt.client()
        started = time.perf_counter()
        handle = await client.request_job(tenant, TEMPLATE_KEY, {"repo_path": str(repo),
                                                                 "options": {"no_cache": True}})
        report = await asyncio.wait_for(client.result(handle), CASE_TIMEOUT)
        wall = time.perf_counter() - started
        assert rt.temporal is not None
        history = await rt.temporal.get_workflow_handle(handle.workflow_id, run_id=handle.run_id).fetch_history()
    assert isinstance(report, VerifyReport)
    return wall, report, phases(history)


@dataclass
class Phase:
    """One activity of a run, from its workflow history: queued (scheduled to started) and run times."""

    name: str
    step: str
    scheduled: float
    queued: float
    ran: float


def phases(history: Any) -> list[Phase]:
    """Each activity of the run: how long it waited for a worker and how long it ran, in history order."""
    from temporalio.api.enums.v1 import EventType

    t0 = None
    scheduled: dict[int, tuple[str, str, float]] = {}
    started: dict[int, float] = {}
    out: list[Phase] = []
    for event in history.events:
        at = event.event_time.ToDatetime().timestamp()
        t0 = at if t0 is None else t0
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            step = ""
            with contextlib.suppress(Exception):
                step = json.loads(attrs.input.payloads[0].data).get("step", "") or ""
            scheduled[event.event_id] = (attrs.activity_type.name, step, at)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = at
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sid = event.activity_task_completed_event_attributes.scheduled_event_id
            name, step, when = scheduled[sid]
            begin = started.get(sid, when)
            out.append(Phase(name=name.removeprefix("verify."), step=step, scheduled=round(when - t0, 3),
                             queued=round(begin - when, 3), ran=round(at - begin, 3)))
    return out


def overhead(phases: list[Phase], commands: dict[str, float], wall: float) -> dict[str, float]:
    """Where the run's time went besides its commands (seconds): ``start`` (the history's start to its first
    activity: the first workflow task, admission), ``prepare``, ``between`` (the history's span covered by no
    activity: the workflow tasks that schedule the next), ``around`` (each step activity, install included,
    beyond its commands' time ``commands[step]``, summed), ``finalize``, ``outside`` (the wall time outside the
    history: the request and the wait for its result)."""
    if not phases:
        return {}
    spans = sorted((p.scheduled, p.scheduled + p.queued + p.ran) for p in phases)
    covered, end = 0.0, 0.0
    for begin, finish in spans:
        if finish > end:
            covered += finish - max(begin, end)
            end = finish
    first = spans[0][0]
    named = {p.name: p.queued + p.ran for p in phases if p.name in ("prepare", "finalize")}
    around = sum(p.queued + p.ran - commands[p.step] for p in phases if p.step in commands)
    return {"start": round(first, 3), "prepare": round(named.get("prepare", 0.0), 3),
            "between": round(end - first - covered, 3), "around": round(around, 3),
            "finalize": round(named.get("finalize", 0.0), 3), "outside": round(wall - end, 3)}


# -- the corpus file ---------------------------------------------------------------------------------


def load_cases(path: Path, cache: Path, only: set[str]) -> tuple[list[Case], list[str]]:
    data = tomllib.loads(path.read_text())
    cases: list[Case] = []
    skipped: list[str] = []
    for repo in data.get("repo", []):
        name = str(repo["name"])
        if only and name not in only:
            continue
        source_dir, why = fetch(str(repo["source"]), cache)
        if source_dir is None:
            skipped.append(f"{name}: {why}")
            continue
        expect = {k: str(v) for k, v in repo["expect"].items()}
        ci = {k: str(v) for k, v in repo.get("ci", {}).items()}
        cases.append(Case(repo=name, name="intact", source_dir=source_dir, edits=[], expect=expect, ci=ci))
        for broken in repo.get("broken", []):
            edits = broken["edits"] if "edits" in broken else [broken["edit"]]
            cases.append(Case(repo=name, name=str(broken["name"]), source_dir=source_dir, edits=list(edits),
                              expect={**expect, **{k: str(v) for k, v in broken["expect"].items()}}, ci=ci))
    return cases, skipped


# -- the run -----------------------------------------------------------------------------------------


def _line(outcome: Outcome) -> str:
    case = outcome.case
    cells = []
    for step in (*STEPS, "verdict"):
        got = outcome.verdict if step == "verdict" else outcome.status(step)
        want = case.expect.get(step, "skipped")
        cells.append(f"{step}={got}" + ("" if got == want else f"(expected {want})"))
    return f"{case.repo:<14} {case.name:<10} " + " ".join(cells)


async def run_cases(settings: Settings, cases: list[Case], work: Path, hand: bool,
                    json_out: str = "") -> list[Outcome]:
    outcomes: list[Outcome] = []
    for case in cases:
        outcome = Outcome(case=case)
        tenant = f"corpus-{case.repo}"
        try:
            repo = materialise(case, work / "pack")
            outcome.wall, outcome.report, outcome.phases = await run_pack(settings, tenant, repo)
        except Exception as exc:  # a harness reports every case, whatever broke in it
            outcome.error = f"{type(exc).__name__}: {exc}"[:500]
        print(_line(outcome) + (f"  [{outcome.error}]" if outcome.error else ""), flush=True)
        report = outcome.report
        if report is not None:
            for step in report.steps:
                if step.status.value != case.expect.get(step.name.value, step.status.value) or (
                        step.status.value in ("failed", "error") and case.name == "intact"):
                    print(f"    {step.name.value}: {step.status.value} `{step.command[:200]}` from {step.origin}: "
                          f"{step.reason[:200]} | {' | '.join(step.tail[-4:])[:400]}", flush=True)
            if report.error:
                print(f"    error: {report.error[:400]}", flush=True)
            install = report.step(StepName.INSTALL)
            if install.log is not None and case.name != "intact":  # a warm install: where its time went
                with contextlib.suppress(OSError):
                    lines = (await asyncio.to_thread(Path(install.log.location).read_text)).splitlines()
                    print("    install: " + (install.reason or "not restored") + " | " + " | ".join(
                        line[:90] for line in lines if line.startswith(("$ ", "# exit", "# env"))), flush=True)
            steps = {r.name.value: r.duration_seconds for r in report.steps}
            print("    phases: " + ", ".join(
                f"{p.step or p.name} {p.ran:.1f}s" + (f" (its process {steps[p.step]:.1f}s)" if p.step in steps else "")
                + (f" after {p.queued:.2f}s queued" if p.queued >= 0.05 else "") for p in outcome.phases)
                + f"; wall {outcome.wall:.1f}s", flush=True)
            own = overhead(outcome.phases, steps, outcome.wall)
            print("    besides the commands: " + ", ".join(f"{k} {v:.3f}s" for k, v in own.items()), flush=True)
        if hand and report is not None and case.name == "intact":
            with contextlib.suppress(Exception):
                await asyncio.to_thread(by_hand, outcome, settings, tenant, work)
            if outcome.by_hand is not None:
                differ = {s: v for s, v in outcome.by_hand_statuses.items()
                          if ":" not in s and v != outcome.status(s)}
                differ.update({s: v for s, v in outcome.by_hand_statuses.items() if s.split(":")[0] in differ})
                print(f"    by hand: install {outcome.by_hand_install or 0:.1f}s, steps {outcome.by_hand:.1f}s ("
                      + ", ".join(f"{s} {t:.1f}s" for s, t in outcome.by_hand_steps.items()) + ")"
                      + (f"; differs: {differ}" if differ else ""), flush=True)
            elif outcome.error:
                print(f"    {outcome.error}", flush=True)
        outcomes.append(outcome)
        if json_out:  # after every case: a run stopped half-way keeps what it measured
            text = json.dumps(summarise(outcomes, []), indent=2) + "\n"
            await asyncio.to_thread(Path(json_out).write_text, text)
    return outcomes


def summarise(outcomes: list[Outcome], skipped: list[str]) -> dict[str, Any]:
    per_step: dict[str, list[int]] = {s: [0, 0] for s in STEPS}
    verdicts = [0, 0]
    for o in outcomes:
        for step in STEPS:
            per_step[step][1] += 1
            per_step[step][0] += o.status(step) == o.case.expect.get(step, "skipped")
        verdicts[1] += 1
        verdicts[0] += o.verdict == o.case.expect.get("verdict")
    steps_agree = sum(a for a, _ in per_step.values())
    steps_total = sum(t for _, t in per_step.values())
    timed = [o for o in outcomes if o.by_hand and o.report is not None]
    pack_wo_install = sum(max(0.0, o.wall - o.install_seconds) for o in timed)
    hand = sum(o.by_hand or 0.0 for o in timed)
    warm = [o.install_seconds for o in outcomes if o.case.name != "intact" and o.install_seconds]
    details = [{
        "repo": o.case.repo, "case": o.case.name, "verdict": o.verdict, "expected": o.case.expect.get("verdict"),
        "wall_s": round(o.wall, 1), "install_s": o.install_seconds, "by_hand_s": o.by_hand,
        "by_hand_install_s": o.by_hand_install, "by_hand_steps_s": o.by_hand_steps,
        "error": o.error or (o.report.error if o.report else ""),
        "phases": [vars(p) for p in o.phases],
        "overhead_s": overhead(o.phases, {r.name.value: r.duration_seconds for r in o.report.steps}, o.wall)
        if o.report else {},
        "steps": [{"step": r.name.value, "status": r.status.value, "expected": o.case.expect.get(r.name.value),
                   "seconds": r.duration_seconds, "command": r.command, "origin": r.origin}
                  for r in (o.report.steps if o.report else [])],
    } for o in outcomes]
    return {
        "details": details,
        "cases": len(outcomes), "repositories": len({o.case.repo for o in outcomes}), "skipped": skipped,
        "verdict_agreement": f"{verdicts[0]}/{verdicts[1]}",
        "step_agreement": f"{steps_agree}/{steps_total}",
        "per_step": {s: f"{a}/{t}" for s, (a, t) in per_step.items()},
        "pack_without_install_s": round(pack_wo_install, 1), "by_hand_s": round(hand, 1),
        "ratio": round(pack_wo_install / hand, 2) if hand else None,
        "per_repo_ratio": {o.case.repo: round(max(0.0, o.wall - o.install_seconds) / (o.by_hand or 1), 2)
                           for o in timed},
        "warm_install_s": {"median": round(sorted(warm)[len(warm) // 2], 1) if warm else None,
                           "max": round(max(warm), 1) if warm else None, "runs": len(warm)},
    }


def rescore(corpus: Path, runs: list[Path]) -> dict[str, Any]:
    """Agreement of earlier runs' outcomes (their ``--json`` files; a later file's case replaces an earlier
    one's) with the corpus file's expectations as they are now; cases the corpus no longer has are left out."""
    data = tomllib.loads(corpus.read_text())
    expected: dict[tuple[str, str], dict[str, str]] = {}
    for repo in data.get("repo", []):
        base = {k: str(v) for k, v in repo["expect"].items()}
        expected[(repo["name"], "intact")] = base
        for broken in repo.get("broken", []):
            expected[(repo["name"], broken["name"])] = {**base, **{k: str(v) for k, v in broken["expect"].items()}}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        for case in json.loads(run.read_text())["details"]:
            if (case["repo"], case["case"]) in expected:
                latest[(case["repo"], case["case"])] = case
    per_step = {s: [0, 0] for s in STEPS}
    verdicts = [0, 0]
    misses: list[str] = []
    for key, case in sorted(latest.items()):
        want = expected[key]
        got = {r["step"]: r["status"] for r in case["steps"]}
        for step in STEPS:
            per_step[step][1] += 1
            ok = got.get(step, "skipped") == want.get(step, "skipped")
            per_step[step][0] += ok
            if not ok:
                misses.append(f"{key[0]}/{key[1]} {step}: {got.get(step, 'skipped')} (expected {want.get(step)})")
        verdicts[1] += 1
        verdicts[0] += case["verdict"] == want.get("verdict")
        if case["verdict"] != want.get("verdict"):
            misses.append(f"{key[0]}/{key[1]} verdict: {case['verdict']} (expected {want.get('verdict')})")
    return {"cases": len(latest), "missing": sorted(f"{r}/{c}" for r, c in set(expected) - set(latest)),
            "verdict_agreement": f"{verdicts[0]}/{verdicts[1]}",
            "step_agreement": f"{sum(a for a, _ in per_step.values())}/{sum(t for _, t in per_step.values())}",
            "per_step": {s: f"{a}/{t}" for s, (a, t) in per_step.items()}, "disagreements": misses}


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM as Ctrl-C: the embedded stack is stopped on the way out


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupted)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(ROOT / "bench" / "verify_corpus.toml"))
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "jobforge-verify-corpus"))
    parser.add_argument("--only", action="append", default=[], help="a repository's name (repeatable)")
    parser.add_argument("--intact-only", action="store_true", help="leave the broken copies out")
    parser.add_argument("--broken-only", action="store_true", help="only the broken copies")
    parser.add_argument("--by-hand", action="store_true", help="also time the same commands by hand")
    parser.add_argument("--establish", action="store_true", help="run the recorded CI commands by hand instead")
    parser.add_argument("--json", dest="json_out", default="", help="write the summary here too")
    parser.add_argument("--rescore", nargs="+", default=[], metavar="RUN_JSON",
                        help="score earlier runs' --json files against the corpus file as it is now, and stop")
    args = parser.parse_args()
    if args.rescore:
        print(json.dumps(rescore(Path(args.corpus), [Path(p) for p in args.rescore]), indent=2))
        return
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    cases, skipped = load_cases(Path(args.corpus), cache, set(args.only))
    if args.intact_only:
        cases = [c for c in cases if c.name == "intact"]
    if args.broken_only:
        cases = [c for c in cases if c.name != "intact"]
    cases.sort(key=lambda c: c.name != "intact")  # every repository first, then the broken copies (warm caches)
    for line in skipped:
        print(f"skipped {line}")
    with tempfile.TemporaryDirectory(prefix="jobforge-corpus-", dir=cache) as tmp:
        work = Path(tmp)
        if args.establish:
            for case in cases:
                got = establish(case, work, cache)
                differ = {k: v for k, v in got.items() if k in (*STEPS, "verdict") and case.expect.get(k) != v}
                print(f"{case.repo:<14} {case.name:<10} {json.dumps(got)}"
                      + (f"  DIFFERS from the corpus file: {differ}" if differ else ""), flush=True)
            return
        os.environ.update({"JOBFORGE_AUTOPILOT_JOBS_ENABLED": "1", "VERIFY_PACK_ENABLED": "1",
                           "JOBFORGE_VERIFY_ALLOWED_ROOTS": str(work), "JOBFORGE_LOG_FORMAT": "json",
                           "JOBFORGE_VERIFY_CACHE_DIR": str(cache / "pack-cache")})
        settings = Settings(home=work / "home")
        stack = DevStack(settings, DevPorts(free_port(), free_port(), free_port()), workers=1, headless=True)
        state = stack.start()
        try:
            live = settings.replace(temporal_address=state.temporal_address,
                                               database_url=Secret(state.database_url))
            outcomes = asyncio.run(run_cases(live, cases, work, args.by_hand, args.json_out))
        finally:
            stack.stop()
    result = summarise(outcomes, skipped)
    print(json.dumps({k: v for k, v in result.items() if k != "details"}, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
