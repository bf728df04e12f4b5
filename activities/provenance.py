"""Provenance capture: real git, lockfiles, tool versions and the runtime, at the start of a run."""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform
import socket
import subprocess
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity

import shared
from shared.flags import Flag, FlagReader
from shared.replay.provenance import (
    LOCKFILES,
    CodeFingerprint,
    Provenance,
    env_fingerprint,
    input_snapshot,
)
from shared.store.replay import ReplayStore

GIT_TIMEOUT = 20.0
JOBFORGE_SOURCE = Path(shared.__file__).resolve().parents[1]


class CaptureProvenanceInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str
    template_key: str
    run_id: str
    inputs: dict[str, object] = Field(default_factory=dict)
    #: the repository the run works on, when it has one (e.g. the verify pack's repo_path)
    code_path: str | None = None


class CaptureProvenanceResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    captured: bool
    reason: str = ""
    input_hash: str = ""


def _run(args: list[str]) -> tuple[int, bytes]:
    try:
        done = subprocess.run(args, capture_output=True, stdin=subprocess.DEVNULL, timeout=GIT_TIMEOUT,
                              check=False, env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        return 124, b""
    return done.returncode, done.stdout


def _lockfiles(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    candidates = [root / name for name in LOCKFILES] + sorted(root.glob("requirements*.txt"))
    for path in candidates:
        if path.is_file():
            found[path.name] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def code_fingerprint(path: Path) -> CodeFingerprint:
    """HEAD, branch, dirty flag and uncommitted-diff hash of the git checkout at ``path``."""
    if not path.is_dir():
        return CodeFingerprint(path=str(path), is_repo=False, reason="not a directory")
    try:
        code, top = _run(["git", "-C", str(path), "rev-parse", "--show-toplevel"])
    except FileNotFoundError:
        return CodeFingerprint(path=str(path), is_repo=False, reason="git is not installed",
                               lockfiles=_lockfiles(path))
    if code != 0:
        return CodeFingerprint(path=str(path), is_repo=False, reason="not a git repository",
                               lockfiles=_lockfiles(path))
    root = Path(top.decode().strip())
    code, head = _run(["git", "-C", str(root), "rev-parse", "HEAD"])
    if code != 0:
        return CodeFingerprint(path=str(path), is_repo=True, reason="the repository has no commits",
                               lockfiles=_lockfiles(root))
    _, branch = _run(["git", "-C", str(root), "rev-parse", "--abbrev-ref", "HEAD"])
    _, status = _run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"])
    _, diff = _run(["git", "-C", str(root), "diff", "HEAD", "--binary"])
    _, untracked = _run(["git", "-C", str(root), "ls-files", "--others", "--exclude-standard", "-z"])
    digest = hashlib.sha256(diff)
    for name in sorted(n for n in untracked.decode(errors="replace").split("\0") if n):
        file = root / name
        digest.update(name.encode() + b"\0")
        if file.is_file() and not file.is_symlink():
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return CodeFingerprint(path=str(path), is_repo=True, head_sha=head.decode().strip(),
                           branch=branch.decode().strip() or None, dirty=bool(status.strip()),
                           diff_sha256=digest.hexdigest(), lockfiles=_lockfiles(root))


_TOOLS: dict[str, list[str]] = {"git": ["git", "--version"], "node": ["node", "--version"],
                                "npm": ["npm", "--version"], "bwrap": ["bwrap", "--version"]}
_tool_cache: tuple[float, dict[str, str]] | None = None


def tool_versions() -> dict[str, str]:
    """Versions of the tools runs use (cached for a minute per process)."""
    global _tool_cache
    if _tool_cache and time.monotonic() - _tool_cache[0] < 60:
        return _tool_cache[1]
    import pydantic
    import temporalio

    versions = {"python": platform.python_version(), "temporalio": temporalio.__version__,
                "pydantic": pydantic.VERSION}
    for name, argv in _TOOLS.items():
        try:
            code, out = _run(argv)
        except FileNotFoundError:
            continue
        if code == 0:
            versions[name] = out.decode(errors="replace").strip().splitlines()[0][:100]
    _tool_cache = (time.monotonic(), versions)
    return versions


class ProvenanceActivities:
    def __init__(self, replay: ReplayStore, flags: FlagReader) -> None:
        self.replay = replay
        self.flags = flags

    @activity.defn(name="jobforge.capture_provenance")
    async def capture_provenance(self, req: CaptureProvenanceInput) -> CaptureProvenanceResult:
        """Fingerprint the run and store its provenance (when REPLAY_PACK_ENABLED is on)."""
        snapshot = input_snapshot(req.inputs)
        if not await self.flags.is_enabled(Flag.REPLAY_PACK):
            return CaptureProvenanceResult(captured=False, reason="REPLAY_PACK_ENABLED is off",
                                           input_hash=snapshot.input_hash)
        subject = await asyncio.to_thread(code_fingerprint, Path(req.code_path)) if req.code_path else None
        provenance = Provenance(
            run_id=req.run_id, tenant_id=req.tenant_id, template_key=req.template_key,
            jobforge_version=shared.__version__,
            worker_identity=f"jobforge-worker@{socket.gethostname()}:{os.getpid()}",
            python=platform.python_version(), os=f"{platform.system()} {platform.release()}",
            arch=platform.machine(), tool_versions=await asyncio.to_thread(tool_versions),
            jobforge_code=await asyncio.to_thread(code_fingerprint, JOBFORGE_SOURCE), subject_code=subject,
            environment=env_fingerprint(os.environ), input_snapshot=snapshot,
        )
        await self.replay.save_provenance(req.run_id, req.tenant_id, snapshot.input_hash,
                                          provenance.model_dump(mode="json"))
        return CaptureProvenanceResult(captured=True, input_hash=snapshot.input_hash)
