"""``autopilot.keys.rotation``: the template's input and result models (pure).

The new API key's secret must reach its owner but never enter workflow history, logs or manifests in
the clear: it is sealed to an X25519 public key the caller provides (:mod:`jobforge.sealed`, the SDK's
``keys`` extra), so only the ciphertext crosses Temporal and only the holder of the private key can open
it (``jobforge keys open-sealed``, or ``jobforge.sealed.open_sealed_secret`` in an app).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobforge.sealed_key import public_key_bytes


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
        public_key_bytes(value)  # shape only: no crypto here, this model is also validated inside workflows
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
