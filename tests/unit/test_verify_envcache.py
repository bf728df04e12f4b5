"""The environment cache's pure decisions: entry names, the directories an install builds, the commands a
warm run still runs, and eviction order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.verify.envcache import EntryInfo, EnvDir, entry_name, env_dirs, to_evict, warm_commands
from shared.verify.models import Plan, StepName, StepSpec, Toolchain


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
    assert warm_commands(commands) == [["uv", "sync", "--locked"], ["tox", "-e", "py", "--notest"]]


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
