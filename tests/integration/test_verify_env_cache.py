"""The verify pack's environment cache: built environments kept per install key and restored by warm runs.

The first half drives ``activities.envcache.EnvCache`` on generated directories (no network): a hit moves
the environment to the run's paths, a damaged or half-built entry is a miss and is rebuilt, a builder
killed with SIGKILL leaves no entry, concurrent runs of one key agree, eviction keeps the bound. The
second half runs the pack against PyPI: a warm run restores and still tests its own code, a changed
dependency file misses, a damaged entry is rebuilt, two concurrent runs of one key both pass.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from activities.envcache import EnvCache, tally
from shared.flags import Flag
from shared.settings import Settings
from shared.verify.envcache import EnvDir
from shared.verify.models import TEMPLATE_KEY, StepName, VerifyReport
from tests.integration.test_verify_provisioning import PYPI, SHARED_CACHE, _reachable, explain, listing, log_text
from tests.support.tenants import ensure_tenants
from tests.support.verify_repos import TOXED_PYPROJECT, git_init, write_files
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

KEY = "sha256:" + "ab" * 32
OTHER_KEY = "sha256:" + "cd" * 32


def _workspace(root: Path, run: str) -> Path:
    """A run's workspace; run names of one length give paths of one length, as run ids do."""
    ws = root / "runs" / "acme" / run
    ws.mkdir(parents=True)
    return ws


def _build_env(ws: Path, files: int = 20) -> list[EnvDir]:
    """An environment as an install leaves it: absolute paths into the workspace in scripts, a .pth and
    compiled bytecode, a symlink into the workspace, plus plain packages."""
    env = ws / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "tool").write_text(f"#!{ws}/env/bin/python\nprint('tool')\n")
    (env / "bin" / "tool").chmod(0o755)
    site = env / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "_project.pth").write_text(f"{ws}/tree/src\n")
    (site / "mod.cpython-311.pyc").write_bytes(b"\x00\x01" + f"{ws}/env/lib/mod.py".encode() + b"\x00")
    for i in range(files):
        (site / f"pkg{i}.py").write_text(f"VALUE = {i}\n")
    (env / "lib64").symlink_to("lib")
    (env / "project").symlink_to(f"{ws}/tree")
    tox = ws / "tree" / ".tox"
    (tox / "py").mkdir(parents=True)
    (tox / "py" / ".tox-info.json").write_text(f'{{"path": "{ws}/tree/.tox/py"}}')
    return [EnvDir("env", str(env)), EnvDir("tox", str(tox))]


def _dirs(ws: Path) -> list[EnvDir]:
    return [EnvDir("env", str(ws / "env")), EnvDir("tox", str(ws / "tree" / ".tox"))]


def test_a_restored_environment_points_at_the_restoring_runs_paths(tmp_path: Path) -> None:
    """A hit copies the entry to the new run and writes its workspace wherever the building run's stood:
    scripts, .pth, bytecode (same length: patched), symlinks, tox's records; the entry keeps the old path."""
    cache = EnvCache(tmp_path / "envs", 1 << 30)
    first = _workspace(tmp_path, "run-aaaa")
    assert cache.store("acme", KEY, _build_env(first), str(first))
    second = _workspace(tmp_path, "run-bbbb")
    restored = cache.restore("acme", KEY, _dirs(second), str(second))
    assert restored.hit, restored.reason
    site = second / "env" / "lib" / "python3.11" / "site-packages"
    assert (second / "env" / "bin" / "tool").read_text().startswith(f"#!{second}/env/bin/python\n")
    assert os.access(second / "env" / "bin" / "tool", os.X_OK)
    assert (site / "_project.pth").read_text() == f"{second}/tree/src\n"
    assert f"{second}/env/lib/mod.py".encode() in (site / "mod.cpython-311.pyc").read_bytes()
    assert os.readlink(second / "env" / "project") == f"{second}/tree"
    assert os.readlink(second / "env" / "lib64") == "lib"
    assert str(second) in (second / "tree" / ".tox" / "py" / ".tox-info.json").read_text()
    entry = cache.entry("acme", KEY)
    assert (entry / "env" / "lib" / "python3.11" / "site-packages" / "_project.pth").read_text() == (
        f"{first}/tree/src\n")
    # packages' files are shared with the entry; a script written in place by the run leaves the entry alone
    assert (site / "pkg3.py").stat().st_ino == (entry / "env" / "lib" / "python3.11" / "site-packages" /
                                                "pkg3.py").stat().st_ino
    (second / "env" / "bin" / "tool").write_text("changed by the run\n")
    assert (entry / "env" / "bin" / "tool").read_text().startswith(f"#!{first}/env/bin/python\n")


def test_a_workspace_of_another_length_gets_text_patched_and_bytecode_dropped(tmp_path: Path) -> None:
    """Where the restoring run's path is longer, text files are rewritten and bytecode naming the old path
    is deleted (Python compiles it again) rather than corrupted."""
    cache = EnvCache(tmp_path / "envs", 1 << 30)
    first = _workspace(tmp_path, "r1")
    assert cache.store("acme", KEY, _build_env(first), str(first))
    second = _workspace(tmp_path, "a-much-longer-run-name")
    assert cache.restore("acme", KEY, _dirs(second), str(second)).hit
    site = second / "env" / "lib" / "python3.11" / "site-packages"
    assert (site / "_project.pth").read_text() == f"{second}/tree/src\n"
    assert not (site / "mod.cpython-311.pyc").exists()
    assert (site / "pkg3.py").read_text() == "VALUE = 3\n"


def test_another_install_key_or_tenant_misses(tmp_path: Path) -> None:
    """An entry serves its own install key and tenant only; a miss leaves the run's directories alone."""
    cache = EnvCache(tmp_path / "envs", 1 << 30)
    first = _workspace(tmp_path, "run-aaaa")
    assert cache.store("acme", KEY, _build_env(first), str(first))
    second = _workspace(tmp_path, "run-bbbb")
    for tenant, key in (("acme", OTHER_KEY), ("globex", KEY)):
        restored = cache.restore(tenant, key, _dirs(second), str(second))
        assert not restored.hit and "no cached environment" in restored.reason
    assert not (second / "env").exists()


@pytest.mark.parametrize("damage", ["delete a file", "truncate a file", "meta.json cut short"])
def test_a_damaged_entry_is_a_miss_and_is_replaced(tmp_path: Path, damage: str) -> None:
    """An entry whose files do not add up to what it recorded is discarded on restore; the next store
    writes a complete one that restores again."""
    cache = EnvCache(tmp_path / "envs", 1 << 30)
    first = _workspace(tmp_path, "run-aaaa")
    assert cache.store("acme", KEY, _build_env(first), str(first))
    entry = cache.entry("acme", KEY)
    site = entry / "env" / "lib" / "python3.11" / "site-packages"
    if damage == "delete a file":
        (site / "pkg7.py").unlink()
    elif damage == "truncate a file":
        (site / "pkg7.py").write_text("")
    else:
        (entry / "meta.json").write_bytes((entry / "meta.json").read_bytes()[:20])
    second = _workspace(tmp_path, "run-bbbb")
    restored = cache.restore("acme", KEY, _dirs(second), str(second))
    assert not restored.hit
    assert (not (second / "env").exists() and not entry.exists()) or damage == "meta.json cut short"
    rebuilt = _workspace(tmp_path, "run-dddd")  # the run that missed installs from scratch
    assert cache.store("acme", KEY, _build_env(rebuilt), str(rebuilt))
    third = _workspace(tmp_path, "run-cccc")
    assert cache.restore("acme", KEY, _dirs(third), str(third)).hit
    assert (third / "env" / "lib" / "python3.11" / "site-packages" / "pkg7.py").read_text() == "VALUE = 7\n"


_BUILDER = """
import sys
from pathlib import Path
from activities.envcache import EnvCache
from shared.verify.envcache import EnvDir
root, ws = Path(sys.argv[1]), sys.argv[2]
EnvCache(root, 1 << 40).store("acme", sys.argv[3], [EnvDir("env", ws + "/env")], ws)
"""


def test_a_builder_killed_mid_store_leaves_no_entry(tmp_path: Path) -> None:
    """kill -9 while an entry is being copied: no entry appears (a restore misses), the next store deletes
    the leftover build and writes a complete entry."""
    cache = EnvCache(tmp_path / "envs", 1 << 40)
    first = _workspace(tmp_path, "run-aaaa")
    _build_env(first, files=20000)
    child = subprocess.Popen([sys.executable, "-c", _BUILDER, str(cache.root), str(first), KEY],
                             cwd=Path(__file__).resolve().parents[2])
    builds = cache.root / ".tmp"
    deadline = time.monotonic() + 60
    try:
        while not (builds.is_dir() and any(p.is_dir() and any(p.iterdir()) for p in builds.iterdir())):
            assert child.poll() is None, "the builder finished before it could be caught mid-build"
            assert time.monotonic() < deadline, "the builder never started copying"
            time.sleep(0.001)
        os.kill(child.pid, signal.SIGSTOP)
        assert not cache.entry("acme", KEY).exists(), "the builder finished before it could be caught mid-build"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert any(builds.iterdir()), "the killed build left nothing behind to clean"
    second = _workspace(tmp_path, "run-bbbb")
    assert not cache.restore("acme", KEY, [EnvDir("env", str(second / "env"))], str(second)).hit
    assert cache.store("acme", KEY, [EnvDir("env", str(first / "env"))], str(first))
    assert list(builds.iterdir()) == []
    restored = cache.restore("acme", KEY, [EnvDir("env", str(second / "env"))], str(second))
    assert restored.hit, restored.reason
    assert tally(second / "env").files == tally(first / "env").files


def test_concurrent_stores_and_restores_of_one_key_agree(tmp_path: Path) -> None:
    """Runs of one key storing and restoring at once: one entry is kept, every restore that hits gets a
    complete environment, nothing is left in the build area."""
    import concurrent.futures

    cache = EnvCache(tmp_path / "envs", 1 << 40)
    sources = [_workspace(tmp_path, f"src-{i:04d}") for i in range(4)]
    for ws in sources:
        _build_env(ws, files=2000)
    targets = [_workspace(tmp_path, f"dst-{i:04d}") for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        stores = [pool.submit(cache.store, "acme", KEY, _dirs(ws), str(ws)) for ws in sources]
        restores = [pool.submit(cache.restore, "acme", KEY, _dirs(ws), str(ws)) for ws in targets]
        stored = [f.result() for f in stores]
        restored = [f.result() for f in restores]
    assert stored.count(True) == 1
    assert [p.name for p in (cache.root / "acme").iterdir() if p.is_dir()] == [cache.entry("acme", KEY).name]
    for ws, result in zip(targets, restored, strict=True):
        if result.hit:
            assert tally(ws / "env").files == tally(sources[0] / "env").files
            assert (ws / "env" / "lib" / "python3.11" / "site-packages" / "_project.pth").read_text() == (
                f"{ws}/tree/src\n")
        else:
            assert not (ws / "env").exists()
    assert list((cache.root / ".tmp").iterdir()) == []
    late = _workspace(tmp_path, "dst-late")
    assert cache.restore("acme", KEY, _dirs(late), str(late)).hit


def test_eviction_keeps_the_cache_within_its_bound(tmp_path: Path) -> None:
    """Over the bound, the least recently used entries go; the one just stored and recently restored stay."""
    first = _workspace(tmp_path, "run-aaaa")
    dirs = _build_env(first, files=200)
    size = sum(tally(Path(d.path)).size for d in dirs)
    cache = EnvCache(tmp_path / "envs", int(size * 2.5))
    keys = ["sha256:" + f"{i:02x}" * 32 for i in range(3)]
    assert cache.store("acme", keys[0], dirs, str(first))
    assert cache.store("acme", keys[1], dirs, str(first))
    past = time.time() - 3600
    os.utime(cache.entry("acme", keys[1]), (past, past))
    os.utime(cache.entry("acme", keys[0]), (past + 60, past + 60))
    assert cache.store("acme", keys[2], dirs, str(first))
    assert not cache.entry("acme", keys[1]).exists()
    assert cache.entry("acme", keys[0]).exists() and cache.entry("acme", keys[2]).exists()
    assert sum(info.size for _, info in cache.entries()) <= cache.max_bytes


def test_a_cache_of_size_zero_keeps_nothing(tmp_path: Path) -> None:
    """JOBFORGE_VERIFY_ENV_CACHE_MAX_MB=0: nothing is stored, and a restore says the cache is off."""
    cache = EnvCache(tmp_path / "envs", 0)
    ws = _workspace(tmp_path, "run-aaaa")
    assert not cache.store("acme", KEY, _build_env(ws), str(ws))
    assert "off" in cache.restore("acme", KEY, _dirs(ws), str(ws)).reason
    assert not (tmp_path / "envs").exists()


# -- the pack ------------------------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings, repos: Path) -> Settings:
    return settings.replace(verify_allowed_roots=[repos], verify_cache_dir=SHARED_CACHE)


@pytest.fixture(scope="module")
def pypi() -> None:
    if not _reachable(PYPI):
        pytest.skip(f"PyPI ({PYPI}) cannot be reached from here")


@pytest.fixture
def verify_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(Flag.AUTOPILOT_JOBS.value, "1")
    monkeypatch.setenv(Flag.VERIFY_PACK.value, "1")


async def _verify(rt: Runtime, repo: Path, tenant: str = "acme") -> VerifyReport:
    await ensure_tenants(rt, tenant)
    handle = await rt.client().request_job(tenant, TEMPLATE_KEY, {"repo_path": str(repo),
                                                                  "options": {"no_cache": True}}, actor="test")
    report = await rt.client().result(handle)
    assert isinstance(report, VerifyReport)
    return report


def _toxed(root: Path, name: str, marker: str, answer: int = 3) -> Path:
    """A repository tested through tox and type-checked in the uv environment; ``marker`` makes its
    dependency files (and so its install key) its own."""
    repo = write_files(root / name, {
        "tox.ini": """
            [tox]
            requires = tox>=4.20
            env_list = py

            [testenv]
            deps = pytest==8.3.3
            commands = pytest -q
        """,
        "pyproject.toml": f"# {marker}{TOXED_PYPROJECT}",
        "toxed.py": f"def answer() -> int:\n    return {answer}\n",
        "tests/test_toxed.py": "from toxed import answer\n\n\ndef test_answer() -> None:\n"
                               f"    assert answer() == {answer}\n",
    })
    git_init(repo)
    return repo


def _install(report: VerifyReport) -> Any:
    return report.step(StepName.INSTALL)


async def test_a_damaged_entry_is_rebuilt_by_the_run_that_finds_it(
        runtime: Runtime, worker: None, verify_on: None, repos: Path, settings: Settings, pypi: None) -> None:
    """A file missing from a kept environment: the run that finds it installs from scratch and passes,
    and leaves a complete entry that the next run restores."""
    marker = uuid.uuid4().hex
    # a tenant of its own: the cache directory is shared with the other verify tests and other checkouts'
    # suites, so this test's entry is the only one under its tenant
    tenant = f"damaged-{marker[:8]}"
    first = await _verify(runtime, _toxed(repos, "one", marker), tenant)
    assert first.passed, explain(first)
    [entry] = [p for p in (SHARED_CACHE / "envs" / tenant).iterdir() if p.is_dir()]
    victim = next(p for p in (entry / "env").rglob("*.py") if p.is_file())
    victim.unlink()
    second = await _verify(runtime, _toxed(repos, "two", marker), tenant)
    assert second.passed, explain(second)
    assert "restored" not in _install(second).reason
    third = await _verify(runtime, _toxed(repos, "three", marker), tenant)
    assert third.passed, explain(third)
    assert "restored from the cache" in _install(third).reason


async def test_concurrent_runs_of_one_key_both_pass_and_a_warm_run_restores_their_entry(
        runtime: Runtime, worker: None, verify_on: None, repos: Path, pypi: None) -> None:
    """Two runs of one install key at once, each building (no entry yet): both pass on their own code. A
    third run starts from the one entry they left (tox's environments and the venv) and still tests its own
    code (tox's package is rebuilt from its tree); the checkout is not written; a changed dependency file
    misses."""
    marker = uuid.uuid4().hex
    one, two = await asyncio.gather(_verify(runtime, _toxed(repos, "one", marker)),
                                    _verify(runtime, _toxed(repos, "two", marker, answer=5)))
    assert one.passed and two.passed, (explain(one), explain(two))
    repo = _toxed(repos, "three", marker, answer=6)  # same dependency files, other code
    before = listing(repo)
    third = await _verify(runtime, repo)
    assert third.passed, explain(third)
    assert "restored from the cache" in _install(third).reason, explain(third)
    assert "uv venv --clear" in _install(third).command  # the report shows the whole install
    assert "1 passed" in log_text(third, StepName.TEST)
    assert listing(repo) == before, "the checkout was written to"
    changed = await _verify(runtime, _toxed(repos, "four", uuid.uuid4().hex))
    assert changed.passed, explain(changed)
    assert "restored" not in _install(changed).reason
