"""The recipient key of a sealed box (:mod:`jobforge.sealed`), checked for shape without the crypto library.

A key rotation's input carries the base64 of a raw 32-byte X25519 public key. Checking that shape needs no
cryptography, so the server validates the input (in the HTTP API, the gate and inside workflows) without
importing it; only sealing (:func:`jobforge.sealed.seal`) does.
"""

from __future__ import annotations

import base64
import binascii


def public_key_bytes(text: str) -> bytes:
    """The raw 32 bytes of a base64 X25519 public key (shape only, no crypto); ValueError when it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("recipient_public_key must be base64") from None
    if len(raw) != 32:
        raise ValueError("recipient_public_key must be a raw 32-byte X25519 public key (base64)")
    return raw
