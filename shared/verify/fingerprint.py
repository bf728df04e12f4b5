"""The code fingerprint a verdict is cached under (pure).

fingerprint = sha256 of the canonical JSON of: the git tree of HEAD, the hash of the uncommitted
diff and of untracked files, the dependency/lock files' hashes, the commands of every step (with the
run's workspace path written as ``$WORKSPACE``), the pack and selection, and the tool versions.
The same code verified by the same commands with the same tools gives the same fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.canonical import canonical_json
from shared.verify.models import Plan, StepName

#: never part of the code: caches, environments and build outputs that verify steps themselves write
IGNORED_DIRS = frozenset({
    ".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", ".tox", ".nox", "build", "dist", ".eggs", ".next", ".turbo", "coverage", ".coverage",
    ".jobforge-verify",
})


def ignored(relative_path: str) -> bool:
    """Whether a repository-relative path lies in (or is) an ignored directory or an egg-info."""
    parts = relative_path.split("/")
    return any(part in IGNORED_DIRS or part.endswith(".egg-info") for part in parts)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_digest(entries: Iterable[tuple[str, str]]) -> str:
    """One hash over ``(path, sha256 of content)`` pairs, independent of their order."""
    return "sha256:" + sha256_hex(canonical_json(sorted(entries)))


@dataclass(frozen=True)
class CodeState:
    """The code under verification: a git checkout (tree + uncommitted changes) or a plain directory."""

    kind: str  # "git" | "files"
    tree: str = ""
    head: str = ""
    diff: str = ""
    untracked: str = ""
    files: str = ""

    def as_dict(self) -> dict[str, str]:
        if self.kind == "git":
            return {"kind": "git", "tree": self.tree, "diff": self.diff, "untracked": self.untracked}
        return {"kind": "files", "files": self.files}


def normalise_command(argv: Iterable[str], workspace: str) -> str:
    """A step command as hashed: the per-run workspace path replaced by ``$WORKSPACE``."""
    return "\x1f".join(arg.replace(workspace, "$WORKSPACE") if workspace else arg for arg in argv)


def plan_commands(plan: Plan, workspace: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in (StepName.INSTALL, *(s.name for s in plan.steps)):
        spec = plan.step(name)
        out[name.value] = [normalise_command(argv, workspace) for argv in spec.commands()]
    return out


def fingerprint_parts(code: CodeState, lockfiles: Mapping[str, str], plan: Plan, workspace: str,
                      pack: str, selected: Iterable[str] | None) -> dict[str, Any]:
    """Everything but the tool versions (they may only be known after ``install``)."""
    return {
        "code": code.as_dict(),
        "lockfiles": dict(sorted(lockfiles.items())),
        "commands": plan_commands(plan, workspace),
        "stages": [[n.value for n in group] for group in plan.stages],
        "toolchain": plan.toolchain.value,
        "pack": pack,
        "selected": sorted(selected) if selected is not None else None,
    }


def compose(parts: Mapping[str, Any], tool_versions: Mapping[str, str]) -> str:
    """``sha256:<hex>`` of the parts plus the tool versions."""
    return "sha256:" + sha256_hex(canonical_json({**parts, "tools": dict(sorted(tool_versions.items()))}))
