"""The environment cache's pure decisions: entry names, the directories an install builds, the commands a
warm run still runs, and eviction order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activities.envcache import shareable_node
from activities.verify import base_versions
from shared.verify.envcache import (
    EntryInfo,
    EnvDir,
    entry_name,
    env_dirs,
    is_tree_dir,
    keeps_node_modules,
    to_evict,
    tree_dir,
    tree_dir_name,
    warm_commands,
)
from shared.verify.models import Plan, StepName, StepSpec, Toolchain
from shared.verify.node import npm_tree_mismatch, npm_warm_install


def _plan(commands: list[list[str]], env: dict[str, str] | None = None, env_dir: str = "/ws/env") -> Plan:
    install = StepSpec(name=StepName.INSTALL, argv=commands[0], extra=commands[1:])
    return Plan(toolchain=Toolchain.PYTHON, source="detected (python)", install=install, steps=[], stages=[],
                env_dir=env_dir,
                env=env or {})


def test_an_install_key_names_its_entry() -> None:
    """The entry is the key's digest, shortened, the same for the same key."""
    key = "sha256:" + "0123456789abcdef" * 4
    assert entry_name(key) == ("0123456789abcdef" * 4)[:40]


@given(st.text(max_size=80))
def test_anything_but_an_install_key_is_refused(text: str) -> None:
    """A string that is not a sha256 install key never becomes a path (no ``..``, no slashes)."""
    digest = text.removeprefix("sha256:")
    if len(digest) >= 32 and all(c in "0123456789abcdef" for c in digest):
        assert "/" not in entry_name(text) and "." not in entry_name(text)
    else:
        with pytest.raises(ValueError, match="not an install key"):
            entry_name(text)


def test_the_directories_an_install_builds() -> None:
    """The venv always; hatch's data directory when hatch is used; tox's and nox's when they build envs."""
    plan = _plan([["uv", "venv", "--clear", "/ws/env"], ["uv", "pip", "install", "-e", "."],
                  ["tox", "-e", "py", "--notest"], ["hatch", "env", "create", "default"]],
                 env={"HATCH_DATA_DIR": "/ws/env-hatch"})
    assert env_dirs(plan, "/ws/tree") == [EnvDir("env", "/ws/env"), EnvDir("hatch", "/ws/env-hatch"),
                                          EnvDir("tox", "/ws/tree/.tox")]
    nox = _plan([["uv", "venv", "/ws/env"], ["nox", "--install-only", "-s", "tests"]])
    assert env_dirs(nox, "/ws/tree") == [EnvDir("env", "/ws/env"), EnvDir("nox", "/ws/tree/.nox")]
    assert env_dirs(_plan([["npm", "ci"]], env_dir=""), "/ws/tree") == []


def test_a_warm_run_skips_only_the_commands_that_create_an_environment() -> None:
    """``uv venv --clear`` would wipe the restored environment; everything else runs again."""
    commands = [["uv", "venv", "--clear", "/ws/env"], ["uv", "sync", "--locked"], ["tox", "-e", "py", "--notest"]]
    assert warm_commands(_plan(commands)) == [["uv", "sync", "--locked"], ["tox", "-e", "py", "--notest"]]


def _node_plan(commands: list[list[str]], warm: list[list[str]] | None = None) -> Plan:
    install = StepSpec(name=StepName.INSTALL, argv=commands[0], extra=commands[1:])
    return Plan(toolchain=Toolchain.NODE, source="node", install=install, steps=[], stages=[], warm_install=warm)


def test_a_warm_node_run_runs_the_plans_warm_install_where_it_has_one() -> None:
    """npm's plan replaces ``npm ci`` (which deletes node_modules); pnpm and yarn run their install again,
    which finds node_modules up to date."""
    npm = _node_plan([["npm", "ci"], ["pre-commit", "install-hooks"]],
                     warm=[["npm", "ci", "--dry-run", "--ignore-scripts"], ["pre-commit", "install-hooks"]])
    assert warm_commands(npm) == [["npm", "ci", "--dry-run", "--ignore-scripts"], ["pre-commit", "install-hooks"]]
    pnpm = _node_plan([["pnpm", "install", "--frozen-lockfile"]])
    assert warm_commands(pnpm) == [["pnpm", "install", "--frozen-lockfile"]]
    assert keeps_node_modules(pnpm) and not keeps_node_modules(_plan([["uv", "sync"]]))
    assert env_dirs(pnpm, "/ws/tree") == []  # found in the tree after the install


def test_npm_ci_is_replaced_by_its_check_and_the_root_install_scripts_in_npms_order() -> None:
    """What ``npm ci`` runs after installing: the root's install scripts that exist, in npm's order, each
    without its pre/post scripts (they are in the list themselves)."""
    package = {"scripts": {"prepare": "husky", "postinstall": "node x.js", "test": "vitest", "preinstall": " "}}
    assert npm_warm_install(package) == [["npm", "ci", "--dry-run", "--ignore-scripts"],
                                         ["npm", "run", "--ignore-scripts", "postinstall"],
                                         ["npm", "run", "--ignore-scripts", "prepare"]]
    assert npm_warm_install({"scripts": "not a mapping"}) == [["npm", "ci", "--dry-run", "--ignore-scripts"]]


def test_a_tree_directory_name_round_trips_and_only_names_node_modules_inside_the_tree() -> None:
    for relative in ("node_modules", "packages/a/node_modules", "@x/y z/node_modules"):
        name = tree_dir_name(relative)
        assert "/" not in name
        assert tree_dir(name, "/ws/tree") == EnvDir(name, f"/ws/tree/{relative}")
    for hostile in ("../node_modules", "/etc/node_modules", "a/../../node_modules", "src", "", "a//node_modules",
                    ".yarn/unplugged/x/node_modules", "node_modules/a/node_modules"):
        assert tree_dir(tree_dir_name(hostile), "/ws/tree") is None
    assert tree_dir("env", "/ws/tree") is None


@given(st.text(max_size=60))
def test_a_recorded_tree_directory_never_leaves_the_tree(name: str) -> None:
    """Whatever an entry's ``meta.json`` names, a restore writes only into a ``node_modules`` under the tree."""
    found = tree_dir(name, "/ws/tree")
    if found is not None:
        relative = found.path.removeprefix("/ws/tree/")
        assert found.path.startswith("/ws/tree/") and ".." not in relative.split("/")
        assert relative.split("/")[-1] == "node_modules"


def test_the_node_modules_kept_are_outside_other_node_modules_and_hidden_directories() -> None:
    assert is_tree_dir("node_modules") and is_tree_dir("packages/a/node_modules")
    assert not is_tree_dir("node_modules/a/node_modules") and not is_tree_dir(".git/node_modules")
    assert not is_tree_dir(".yarn/unplugged/node-gyp-npm-7.0.0-9ae0ecd334/node_modules")  # yarn's own state
    assert not is_tree_dir("src")


def test_packages_files_are_shared_and_the_managers_records_copied() -> None:
    """Links: files of a package (scoped, nested, in pnpm's virtual store). Copies: what the managers and the
    steps write (records, shims, tools' caches)."""
    for shared in ("kleur/index.js", "@scope/pkg/lib/a.js", "a/node_modules/b/index.js",
                   ".pnpm/kleur@4.1.5/node_modules/kleur/index.js"):
        assert shareable_node(shared), shared
    for own in (".package-lock.json", ".modules.yaml", ".yarn-integrity", ".pnpm/lock.yaml", ".bin/tsc",
                ".cache/babel/x.json", "kleur/.cache/x", "a/node_modules/.bin/x", ".vite/deps/a.js"):
        assert not shareable_node(own), own


LOCK = {"packages": {"": {"name": "x"}, "node_modules/a": {"version": "1.0.0", "integrity": "sha512-a"},
                     "node_modules/b": {"version": "2.0.0", "optional": True},
                     "node_modules/w": {"link": True, "resolved": "packages/w"}, "packages/w": {"version": "0.1.0"}}}


def test_an_installed_tree_matches_its_lockfile_or_says_why_not() -> None:
    hidden = {"packages": {"node_modules/a": {"version": "1.0.0", "integrity": "sha512-a"},
                           "node_modules/w": {"link": True, "resolved": "packages/w"}}}
    assert npm_tree_mismatch(LOCK, hidden) == ""  # b is optional (another platform's): absent is fine
    older = {"packages": {**hidden["packages"], "node_modules/a": {"version": "0.9.0"}}}
    assert "version" in npm_tree_mismatch(LOCK, older)
    tampered = {"packages": {**hidden["packages"], "node_modules/a": {"version": "1.0.0", "integrity": "sha512-z"}}}
    assert "integrity" in npm_tree_mismatch(LOCK, tampered)
    assert "not installed" in npm_tree_mismatch(LOCK, {"packages": {"node_modules/w": {"link": True}}})
    extra = {"packages": {**hidden["packages"], "node_modules/evil": {"version": "1.0.0"}}}
    assert "not locked" in npm_tree_mismatch(LOCK, extra)
    assert "no packages" in npm_tree_mismatch({"lockfileVersion": 1}, hidden)


def test_eviction_goes_least_recently_used_first_and_keeps_the_new_entry() -> None:
    """Oldest first until the rest fit; the entry just stored goes last."""
    entries = [EntryInfo("a", 40, 1.0), EntryInfo("b", 40, 3.0), EntryInfo("c", 40, 2.0), EntryInfo("new", 40, 0.5)]
    assert to_evict(entries, 100, keep="new") == ["a", "c"]
    assert to_evict(entries, 160, keep="new") == []
    assert to_evict(entries, 30, keep="new") == ["a", "c", "b", "new"]
    assert to_evict(entries, 100) == ["new", "a"]


@given(st.lists(st.tuples(st.integers(0, 1000), st.floats(0, 1e9)), max_size=20), st.integers(0, 5000))
def test_what_eviction_leaves_fits_the_bound(sizes: list[tuple[int, float]], bound: int) -> None:
    """Whatever the entries, what stays fits, and nothing is evicted that need not be."""
    entries = [EntryInfo(f"e{i}", size, used) for i, (size, used) in enumerate(sizes)]
    gone = to_evict(entries, bound)
    left = sum(e.size for e in entries if e.name not in gone)
    assert left <= bound
    if gone:
        last = next(e for e in entries if e.name == gone[-1])
        assert left + last.size > bound


def test_the_workers_npm_is_part_of_an_npm_installs_key() -> None:
    """Another npm may lay node_modules out differently: its version is among the versions the install key
    hashes when the install runs the worker's own npm, and absent where another manager installs."""
    npm = _node_plan([["npm", "ci"]]).model_copy(update={"package_manager": "npm"})
    assert base_versions(npm, "20.20.2", "", {}, "11.19.1") == {"npm": "11.19.1", "node": "20.20.2"}
    assert base_versions(npm, "20.20.2", "", {}, "")["npm"] == "missing"
    pnpm = _node_plan([["pnpm", "install"]]).model_copy(update={"package_manager": "pnpm@9.12.3"})
    assert "npm" not in base_versions(pnpm, "20.20.2", "", {}, "11.19.1")
