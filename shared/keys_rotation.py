"""``autopilot.keys.rotation``: models and the sealed delivery of the new key (pure).

The new API key's secret must reach its owner but never enter workflow history, logs or manifests.
It is sealed to an X25519 public key the caller provides (an anonymous "sealed box": ephemeral
X25519 → HKDF-SHA256 → ChaCha20-Poly1305); only the ciphertext crosses Temporal, and only the holder
of the private key can open it (``jobforge keys open-sealed``).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field, field_validator

_INFO = b"jobforge sealed secret v1"
_NONCE = b"\0" * 12  # every seal uses a fresh ephemeral key, so the derived key is never reused


class KeyRotationInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the API key to rotate (it keeps working for ``grace_seconds`` after the new one exists)
    key_id: str = Field(min_length=1, max_length=64, pattern=r"^[a-f0-9]+$")
    grace_seconds: int = Field(default=3600, ge=0, le=30 * 86400)
    #: base64 of the raw 32-byte X25519 public key the new secret is sealed to
    recipient_public_key: str

    @field_validator("recipient_public_key")
    @classmethod
    def _public_key(cls, value: str) -> str:
        _raw_public(value)  # shape only: no crypto here, this model is also validated inside workflows
        return value


class KeyRotationResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    old_key_id: str
    new_key_id: str
    scopes: list[str]
    #: base64 sealed box holding the new key's full secret
    sealed_secret: str
    grace_seconds: int
    old_key_revoked: bool


def _raw_public(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("recipient_public_key must be base64") from None
    if len(raw) != 32:
        raise ValueError("recipient_public_key must be a raw 32-byte X25519 public key (base64)")
    return raw


def load_public_key(text: str) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(_raw_public(text))


def _derive(shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=eph_pub + recipient_pub, info=_INFO).derive(shared)


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def seal(secret: bytes, recipient_public_key: str) -> str:
    """``secret`` sealed to the recipient: base64(ephemeral public key ‖ ciphertext)."""
    recipient = load_public_key(recipient_public_key)
    ephemeral = X25519PrivateKey.generate()
    eph_pub = _raw(ephemeral.public_key())
    key = _derive(ephemeral.exchange(recipient), eph_pub, _raw(recipient))
    return base64.b64encode(eph_pub + ChaCha20Poly1305(key).encrypt(_NONCE, secret, None)).decode()


def open_sealed(sealed: str, private_key: X25519PrivateKey) -> bytes:
    """The secret inside a sealed box (raises ``cryptography.exceptions.InvalidTag`` if not ours)."""
    raw = base64.b64decode(sealed)
    eph_pub, ciphertext = raw[:32], raw[32:]
    key = _derive(private_key.exchange(X25519PublicKey.from_public_bytes(eph_pub)), eph_pub,
                  _raw(private_key.public_key()))
    return ChaCha20Poly1305(key).decrypt(_NONCE, ciphertext, None)


def new_keypair() -> tuple[X25519PrivateKey, str]:
    """A recipient keypair: the private key and the base64 public key to put in the inputs."""
    private = X25519PrivateKey.generate()
    return private, base64.b64encode(_raw(private.public_key())).decode()


def private_key_bytes(private: X25519PrivateKey) -> bytes:
    return private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())


def load_private_key(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


