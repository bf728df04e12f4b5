"""The environment cache's decisions (pure): what an install builds, what a warm run still runs, what to evict.

An install builds its environments in the run's own workspace (the uv venv, hatch's data directory) and
tree (tox's and nox's environments). After an install that passed, ``activities.envcache`` keeps a copy of
them under the install key (lock and dependency files, install commands, tool and interpreter versions);
a later run with the same key starts from that copy, moved to its own paths, and runs the install commands
again except the ones that create an environment from nothing: on a complete environment they only put
the run's own code in place (the editable project, tox's package), so what the steps see is what a full
install would have built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.verify.models import Plan

#: bumped when the layout of an entry changes: older entries are then misses, rebuilt and replaced
FORMAT = 1
#: the environments a run builds inside its tree, by the runner whose install command builds them
TREE_ENV_DIRS = {"tox": ".tox", "nox": ".nox"}


@dataclass(frozen=True)
class EnvDir:
    """One directory an install builds: ``name`` inside a cache entry, ``path`` in the run."""

    name: str
    path: str


@dataclass(frozen=True)
class EntryInfo:
    """A cache entry as eviction sees it."""

    name: str
    size: int
    last_used: float


def entry_name(install_key: str) -> str:
    """The directory name of an install key's entry (its hex digest, shortened)."""
    digest = install_key.removeprefix("sha256:")
    if len(digest) < 32 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not an install key: {install_key!r}")
    return digest[:40]


def env_dirs(plan: Plan, tree: str) -> list[EnvDir]:
    """The directories ``plan``'s install builds (none when it builds no Python environment)."""
    if not plan.env_dir or not plan.install.runnable:
        return []
    out = [EnvDir("env", plan.env_dir)]
    hatch = plan.env.get("HATCH_DATA_DIR", "")
    if hatch:
        out.append(EnvDir("hatch", hatch))
    heads = {argv[0] for argv in plan.install.commands() if argv}
    out += [EnvDir(runner, f"{tree}/{directory}") for runner, directory in TREE_ENV_DIRS.items() if runner in heads]
    return out


def creates_environment(argv: Sequence[str]) -> bool:
    """Whether a command builds an environment from nothing (``uv venv --clear``), wiping what is there."""
    return len(argv) > 1 and argv[0] == "uv" and argv[1] == "venv"


def warm_commands(commands: Sequence[Sequence[str]]) -> list[list[str]]:
    """The install commands a run restored from the cache still runs: all but those creating an environment."""
    return [list(argv) for argv in commands if not creates_environment(argv)]


def to_evict(entries: Sequence[EntryInfo], max_bytes: int, keep: str = "") -> list[str]:
    """Entries to delete, least recently used first, until the rest fit in ``max_bytes``; ``keep`` (the
    entry just written) stays unless it alone is over the bound."""
    total = sum(e.size for e in entries)
    out: list[str] = []
    for entry in sorted(entries, key=lambda e: (e.name == keep, e.last_used, e.name)):
        if total <= max_bytes:
            break
        out.append(entry.name)
        total -= entry.size
    return out
