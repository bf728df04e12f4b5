"""Provenance: the fingerprints that explain a run later (models and pure composition)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.canonical import canonical_json, input_hash, sha256_hex
from shared.security.redaction import redact

#: environment variables whose *hashed* values make up the environment fingerprint
ENV_ALLOWLIST: tuple[str, ...] = (
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "SHELL", "PYTHONPATH", "PYTHONHASHSEED",
    "VIRTUAL_ENV", "NODE_ENV", "NODE_OPTIONS", "CI", "JOBFORGE_TASK_QUEUE", "JOBFORGE_TEMPORAL_NAMESPACE",
)

#: lockfiles whose hashes are part of the code fingerprint, whichever exist
LOCKFILES: tuple[str, ...] = (
    "uv.lock", "poetry.lock", "pnpm-lock.yaml", "package-lock.json", "yarn.lock", "Pipfile.lock",
)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CodeFingerprint(Frozen):
    path: str
    is_repo: bool
    #: why the fields below are empty (not a repository, git missing, ...)
    reason: str = ""
    head_sha: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    #: sha256 of ``git diff HEAD`` plus the names and contents of untracked files
    diff_sha256: str | None = None
    lockfiles: dict[str, str] = Field(default_factory=dict)


class EnvFingerprint(Frozen):
    #: variable → sha256 of its value (never the value itself); absent variables are omitted
    variables: dict[str, str]
    sha256: str


class InputSnapshot(Frozen):
    #: the inputs with secret fields and secret-looking values redacted
    inputs: dict[str, Any]
    #: ``sha256:`` of the canonical JSON of the *original* inputs (see ``verify_input_hash``)
    input_hash: str
    redacted: bool


class Provenance(Frozen):
    run_id: str
    tenant_id: str
    template_key: str
    jobforge_version: str
    worker_identity: str
    python: str
    os: str
    arch: str
    tool_versions: dict[str, str]
    jobforge_code: CodeFingerprint
    subject_code: CodeFingerprint | None = None
    environment: EnvFingerprint
    input_snapshot: InputSnapshot


def env_fingerprint(env: Mapping[str, str], allowlist: Iterable[str] = ENV_ALLOWLIST) -> EnvFingerprint:
    """Hashes of the allowlisted variables' values, and one hash over all of them."""
    variables = {name: sha256_hex(env[name].encode()) for name in sorted(set(allowlist)) if name in env}
    return EnvFingerprint(variables=variables, sha256=sha256_hex(canonical_json(variables)))


def input_snapshot(inputs: Mapping[str, Any]) -> InputSnapshot:
    """The canonical, redacted snapshot of ``inputs`` with the hash of the originals."""
    original = dict(inputs)
    cleaned = redact(original)
    return InputSnapshot(inputs=cleaned, input_hash=input_hash(original),
                         redacted=canonical_json(cleaned) != canonical_json(original))
