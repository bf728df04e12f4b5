"""The environment cache's decisions (pure): what an install builds, what a warm run still runs, what to evict.

An install builds its environments in the run's own workspace (the uv venv, hatch's data directory) and
tree (tox's and nox's environments). After an install that passed, ``activities.envcache`` keeps a copy of
them under the install key (lock and dependency files, install commands, tool and interpreter versions);
a later run with the same key starts from that copy, moved to its own paths, and runs the install commands
again except the ones that create an environment from nothing: on a complete environment they only put
the run's own code in place (the editable project, tox's package), so what the steps see is what a full
install would have built.

A Node repository's install writes ``node_modules`` into the run's tree (and into each workspace package of
a monorepo): those directories are kept the same way, named in the entry by their place in the tree
(:func:`tree_dir_name`), and found after the install (:func:`is_tree_dir`), since which packages get one is the
package manager's decision. ``npm ci`` deletes ``node_modules`` before it installs, so a run whose restored
``node_modules`` matches the lockfile runs ``Plan.warm_install`` instead (``npm ci --dry-run --ignore-scripts``
and the root package's lifecycle scripts, which ``npm ci`` runs after installing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from shared.verify.models import Plan, Toolchain

#: bumped when the layout of an entry changes: older entries are then misses, rebuilt and replaced
FORMAT = 2
#: the prefix of an entry directory holding a directory of the run's tree (``node_modules``)
TREE_PREFIX = "tree-"
#: the directories a Node install writes into the tree that the cache keeps
NODE_DIR = "node_modules"
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


def keeps_node_modules(plan: Plan) -> bool:
    """Whether ``plan``'s install writes ``node_modules`` directories into the run's tree for the cache to keep."""
    return plan.toolchain is Toolchain.NODE and plan.install.runnable


def tree_dir_name(relative: str) -> str:
    """The entry directory of the tree's directory at ``relative`` (``node_modules``, ``packages/a/node_modules``)."""
    return TREE_PREFIX + quote(relative, safe="")


def tree_dir(name: str, tree: str) -> EnvDir | None:
    """The run's directory an entry directory ``name`` is restored to, or None when ``name`` names none (no
    tree directory, a path leaving the tree, not a ``node_modules`` the cache keeps: see :func:`is_tree_dir`)."""
    if not name.startswith(TREE_PREFIX):
        return None
    relative = unquote(name.removeprefix(TREE_PREFIX))
    parts = relative.split("/")
    if not relative or relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return None
    if not is_tree_dir(relative):
        return None
    return EnvDir(name, f"{tree}/{relative}")


def is_tree_dir(relative: str) -> bool:
    """Whether a directory found in the tree after a Node install is one the cache keeps: a ``node_modules``
    outside another ``node_modules`` and outside hidden directories (``.git``; ``.yarn``, where Plug'n'Play
    unpacks the packages it cannot serve from zip files, tracked by yarn's own install state)."""
    parts = relative.split("/")
    return parts[-1] == NODE_DIR and NODE_DIR not in parts[:-1] and not any(p.startswith(".") for p in parts)


def shares_files(name: str) -> bool:
    """Whether an entry directory's files that hold the building run's path are kept as copies (relocated on
    restore) rather than links: ``node_modules``, where a package's install script may have written that path
    into any file."""
    return name.startswith(TREE_PREFIX)


def creates_environment(argv: Sequence[str]) -> bool:
    """Whether a command builds an environment from nothing (``uv venv --clear``), wiping what is there."""
    return len(argv) > 1 and argv[0] == "uv" and argv[1] == "venv"


def warm_commands(plan: Plan) -> list[list[str]]:
    """The install commands a run restored from the cache still runs: ``plan.warm_install`` where the plan has
    one (npm, whose ``npm ci`` would delete the restored ``node_modules``), else all but those creating an
    environment."""
    if plan.warm_install is not None:
        return [list(argv) for argv in plan.warm_install]
    return [list(argv) for argv in plan.install.commands() if not creates_environment(argv)]


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
