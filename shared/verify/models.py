"""Typed inputs, plans, results and the report of ``autopilot.readylayer.verify_pack``.

Every model that crosses a Temporal boundary is frozen and gives each new field a default, so
histories recorded by older code still decode.
"""

from __future__ import annotations

import enum
import re
import shlex
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TEMPLATE_KEY = "autopilot.readylayer.verify_pack"

_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}$")
_URL_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
_SCP_URL = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._/~-]+$")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Pack(enum.StrEnum):
    FAST = "fast"
    FULL = "full"


class StepName(enum.StrEnum):
    INSTALL = "install"
    LINT = "lint"
    TYPECHECK = "typecheck"
    BUILD = "build"
    TEST = "test"


CHECK_STEPS: tuple[StepName, ...] = (StepName.LINT, StepName.TYPECHECK, StepName.BUILD, StepName.TEST)
PACK_STEPS: dict[Pack, tuple[StepName, ...]] = {
    Pack.FAST: (StepName.LINT, StepName.TYPECHECK, StepName.BUILD),
    Pack.FULL: CHECK_STEPS,
}


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    #: the step could not be judged: the worker lacks a toolchain, a registry is unreachable, the install
    #: timed out — JobForge's fault or its environment's, never the repository's
    ERROR = "error"

    @property
    def is_failure(self) -> bool:
        return self in (StepStatus.FAILED, StepStatus.TIMED_OUT, StepStatus.CANCELLED)

    @property
    def is_error(self) -> bool:
        return self is StepStatus.ERROR


class Verdict(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    #: every step was skipped: nothing was verified, which is not a pass
    NOTHING_TO_VERIFY = "nothing_to_verify"
    #: the repository could not be judged (a missing toolchain, a registry outage, an install timeout)
    ERROR = "error"


class VerifyOptions(Frozen):
    #: per step; None = the repository's config, else 15 minutes
    timeout_minutes: float | None = Field(default=None, gt=0, le=240)
    #: run only these steps (the others are reported skipped); None = the pack's steps
    steps: list[StepName] | None = None
    #: ignore a cached verdict for the same code fingerprint
    no_cache: bool = False
    #: install dependencies into the per-repo environment (off = use what the repository has)
    install: bool = True

    @field_validator("steps")
    @classmethod
    def _no_install_step(cls, value: list[StepName] | None) -> list[StepName] | None:
        if value is not None and StepName.INSTALL in value:
            raise ValueError("install is not a selectable step: use options.install")
        return value


class VerifyInputs(Frozen):
    """What to verify: a directory on the worker host, or a git URL (+ ref) cloned for the run."""

    repo_path: str | None = Field(default=None, max_length=4096)
    repo_url: str | None = Field(default=None, max_length=2048)
    ref: str | None = None
    pack: Pack = Pack.FULL
    options: VerifyOptions = Field(default_factory=VerifyOptions)

    @model_validator(mode="after")
    def _one_source(self) -> VerifyInputs:
        if (self.repo_path is None) == (self.repo_url is None):
            raise ValueError("give exactly one of repo_path or repo_url")
        if self.ref is not None and self.repo_url is None:
            raise ValueError("ref is only meaningful with repo_url")
        if self.repo_path is not None and "\x00" in self.repo_path:
            raise ValueError("repo_path contains a NUL byte")
        if self.repo_url is not None:
            url = self.repo_url
            if "\x00" in url or any(ch.isspace() for ch in url) or url.startswith("-"):
                raise ValueError("repo_url is not a URL")
            if not (url.startswith(_URL_SCHEMES) or _SCP_URL.match(url)):
                raise ValueError("repo_url must be https://, http://, ssh://, git://, file:// or user@host:path")
        if self.ref is not None and (not _REF.match(self.ref) or ".." in self.ref or self.ref.endswith(".lock")):
            raise ValueError("ref must be a branch, tag or commit name ([A-Za-z0-9._/+-], no '..')")
        return self

    @property
    def source(self) -> str:
        return self.repo_path if self.repo_path is not None else f"{self.repo_url}@{self.ref or 'HEAD'}"


class Toolchain(enum.StrEnum):
    PYTHON = "python"
    NODE = "node"
    EXPLICIT = "explicit"
    NONE = "none"


class StepSpec(Frozen):
    """One step of the plan: the command to run, or why there is none."""

    name: StepName
    #: argv; empty = nothing to run (see ``reason``)
    argv: list[str] = Field(default_factory=list)
    #: exactly what runs, as a shell would show it (``VAR=value cmd args && cmd2 ...``)
    display: str = ""
    reason: str = ""
    #: install only: whether the command needs the network
    network: bool = False
    #: further commands run in turn after ``argv`` (install: create the venv, then sync); the first failure
    #: stops the step
    extra: list[list[str]] = Field(default_factory=list)
    #: where the command came from: ".pre-commit-config.yaml", "tox.ini [testenv:lint]", "package.json
    #: scripts.lint", "Makefile target lint", "detected: ruff 0.6.9 pinned in uv.lock", ...
    origin: str = ""
    #: variables set for this step on top of the step environment
    env: dict[str, str] = Field(default_factory=dict)
    #: why the step cannot run on this worker (a toolchain is missing): the step is reported as an error
    error: str = ""
    #: runs in its own copy of the run's tree, as a CI job of its own would: what its fixers write (pre-commit's
    #: end-of-file-fixer, ruff --fix) is neither seen by the steps beside it nor mistaken for their doing
    own_tree: bool = False
    #: the Python version the step's own tools run on when it is not the environment's (pre-commit's hooks)
    python: str = ""

    @property
    def runnable(self) -> bool:
        return bool(self.argv)

    def commands(self) -> list[list[str]]:
        return [self.argv, *self.extra] if self.argv else []


def shell_display(commands: list[list[str]], env: dict[str, str] | None = None) -> str:
    """The commands as a shell would run them, each prefixed by the step's own variables."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted((env or {}).items()))
    return " && ".join((prefix + " " if prefix else "") + shlex.join(argv) for argv in commands)


class ToolRequest(Frozen):
    """A toolchain the plan needs, resolved and provisioned by the worker before any step runs."""

    #: "npm": a package from the npm registry providing executables (pnpm, yarn, bun, node);
    #: "pypi": a Python tool installed into its own environment (pre-commit, tox, nox, poetry, hatch)
    kind: str
    name: str
    #: an exact version, a range (npm semver / PEP 440), or "" for JobForge's default
    version: str = ""
    #: the declaration it comes from ("package.json packageManager", "pnpm-lock.yaml lockfileVersion 9.0")
    why: str = ""
    #: the sha512 (hex) the declaration pins the package's tarball to, when it does
    integrity: str = ""


class ProvisionedTool(Frozen):
    """A toolchain as provisioned: exact version and where its executables are."""

    name: str
    version: str
    bin_dir: str = ""
    why: str = ""


class Lane(Frozen):
    """Steps run one group after another (the steps of a group side by side), beside the plan's other lanes."""

    stages: list[list[StepName]]
    #: the lane's steps run in a snapshot of the run's tree taken after install and before any check step (the
    #: tree they see when they run first), not in the run's tree, which the other lanes' steps change (a build
    #: writing dist/)
    snapshot: bool = False


class Plan(Frozen):
    toolchain: Toolchain
    #: where the steps came from: "detected (python)", "pyproject.toml [tool.jobforge.verify]", ...
    source: str
    package_manager: str = ""
    install: StepSpec
    steps: list[StepSpec]
    #: groups of step names; the steps of a group run in parallel, groups in order
    stages: list[list[StepName]]
    #: a per-repo environment (venv) directory, when the toolchain uses one
    env_dir: str = ""
    #: what decides whether ``install`` must run again (sha256 of the dependency files)
    install_key: str = ""
    timeout_minutes: float = 15.0
    #: extra directories put first on PATH for every step
    path_prefix: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    #: toolchains to provision before the steps run (resolved into ``provisioned`` by prepare)
    tools: list[ToolRequest] = Field(default_factory=list)
    provisioned: list[ProvisionedTool] = Field(default_factory=list)
    #: the interpreter the per-run Python environment is created with
    interpreter: str = ""
    #: variables every step of this plan gets (caches, the project environment for ``uv run``)
    env: dict[str, str] = Field(default_factory=dict)
    #: why nothing can run on this worker (a toolchain could not be provisioned): every step is an error
    error: str = ""
    #: files the worker writes before the steps run (absolute path -> content): the rewritten pre-commit config
    files: dict[str, str] = Field(default_factory=dict)
    #: the newest Python version the repository says it supports (classifiers, tox envs, nox sessions), "" when
    #: it names none: a check that cannot parse the code on an older interpreter is the worker's shortfall
    declared_python: str = ""
    #: what a run whose environments were restored from the environment cache runs instead of ``install``'s
    #: commands (None: those commands, except the ones creating an environment from nothing)
    warm_install: list[list[str]] | None = None
    #: when not empty, the check steps run in these lanes side by side instead of ``stages`` one group after
    #: another; each step sees the tree it sees in ``stages`` (which still says the steps' order: fingerprint,
    #: reports, and what runs when the snapshot cannot be made)
    lanes: list[Lane] = Field(default_factory=list)

    def step(self, name: StepName) -> StepSpec:
        if name is StepName.INSTALL:
            return self.install
        for spec in self.steps:
            if spec.name is name:
                return spec
        raise KeyError(name)


class ArtifactRef(Frozen):
    name: str
    kind: str
    media_type: str
    sha256: str
    size: int
    #: where the file lies (absolute path on the artifact store's host)
    location: str


class StepResult(Frozen):
    name: StepName
    status: StepStatus
    exit_code: int | None = None
    duration_seconds: float = 0.0
    command: str = ""
    reason: str = ""
    log: ArtifactRef | None = None
    #: the last lines of the (redacted) output, for a quick look at failures
    tail: list[str] = Field(default_factory=list)
    attempt: int = 1
    #: where the command came from (see StepSpec.origin)
    origin: str = ""


class SandboxInfo(Frozen):
    enabled: bool
    tool: str = ""
    reason: str = ""


class ManifestInfo(Frozen):
    status: str  # "written" | "skipped"
    reason: str = ""
    artifact: ArtifactRef | None = None


class VerifyReport(Frozen):
    template_key: str = TEMPLATE_KEY
    tenant_id: str = ""
    run_id: str = ""
    source: str = ""
    pack: Pack = Pack.FULL
    toolchain: Toolchain = Toolchain.NONE
    plan_source: str = ""
    verdict: Verdict
    passed: bool
    steps: list[StepResult]
    fingerprint: str = ""
    fingerprint_parts: dict[str, Any] = Field(default_factory=dict)
    cached: bool = False
    cached_from_run_id: str = ""
    sandbox: SandboxInfo = Field(default_factory=lambda: SandboxInfo(enabled=False))
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    manifest: ManifestInfo | None = None
    duration_seconds: float = 0.0
    notes: list[str] = Field(default_factory=list)
    #: the toolchains the steps ran with (exact versions) and where each came from
    toolchains: list[ProvisionedTool] = Field(default_factory=list)
    #: why the verdict is ``error``: what the worker lacked
    error: str = ""

    def step(self, name: StepName) -> StepResult:
        for result in self.steps:
            if result.name is name:
                return result
        raise KeyError(name)


# -- activity inputs and outputs --------------------------------------------------------------------


class CheckoutSpec(Frozen):
    url: str
    commit: str


class PrepareInput(Frozen):
    tenant_id: str
    run_id: str
    inputs: VerifyInputs
    workflow_id: str = ""


class Prepared(Frozen):
    #: where the steps run: the run's own copy of the repository (the checkout itself is never written)
    repo_dir: str
    workspace: str
    checkout: CheckoutSpec | None = None
    plan: Plan
    fingerprint: str
    fingerprint_parts: dict[str, Any]
    tool_versions: dict[str, str] = Field(default_factory=dict)
    #: a passed verdict for this fingerprint, already finalised for this run (report.json, manifest)
    cached: VerifyReport | None = None
    #: whether ``install`` has work to do (False: nothing to install, or the environment is up to date)
    install_needed: bool = True
    sandbox: SandboxInfo
    heartbeat_timeout_seconds: float = 30.0
    kill_grace_seconds: float = 5.0
    timeout_seconds: float = 900.0
    #: the repository as given (a directory on the worker host); empty for a clone
    source_dir: str = ""


class StepInput(Frozen):
    tenant_id: str
    run_id: str
    prepared: Prepared
    step: StepName
    #: the tree the step runs in when it is not the run's own (``prepared.repo_dir``): the snapshot of a lane
    tree: str = ""


class SnapshotInput(Frozen):
    tenant_id: str
    run_id: str
    prepared: Prepared


class Snapshot(Frozen):
    """The copy of the run's tree the snapshot lanes run in (see ``Plan.lanes``), and what making it took."""

    tree: str
    #: files and symbolic links copied
    files: int = 0
    #: directories of the run's tree the copy links to instead of copying them (``node_modules``)
    linked: list[str] = Field(default_factory=list)
    seconds: float = 0.0


class InstallResult(Frozen):
    result: StepResult
    tool_versions: dict[str, str] = Field(default_factory=dict)


class FinalizeInput(Frozen):
    tenant_id: str
    run_id: str
    workflow_id: str
    report: VerifyReport
    workspace: str = ""


class StepProgress(Frozen):
    name: StepName
    status: StepStatus = StepStatus.PENDING
    started_at: datetime | None = None
    duration_seconds: float | None = None
    reason: str = ""


class VerifyProgress(Frozen):
    """What the ``progress`` query answers while the run goes on."""

    phase: str = "admission"
    steps: list[StepProgress] = Field(default_factory=list)
    sandboxed: bool | None = None
    cached: bool = False


class VerifyCacheEntry(BaseModel):
    """A passed verify-pack verdict, keyed by (tenant, code fingerprint): the store's record of the verify cache."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str
    fingerprint: str
    verdict: str
    report: dict[str, Any]
    run_id: str
    created_at: datetime
