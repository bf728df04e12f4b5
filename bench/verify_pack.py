"""Verify-pack benchmark: the full pack through JobForge vs. the same commands by hand, in one run.

Repository: a real project's sdist with its tests and its ruff/mypy config, fetched from PyPI at bench
time (``pip download --no-binary :all: --no-deps humanize``; ``--package NAME`` for another), or
``examples/python-sample`` when PyPI cannot be reached (``--offline`` forces that).

Baseline, measured in the same run on the same machine: the commands the pack ran (as printed in its
report), run one after another in a shell, with the pack's environment on PATH, not sandboxed.
JobForge runs go through the embedded stack (Temporal dev server, PostgreSQL, a worker process),
with bubblewrap when it works here. Printed: seconds, and JobForge / shell ratios.
Targets: full pack <= 0.8x the sequential shell time; a cache hit <= 0.05x.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from shared.settings import Secret

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.settings import Settings  # noqa: E402 - importable once the checkout is on sys.path
from shared.verify.models import TEMPLATE_KEY, VerifyReport  # noqa: E402 - as above
from tests.support.procs import free_port  # noqa: E402 - as above
from workers.dev import DevPorts, DevStack  # noqa: E402 - as above
from workers.runtime import open_runtime  # noqa: E402 - as above


def fetch(package: str, into: Path, offline: bool) -> tuple[Path, str]:
    """The repository to verify (an unpacked sdist) and where it came from."""
    if not offline:
        download = into / "download"
        download.mkdir(parents=True)
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                                 "-q", "-d", str(download), package],
                                capture_output=True, text=True, timeout=300, check=False)
        archives = sorted(download.glob("*.tar.gz"))
        if result.returncode == 0 and archives:
            with tarfile.open(archives[0]) as tar:
                tar.extractall(into / "src", filter="data")
            repo = next((into / "src").iterdir())
            return repo, f"PyPI sdist {archives[0].name}"
        print(f"(pip download failed, using examples/python-sample: {result.stderr.strip()[-200:]})")
    repo = into / "src" / "python-sample"
    shutil.copytree(ROOT / "examples" / "python-sample", repo)
    return repo, "examples/python-sample"


async def run_pack(settings: Settings, repo: Path, no_cache: bool) -> tuple[float, VerifyReport]:
    async with open_runtime(settings) as rt:
        await rt.gate.tenants.ensure_tenant("bench")
        client = rt.client()
        started = time.perf_counter()
        handle = await client.request_job("bench", TEMPLATE_KEY, {"repo_path": str(repo),
                                                                  "options": {"no_cache": no_cache}})
        report = await client.result(handle)
        elapsed = time.perf_counter() - started
    assert isinstance(report, VerifyReport)
    return elapsed, report


def by_hand(report: VerifyReport, repo: Path, settings: Settings, work: Path) -> float:
    """The report's commands one after another in a shell (what a developer would type), timed: the
    install replayed into a directory of the bench first (untimed here), as ``bench/verify_corpus.py`` does."""
    from bench.verify_corpus import Case, Outcome
    from bench.verify_corpus import by_hand as replay

    outcome = Outcome(case=Case(repo="bench", name="intact", source_dir=repo, edits=[], expect={}), report=report)
    replay(outcome, settings, "bench", work)
    if outcome.by_hand is None:
        raise SystemExit(f"the commands by hand did not run: {outcome.error}")
    return outcome.by_hand


def describe(report: VerifyReport) -> str:
    return ", ".join(f"{s.name.value}={s.status.value}({s.duration_seconds:.1f}s)" for s in report.steps)


async def bench(settings: Settings, repo: Path, origin: str, rounds: int, work: Path) -> dict[str, Any]:
    cold, first = await run_pack(settings, repo, no_cache=True)
    print(f"repository: {origin}; plan: {first.plan_source}; sandboxed: {first.sandbox.enabled}")
    print(f"cold run (creates the environment): {cold:.2f}s  [{describe(first)}]")
    for step in first.steps:
        if step.status.is_failure:
            print(f"  {step.name.value} failed ({step.reason}); last lines: {' | '.join(step.tail[-3:])[:300]}")
    jobforge: list[float] = []
    shell: list[float] = []
    report = first
    for index in range(rounds):  # interleaved, so load from elsewhere on the machine hits both alike
        elapsed, report = await run_pack(settings, repo, no_cache=True)
        jobforge.append(elapsed)
        shell.append(await asyncio.to_thread(by_hand, report, repo, settings, work / f"hand-{index}"))
        print(f"round {index + 1}: jobforge {elapsed:.2f}s  shell {shell[-1]:.2f}s  [{describe(report)}]")
    hits: list[float] = []
    if report.passed:
        for _ in range(5):
            elapsed, hit = await run_pack(settings, repo, no_cache=False)
            assert hit.cached, "expected a cache hit"
            hits.append(elapsed)
    else:
        print(f"verdict {report.verdict.value}: no cache entry (only passes are cached)")
    return {"jobforge": statistics.median(jobforge), "shell": statistics.median(shell),
            "hit": statistics.median(hits) if hits else None, "verdict": report.verdict.value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="humanize")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--offline", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobforge-bench-verify-") as tmp:
        work = Path(tmp)
        repo, origin = fetch(args.package, work, args.offline)
        os.environ.update({"JOBFORGE_AUTOPILOT_JOBS_ENABLED": "1", "VERIFY_PACK_ENABLED": "1",
                           "JOBFORGE_VERIFY_ALLOWED_ROOTS": str(work / "src"), "JOBFORGE_LOG_FORMAT": "json"})
        settings = Settings(home=work / "home")
        stack = DevStack(settings, DevPorts(free_port(), free_port(), free_port()), workers=1, headless=True)
        state = stack.start()
        try:
            live = settings.replace(temporal_address=state.temporal_address,
                                               database_url=Secret(state.database_url))
            result = asyncio.run(bench(live, repo, origin, args.rounds, work))
        finally:
            stack.stop()
    ratio = result["jobforge"] / result["shell"]
    print(f"full pack: jobforge {result['jobforge']:.2f}s vs shell {result['shell']:.2f}s (median) -> "
          f"ratio {ratio:.2f}x (target <= 0.8x)")
    if result["hit"] is not None:
        print(f"cache hit: {result['hit']:.3f}s -> ratio {result['hit'] / result['shell']:.3f}x (target <= 0.05x)")


if __name__ == "__main__":
    main()
