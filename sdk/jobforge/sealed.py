"""Sealed boxes: how a rotated API key's secret reaches its owner (the `keys` extra: `pip install 'jobforge[keys]'`).

``autopilot.keys.rotation`` seals the new secret to an X25519 public key the caller provides (an anonymous
"sealed box": ephemeral X25519 → HKDF-SHA256 → ChaCha20-Poly1305), so only the ciphertext crosses Temporal
and the HTTP API, and only the holder of the private key can open it. The server seals with :func:`seal`;
an app makes its keypair with :func:`new_keypair` and opens the box with :func:`open_sealed_secret`.
"""

from __future__ import annotations

import base64
import binascii
import json

try:
    from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError as exc:  # the core SDK has no crypto dependency
    raise ImportError("jobforge.sealed needs the `keys` extra: pip install 'jobforge[keys]'") from exc

from jobforge.errors import InvalidRequest, SealedSecretInvalid
from jobforge.sealed_key import public_key_bytes

__all__ = [
    "X25519PrivateKey",
    "load_public_key",
    "new_keypair",
    "open_sealed",
    "open_sealed_secret",
    "private_key_pem",
    "public_key_bytes",
    "public_key_text",
    "read_private_key",
    "seal",
    "sealed_from_text",
]

_INFO = b"jobforge sealed secret v1"
_NONCE = b"\0" * 12  # every seal uses a fresh ephemeral key, so the derived key is never reused


def load_public_key(text: str) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(public_key_bytes(text))


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
    return private, public_key_text(private)


def private_key_pem(private: X25519PrivateKey) -> bytes:
    """The private key as PKCS#8 PEM (what ``jobforge keys keypair`` writes; ``openssl pkey`` reads it)."""
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


def public_key_text(private: X25519PrivateKey) -> str:
    """The base64 raw public key of ``private``: the ``recipient_public_key`` input."""
    return base64.b64encode(_raw(private.public_key())).decode()


def read_private_key(data: bytes) -> X25519PrivateKey:
    """An X25519 private key from PKCS#8 PEM (``keys keypair``, ``openssl genpkey -algorithm X25519``) or
    base64 of the raw 32 bytes; :class:`~jobforge.errors.InvalidRequest` when it is neither."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise InvalidRequest("the private key file is not an unencrypted PKCS#8 PEM key") from None
        if not isinstance(key, X25519PrivateKey):
            raise InvalidRequest(f"the private key is {type(key).__name__.removeprefix('_')}, not X25519")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise InvalidRequest("the private key is neither PKCS#8 PEM nor the base64 of 32 raw X25519 bytes")
    return X25519PrivateKey.from_private_bytes(raw)


def sealed_from_text(text: str) -> str:
    """The sealed box in ``text``: the base64 itself, or a JSON object holding ``sealed_secret`` (a rotation's
    result, alone or as ``result`` of ``jobforge jobs request --wait --json``)."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise SealedSecretInvalid("the input looks like JSON but is not valid JSON") from None
        for holder in (value, value.get("result") if isinstance(value, dict) else None):
            if isinstance(holder, dict) and isinstance(holder.get("sealed_secret"), str):
                return str(holder["sealed_secret"])
        raise SealedSecretInvalid("the JSON holds no sealed_secret (nor result.sealed_secret)")
    return text


def open_sealed_secret(sealed: str, private_key: X25519PrivateKey) -> str:
    """:func:`open_sealed` as text, with :class:`~jobforge.errors.SealedSecretInvalid` for anything that does
    not open."""
    try:
        raw = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise SealedSecretInvalid("the sealed secret is not base64") from None
    if len(raw) < 32 + 16:
        raise SealedSecretInvalid("the sealed secret is too short to be a sealed box")
    try:
        return open_sealed(sealed, private_key).decode()
    except (InvalidTag, UnicodeDecodeError):
        raise SealedSecretInvalid() from None
