"""The artifact store: files on disk, content-addressed by sha256 and scoped by tenant, recorded in PostgreSQL.

Layout: ``<root>/<tenant>/sha256/<first two hex>/<hex>``. The same bytes are stored once per tenant;
a run's named artifacts (``logs/test.log``, ``report.json``, ``manifest.json``) are rows of the
``artifacts`` table pointing at those blobs. Writing is idempotent: a retried activity finds its blob
and updates its row.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from jobforge.ids import check_tenant_id
from jobforge.models import ArtifactRecord
from shared.store import Store
from shared.verify.models import ArtifactRef

CHUNK = 1 << 20


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class ArtifactStore:
    def __init__(self, root: Path, store: Store) -> None:
        self.root = root
        self.store = store

    def relative_path(self, tenant_id: str, sha256: str) -> str:
        return f"{check_tenant_id(tenant_id)}/sha256/{sha256[:2]}/{sha256}"

    def location(self, record: ArtifactRecord) -> Path:
        return (self.root / record.path).resolve()

    def ref(self, record: ArtifactRecord) -> ArtifactRef:
        return ArtifactRef(name=record.name, kind=record.kind, media_type=record.media_type, sha256=record.sha256,
                           size=record.size, location=str(self.location(record)))

    def _place(self, tenant_id: str, src: Path, sha256: str) -> str:
        relative = self.relative_path(tenant_id, sha256)
        target = self.root / relative
        if target.exists():
            return relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return relative

    def _place_bytes(self, tenant_id: str, data: bytes) -> tuple[str, str]:
        sha256 = hashlib.sha256(data).hexdigest()
        relative = self.relative_path(tenant_id, sha256)
        target = self.root / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, 0o444)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return sha256, relative

    async def put_file(self, *, tenant_id: str, run_id: str, name: str, kind: str, media_type: str,
                       src: Path) -> ArtifactRef:
        """Store the file ``src`` as the run's artifact ``name``."""
        sha256, size = await asyncio.to_thread(_sha256_file, src)
        relative = await asyncio.to_thread(self._place, tenant_id, src, sha256)
        record = await self.store.record_artifact(tenant_id=tenant_id, run_id=run_id, name=name, kind=kind,
                                                  media_type=media_type, sha256=sha256, size=size, path=relative)
        return self.ref(record)

    async def put_bytes(self, *, tenant_id: str, run_id: str, name: str, kind: str, media_type: str,
                        data: bytes) -> ArtifactRef:
        """Store ``data`` as the run's artifact ``name``."""
        sha256, relative = await asyncio.to_thread(self._place_bytes, tenant_id, data)
        record = await self.store.record_artifact(tenant_id=tenant_id, run_id=run_id, name=name, kind=kind,
                                                  media_type=media_type, sha256=sha256, size=len(data),
                                                  path=relative)
        return self.ref(record)
