"""Signed short-lived tokens: policy tokens and admission receipts (pure: ``now`` is passed in).

Format: ``<prefix><base64url(canonical claims)>.<base64url(HMAC-SHA256(prefix + body))>``. One fixed
algorithm (no ``alg`` header to confuse), constant-time comparison, and every time claim required:
``iat``, ``exp``, plus ``iss``, ``typ`` and ``jti``. Replay protection (single use) is the store's
job; :func:`token_ref` is the one-way reference the store keys a policy token by.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from jobforge.errors import TokenInvalid
from shared.canonical import canonical_json

ISSUER = "jobforge"
POLICY_PREFIX = "jfp_"
RECEIPT_PREFIX = "jfr_"
#: clock skew tolerated between the issuing and the checking process
LEEWAY_SECONDS = 30
_REQUIRED = ("v", "typ", "iss", "iat", "exp", "jti", "tenant")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_jti() -> str:
    return secrets.token_hex(16)


def token_ref(token: str) -> str:
    """The one-way reference of a token (``sha256:<hex>``): safe to store and to pass through history."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _mac(key: bytes, prefix: str, body: str) -> bytes:
    return hmac.new(key, f"{prefix}{body}".encode(), hashlib.sha256).digest()


def sign(claims: Mapping[str, Any], key: bytes, prefix: str) -> str:
    """A token carrying ``claims`` (which must hold every required claim)."""
    missing = [name for name in _REQUIRED if name not in claims]
    if missing:
        raise ValueError(f"claims lack {missing}")
    body = _b64(canonical_json(dict(claims)))
    return f"{prefix}{body}.{_b64(_mac(key, prefix, body))}"


def make_claims(*, typ: str, tenant: str, now: int, ttl: int, jti: str | None = None,
                **extra: Any) -> dict[str, Any]:
    return {"v": 1, "typ": typ, "iss": ISSUER, "tenant": tenant, "iat": now, "exp": now + ttl,
            "jti": jti or new_jti(), **extra}


def verify(token: str, keys: Sequence[bytes], *, prefix: str, typ: str, now: float,
           max_ttl: int) -> dict[str, Any]:
    """The claims of a genuine, current token of type ``typ``; :class:`TokenInvalid` naming why not."""
    if not token.startswith(prefix) or token.count(".") != 1 or len(token) > 16384:
        raise TokenInvalid(reason="malformed")
    body, _, signature = token[len(prefix):].partition(".")
    try:
        given = _unb64(signature)
        raw = _unb64(body)
    except (ValueError, TypeError):
        raise TokenInvalid(reason="malformed") from None
    if not any(hmac.compare_digest(given, _mac(key, prefix, body)) for key in keys):
        raise TokenInvalid(reason="bad signature")
    try:
        claims = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TokenInvalid(reason="malformed") from None
    if not isinstance(claims, dict) or any(name not in claims for name in _REQUIRED):
        raise TokenInvalid(reason="missing claims")
    if claims["v"] != 1 or claims["iss"] != ISSUER or claims["typ"] != typ:
        raise TokenInvalid(reason=f"not a {typ} token")
    iat, exp = claims["iat"], claims["exp"]
    if not (isinstance(iat, int) and isinstance(exp, int)) or exp <= iat or exp - iat > max_ttl:
        raise TokenInvalid(reason="bad lifetime")
    if now + LEEWAY_SECONDS < iat:
        raise TokenInvalid(reason="not yet valid")
    if now >= exp:
        raise TokenInvalid(reason="expired")
    return claims
