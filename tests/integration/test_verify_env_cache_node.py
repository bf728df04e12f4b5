"""The environment cache for Node repositories: the ``node_modules`` an install writes into the run's tree
are kept per install key and restored by warm runs.

The first half drives ``activities.envcache.EnvCache`` on generated trees (no network): the tree's
``node_modules`` (the root's and a workspace package's) come back at the restoring run's paths, packages'
files linked and the rest copied and relocated, and a file written in place through a link (which the
entry shares with every run it was restored into) makes the entry a miss. The second half runs the pack
against the npm registry with npm, pnpm, yarn classic, yarn berry and bun: a warm run restores and gives the
same verdict as the cold one (npm skipping ``npm ci``, which would delete node_modules, and saying so), a
changed lockfile misses, a damaged entry is rebuilt, and the checkout is never written.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from activities.envcache import EnvCache
from activities.toolchains import Toolchains, npm_arch
from activities.verify import node_modules_dirs
from shared.verify.envcache import EnvDir, tree_dir_name
from shared.verify.models import StepName, StepStatus, ToolRequest, VerifyReport
from tests.integration.test_verify_provisioning import (
    SHARED_CACHE,
    explain,
    listing,
    log_text,
    npm_registry,
    settings,
    verify,
    verify_on,
)
from tests.support.verify_repos import git_init, write_files
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

__all__ = ["npm_registry", "settings", "verify_on"]  # fixtures, used by name

KEY = "sha256:" + "ef" * 32


def _node_tree(ws: Path) -> Path:
    """A tree as a pnpm install of a workspace leaves it: packages' files, pnpm's records, a ``.bin`` shim and a
    package file an install script wrote the workspace's path into, relative symlinks."""
    tree = ws / "tree"
    pkg = tree / "node_modules" / ".pnpm" / "kleur@4.1.5" / "node_modules" / "kleur"
    pkg.mkdir(parents=True)
    (pkg / "index.js").write_text("module.exports = 'kleur';\n")
    (pkg / "package.json").write_text('{"name": "kleur", "version": "4.1.5"}\n')
    (tree / "node_modules" / "kleur").symlink_to(".pnpm/kleur@4.1.5/node_modules/kleur")
    (tree / "node_modules" / ".modules.yaml").write_text(f"virtualStoreDir: {tree}/node_modules/.pnpm\n")
    (tree / "node_modules" / ".bin").mkdir()
    (tree / "node_modules" / ".bin" / "kleur").write_text(f'#!/bin/sh\nexec node "{tree}/node_modules/kleur"\n')
    built = tree / "node_modules" / "native"
    built.mkdir()
    (built / "config.json").write_text(json.dumps({"prefix": str(tree)}) + "\n")  # a postinstall's record
    (built / "binding.js").write_text("module.exports = 1;\n")
    member = tree / "packages" / "a" / "node_modules"
    member.mkdir(parents=True)
    (member / "kleur").symlink_to("../../../node_modules/.pnpm/kleur@4.1.5/node_modules/kleur")
    unplugged = tree / ".yarn" / "unplugged" / "native-npm-1.0.0" / "node_modules"  # yarn's state: not kept
    unplugged.mkdir(parents=True)
    return tree


def test_node_modules_come_back_at_the_restoring_runs_paths(tmp_path: Path) -> None:
    """The root's and a workspace package's node_modules are found after the install, stored, and restored
    into another run's tree: packages' files are links into the entry, records and shims are copies naming
    the new tree, a package file that held the old path is a relocated copy, relative symlinks stay."""
    cache = EnvCache(tmp_path / "envs", 1 << 30)
    first = tmp_path / "runs" / "acme" / "run-aaaa"
    tree = _node_tree(first)
    dirs = node_modules_dirs(tree)
    assert [d.name for d in dirs] == sorted([tree_dir_name("node_modules"), tree_dir_name("packages/a/node_modules")])
    assert cache.store("acme", KEY, dirs, str(first))
    second = tmp_path / "runs" / "acme" / "run-bbbbbb"  # another length: text is rewritten, not patched
    (second / "tree" / "packages" / "a").mkdir(parents=True)
    restored = cache.restore("acme", KEY, [], str(second), tree=str(second / "tree"))
    assert restored.hit, restored.reason
    new = second / "tree" / "node_modules"
    linked = new / ".pnpm" / "kleur@4.1.5" / "node_modules" / "kleur" / "index.js"
    assert linked.stat().st_nlink > 1 and linked.read_text() == "module.exports = 'kleur';\n"
    assert (new / "kleur" / "index.js").read_text() == "module.exports = 'kleur';\n"
    for copy in (new / ".modules.yaml", new / ".bin" / "kleur", new / "native" / "config.json"):
        assert copy.stat().st_nlink == 1, copy
        assert str(second / "tree") in copy.read_text() and str(first) not in copy.read_text()
    assert (new / "native" / "binding.js").stat().st_nlink > 1
    member = second / "tree" / "packages" / "a" / "node_modules" / "kleur"
    assert member.is_symlink() and (member / "index.js").is_file()
    assert str(first) in (cache.entry("acme", KEY) / tree_dir_name("node_modules") / ".modules.yaml").read_text()


def test_a_file_written_in_place_through_a_link_makes_the_entry_a_miss(tmp_path: Path) -> None:
    """A step that writes into a package's file in place writes the entry's file too (they are one file):
    the same size, but a new modification time, so the next restore finds the entry changed, deletes it and
    rebuilds, and never hands that file to another run."""
    cache = EnvCache(tmp_path / "envs", 1 << 30)
    first = tmp_path / "runs" / "acme" / "run-aaaa"
    tree = _node_tree(first)
    assert cache.store("acme", KEY, node_modules_dirs(tree), str(first))
    second = tmp_path / "runs" / "acme" / "run-bbbb"
    assert cache.restore("acme", KEY, [], str(second), tree=str(second / "tree")).hit
    victim = second / "tree" / "node_modules" / "native" / "binding.js"
    before = victim.stat().st_mtime_ns
    with victim.open("r+") as handle:  # in place, same length
        handle.write("module.exports = 2;\n")
    # the file system's clock ticks every few milliseconds, and this write follows the store within one: the
    # time moves on as it does for a step's write, seconds or minutes after the install that stored the entry
    if victim.stat().st_mtime_ns == before:
        os.utime(victim, ns=(before + 1_000_000_000, before + 1_000_000_000))
    third = tmp_path / "runs" / "acme" / "run-cccc"
    missed = cache.restore("acme", KEY, [], str(third), tree=str(third / "tree"))
    assert not missed.hit and "changed" in missed.reason, missed.reason
    assert not cache.entry("acme", KEY).exists() and not (third / "tree" / "node_modules").exists()


def test_a_restore_that_the_check_refuses_is_a_miss_and_leaves_nothing(tmp_path: Path) -> None:
    """The run's check (npm: node_modules against the lockfile) refusing the restored directories: they are
    removed again and the entry deleted."""
    cache = EnvCache(tmp_path / "envs", 1 << 30)
    first = tmp_path / "runs" / "acme" / "run-aaaa"
    assert cache.store("acme", KEY, node_modules_dirs(_node_tree(first)), str(first))
    second = tmp_path / "runs" / "acme" / "run-bbbb"
    refused = cache.restore("acme", KEY, [], str(second), tree=str(second / "tree"), check=lambda: "kleur is old")
    assert not refused.hit and "kleur is old" in refused.reason
    assert not (second / "tree" / "node_modules").exists() and not cache.entry("acme", KEY).exists()


def test_a_python_entry_is_not_restored_into_a_tree(tmp_path: Path) -> None:
    """An entry's directories that name no node_modules under the tree (a damaged or foreign ``meta.json``)
    are never written anywhere: the entry is a miss."""
    cache = EnvCache(tmp_path / "envs", 1 << 30)
    first = tmp_path / "runs" / "acme" / "run-aaaa"
    env = first / "env"
    env.mkdir(parents=True)
    (env / "x").write_text("x\n")
    assert cache.store("acme", KEY, [EnvDir("env", str(env)), EnvDir("tree-..%2Fescape", str(env))], str(first))
    second = tmp_path / "runs" / "acme" / "run-bbbb"
    missed = cache.restore("acme", KEY, [], str(second), tree=str(second / "tree"))
    assert not missed.hit
    assert not (second / "escape").exists() and not (second / "env").exists()


# -- the pack ------------------------------------------------------------------------------------------

MANAGERS: dict[str, dict[str, Any]] = {
    "npm": {"package": {}, "files": {}, "lock": "package-lock.json", "install": "npm ci"},
    "pnpm": {"package": {"packageManager": "pnpm@9.12.3"}, "files": {}, "lock": "pnpm-lock.yaml",
             "install": "pnpm install --frozen-lockfile", "tool": ("pnpm", "9.12.3")},
    "yarn": {"package": {"packageManager": "yarn@1.22.22"}, "files": {}, "lock": "yarn.lock",
             "install": "yarn install --frozen-lockfile", "tool": ("yarn", "1.22.22")},
    "berry": {"package": {"packageManager": "yarn@4.5.0"}, "files": {".yarnrc.yml": "nodeLinker: node-modules\n"},
              "lock": "yarn.lock", "install": "yarn install --immutable", "tool": ("@yarnpkg/cli-dist", "4.5.0")},
    "bun": {"package": {"packageManager": "bun@1.2.23"}, "files": {}, "lock": "bun.lock",
            "install": "bun install --frozen-lockfile", "tool": (f"@oven/bun-linux-{npm_arch()}", "1.2.23")},
}


async def _lockfile(manager: str, dependencies: dict[str, str], marker: str) -> tuple[dict[str, Any], dict[str, str]]:
    """package.json and the files beside it, with the lockfile made as a developer makes it (the manager at the
    declared version, provisioned by JobForge's own code path), outside any repository under test."""
    spec = MANAGERS[manager]
    package = {"name": f"cache-{manager}", "version": "1.0.0", "private": True, "description": marker,
               "dependencies": dependencies, **spec["package"],
               "scripts": {"prepare": "node -e \"require('fs').writeFileSync('prepared.txt', 'yes')\"",
                           "test": "node -e \"require('is-number'); require('./answer.js')\""}}
    scratch = SHARED_CACHE / "test-lockfiles" / uuid.uuid4().hex
    write_files(scratch, {"package.json": json.dumps(package, indent=2) + "\n", **spec["files"]})
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # registry settings (CA bundle, proxy) included
    env.update({"HOME": str(scratch), "npm_config_cache": str(SHARED_CACHE / "test-npm"),
                "YARN_ENABLE_TELEMETRY": "0", "YARN_GLOBAL_FOLDER": str(SHARED_CACHE / "test-yarn"),
                "YARN_ENABLE_GLOBAL_CACHE": "true", "YARN_CACHE_FOLDER": str(SHARED_CACHE / "test-yarn1"),
                "npm_config_store_dir": str(SHARED_CACHE / "test-pnpm-store"),
                "npm_config_manage_package_manager_versions": "false",
                "BUN_INSTALL_CACHE_DIR": str(SHARED_CACHE / "test-bun")})
    if "tool" in spec:
        name, version = spec["tool"]
        [tool] = await Toolchains(SHARED_CACHE / "toolchains").provision(
            [ToolRequest(kind="npm", name=name, version=version, why="test")], "", lambda _: None)
        env["PATH"] = f"{tool.bin_dir}:{env['PATH']}"
    argv = {"npm": ["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"],
            "pnpm": ["pnpm", "install", "--lockfile-only"], "yarn": ["yarn", "install", "--ignore-scripts"],
            "berry": ["yarn", "install", "--mode=update-lockfile"],
            "bun": ["bun", "install", "--lockfile-only"]}[manager]
    done = await asyncio.to_thread(subprocess.run, argv, cwd=scratch, env=env, capture_output=True, text=True,
                                   timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return package, {spec["lock"]: (scratch / spec["lock"]).read_text(), **spec["files"]}


def _repo(root: Path, name: str, package: dict[str, Any], files: dict[str, str], answer: str = "42") -> Path:
    repo = write_files(root / name, {"package.json": json.dumps(package, indent=2) + "\n", **files,
                                     "answer.js": f"if ({answer} !== 42) throw new Error('wrong answer');\n",
                                     ".gitignore": "node_modules/\n.yarn/\n.pnp.*\nprepared.txt\n"})
    git_init(repo)
    return repo


def _install(report: VerifyReport) -> Any:
    return report.step(StepName.INSTALL)


def _statuses(report: VerifyReport) -> dict[str, str]:
    return {s.name.value: s.status.value for s in report.steps if s.name is not StepName.INSTALL}


@pytest.mark.parametrize("manager", sorted(MANAGERS))
async def test_a_warm_run_restores_node_modules_and_gives_the_cold_runs_verdict(
        runtime: Runtime, worker: None, verify_on: None, repos: Path, npm_registry: None, manager: str) -> None:
    """The second run of a lockfile starts from the first's node_modules and its steps see what a full install
    gave (the same verdict and step outcomes; a broken copy still fails); the checkout is not written."""
    package, files = await _lockfile(manager, {"is-number": "7.0.0"}, uuid.uuid4().hex)
    cold = await verify(runtime, {"repo_path": str(_repo(repos, "cold", package, files)), "pack": "full"})
    assert cold.passed, explain(cold)
    assert "restored" not in _install(cold).reason and _install(cold).command == MANAGERS[manager]["install"]
    repo = _repo(repos, "warm", package, files)
    before = listing(repo)
    warm = await verify(runtime, {"repo_path": str(repo), "pack": "full"})
    assert warm.passed, explain(warm)
    assert "restored from the cache (node_modules" in _install(warm).reason, explain(warm)
    assert _install(warm).command == MANAGERS[manager]["install"]  # the report shows the whole install
    assert _statuses(warm) == _statuses(cold)
    assert listing(repo) == before, "the checkout was written to"
    if manager == "npm":
        text = log_text(warm, StepName.INSTALL)
        assert "`npm ci`" in text and "$ npm ci --dry-run --ignore-scripts" in text, text
        assert "$ npm run --ignore-scripts prepare" in text, text
        assert any("`npm ci` (which deletes node_modules) is skipped" in n for n in warm.notes), warm.notes
    broken = await verify(runtime, {"repo_path": str(_repo(repos, "broken", package, files, answer="41")),
                                    "pack": "full"})
    assert "restored from the cache" in _install(broken).reason, explain(broken)
    assert broken.step(StepName.TEST).status is StepStatus.FAILED and not broken.passed, explain(broken)


async def test_npm_a_changed_lockfile_misses_and_a_damaged_entry_is_rebuilt(
        runtime: Runtime, worker: None, verify_on: None, repos: Path, npm_registry: None) -> None:
    """Another lockfile is another install key: ``npm ci`` runs. A package file of the entry changed in place:
    the run that finds it installs from scratch with ``npm ci`` and passes, and the next run restores again."""
    marker = uuid.uuid4().hex
    package, files = await _lockfile("npm", {"is-number": "7.0.0"}, marker)
    first = await verify(runtime, {"repo_path": str(_repo(repos, "one", package, files))})
    assert first.passed, explain(first)
    entries = SHARED_CACHE / "envs" / "acme"
    entry = max((p for p in entries.iterdir() if (p / "meta.json").is_file()), key=lambda p: p.stat().st_mtime)
    other_package, other_files = await _lockfile("npm", {"is-number": "7.0.0", "kleur": "4.1.5"}, marker)
    changed = await verify(runtime, {"repo_path": str(_repo(repos, "two", other_package, other_files))})
    assert changed.passed, explain(changed)
    assert "restored" not in _install(changed).reason
    assert "$ npm ci\n" in log_text(changed, StepName.INSTALL)
    victim = entry / tree_dir_name("node_modules") / "is-number" / "index.js"
    victim.write_text(victim.read_text() + "\n// damaged\n")
    damaged = await verify(runtime, {"repo_path": str(_repo(repos, "three", package, files))})
    assert damaged.passed, explain(damaged)
    assert "restored" not in _install(damaged).reason
    assert "$ npm ci\n" in log_text(damaged, StepName.INSTALL)
    again = await verify(runtime, {"repo_path": str(_repo(repos, "four", package, files))})
    assert again.passed, explain(again)
    assert "restored from the cache" in _install(again).reason, explain(again)
