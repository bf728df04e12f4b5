"""The sealed delivery of a rotated key: keypair files, sealed boxes in every form a user holds, typed refusals."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import given
from hypothesis import strategies as st

from jobforge.errors import InvalidRequest, SealedSecretInvalid
from jobforge.sealed import (
    new_keypair,
    open_sealed_secret,
    private_key_pem,
    public_key_text,
    read_private_key,
    seal,
    sealed_from_text,
)

SECRET = "jfk_0123456789ab_" + "s" * 43


def test_a_keypair_file_reads_back_as_the_same_key() -> None:
    """The PEM `keys keypair` writes, and the raw base64 form, both read back as the key the public half names."""
    private, public = new_keypair()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    for data in (private_key_pem(private), base64.b64encode(raw) + b"\n"):
        key = read_private_key(data)
        assert public_key_text(key) == public
        assert open_sealed_secret(seal(SECRET.encode(), public), key) == SECRET


@pytest.mark.parametrize("data", [
    b"", b"not a key", base64.b64encode(b"x" * 31),
    b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()),
])
def test_what_is_not_an_x25519_private_key_is_refused(data: bytes) -> None:
    """Garbage, a short key, a broken PEM or another algorithm's key: InvalidRequest, never a crash."""
    with pytest.raises(InvalidRequest):
        read_private_key(data)


def test_the_sealed_box_is_found_in_each_form_a_user_has() -> None:
    """The bare base64, a rotation's result, and `jobs request --wait --json` output all give the same box."""
    _, public = new_keypair()
    box = seal(SECRET.encode(), public)
    result = {"old_key_id": "a", "new_key_id": "b", "sealed_secret": box}
    for text in (box, f"  {box}\n", json.dumps(result), json.dumps({"run": {}, "result": result})):
        assert sealed_from_text(text) == box
    for text in ('{"result": {}}', "{not json"):
        with pytest.raises(SealedSecretInvalid):
            sealed_from_text(text)


def test_a_box_for_another_key_or_damaged_is_refused() -> None:
    """Another recipient's key, one flipped byte, or a truncated box: SealedSecretInvalid."""
    private, public = new_keypair()
    other, _ = new_keypair()
    box = seal(SECRET.encode(), public)
    raw = bytearray(base64.b64decode(box))
    raw[-1] ^= 1
    for candidate, key in ((box, other), (base64.b64encode(bytes(raw)).decode(), private), (box[:40], private)):
        with pytest.raises(SealedSecretInvalid):
            open_sealed_secret(candidate, key)


@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()))
def test_any_text_opens_or_is_refused_typed(text: str) -> None:
    """Whatever a user pastes as the sealed secret, the answer is the secret or a typed refusal."""
    private, _ = new_keypair()
    try:
        open_sealed_secret(sealed_from_text(text), private)
    except SealedSecretInvalid:
        return
    raise AssertionError("a box sealed to nobody opened")


def test_the_core_sdk_names_the_keys_extra_when_cryptography_is_missing() -> None:
    """Without cryptography (the SDK's `keys` extra not installed), importing jobforge.sealed says which extra to
    install instead of failing on a module name the app never asked for."""
    probe = ("import sys; sys.modules['cryptography'] = None\n"
             "try:\n    import jobforge.sealed\nexcept ImportError as exc:\n    print(exc)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert "pip install 'jobforge[keys]'" in done.stdout
