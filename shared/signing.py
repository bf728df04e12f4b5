"""The HMAC key that signs policy tokens and admission receipts.

``JOBFORGE_SIGNING_KEY`` (production: the same secret on every API and worker host) or, when unset,
``home/signing.key``: 32 random bytes created once with mode 0600 (the dev stack's processes share
the home directory). The key never enters workflow history; only tokens signed with it do.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from shared.settings import Settings


def _load_or_create(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)  # atomic and refuses to overwrite: the first process to get here wins
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path.read_bytes()


def signing_keys(settings: Settings) -> list[bytes]:
    """The keys tokens are checked against; the first one signs."""
    if settings.signing_key is not None:
        return [settings.signing_key.get_secret_value().encode()]
    return [_load_or_create(settings.home / "signing.key")]
