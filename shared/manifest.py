"""A run's artifact manifest: every file it produced with hash, size and type, plus the run status (pure).

Written to the artifact store as ``manifest.json`` when JOBFORGE_MANIFESTS_ENABLED is on. The bytes
are canonical JSON, so the same artifacts and status always give the same manifest hash.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jobforge.models import ArtifactRecord
from shared.canonical import canonical_json

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "jobforge.manifest/v1"


def build_manifest(*, tenant_id: str, run_id: str, workflow_id: str, template_key: str, run_status: str,
                   artifacts: Iterable[ArtifactRecord], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of a run (the manifest itself is never listed in it)."""
    files = [
        {"name": a.name, "kind": a.kind, "media_type": a.media_type, "sha256": a.sha256, "size": a.size,
         "path": a.path}
        for a in sorted(artifacts, key=lambda a: a.name) if a.name != MANIFEST_NAME
    ]
    return {
        "format": MANIFEST_FORMAT, "tenant_id": tenant_id, "run_id": run_id, "workflow_id": workflow_id,
        "template_key": template_key, "run_status": run_status, "artifacts": files,
        "total_size": sum(f["size"] for f in files), **(extra or {}),
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return canonical_json(manifest) + b"\n"
