"""Signed tokens: genuine ones verify; forged, altered, expired, early and mistyped ones do not."""

from __future__ import annotations

import pytest

from jobforge.errors import TokenInvalid
from shared.security import tokens

KEY = b"k" * 32
NOW = 1_800_000_000


def policy(**extra: object) -> str:
    claims = tokens.make_claims(typ="policy", tenant="acme", now=NOW, ttl=600, template="a.b.c",
                                inputs_hash="sha256:x", **extra)
    return tokens.sign(claims, KEY, tokens.POLICY_PREFIX)


def check(token: str, *, now: float = NOW + 1, typ: str = "policy",
          keys: list[bytes] | None = None) -> dict[str, object]:
    return tokens.verify(token, keys or [KEY], prefix=tokens.POLICY_PREFIX, typ=typ, now=now, max_ttl=900)


def reason(token: str, **kwargs: object) -> str:
    with pytest.raises(TokenInvalid) as info:
        check(token, **kwargs)  # type: ignore[arg-type]
    return str(info.value.details["reason"])


def test_round_trip() -> None:
    """A genuine token verifies and gives back its claims."""
    claims = check(policy())
    assert claims["tenant"] == "acme" and claims["template"] == "a.b.c" and claims["exp"] == NOW + 600
    assert len(str(claims["jti"])) == 32


def test_rotated_keys_still_verify() -> None:
    """A token signed with an older key verifies while that key is still listed."""
    assert check(policy(), keys=[b"new" * 11, KEY])["tenant"] == "acme"


def test_forged_and_altered_tokens_are_refused() -> None:
    """Another key's signature, an edited body and garbage are all refused."""
    forged = tokens.sign(tokens.make_claims(typ="policy", tenant="acme", now=NOW, ttl=600), b"x" * 32,
                         tokens.POLICY_PREFIX)
    assert reason(forged) == "bad signature"
    sig = policy()[len(tokens.POLICY_PREFIX):].split(".")[1]
    other = tokens.sign(tokens.make_claims(typ="policy", tenant="evil", now=NOW, ttl=600), KEY, tokens.POLICY_PREFIX)
    spliced = tokens.POLICY_PREFIX + other[len(tokens.POLICY_PREFIX):].split(".")[0] + "." + sig
    assert reason(spliced) == "bad signature"
    for garbage in ("", "jfp_", "jfp_a.b.c", "nope.nope", "jfp_!!!.???"):
        assert reason(garbage) in ("malformed", "bad signature")


def test_time_claims_are_enforced() -> None:
    """Expired, not-yet-valid and over-long tokens are refused; the leeway tolerates small skew."""
    token = policy()
    assert reason(token, now=NOW + 600) == "expired"
    assert reason(token, now=NOW - 31) == "not yet valid"
    check(token, now=NOW - 29)
    long = tokens.sign(tokens.make_claims(typ="policy", tenant="acme", now=NOW, ttl=10_000), KEY, tokens.POLICY_PREFIX)
    assert reason(long) == "bad lifetime"


def test_type_confusion_is_refused() -> None:
    """A receipt is not a policy token, even when signed with the same key."""
    receipt = tokens.sign(tokens.make_claims(typ="receipt", tenant="acme", now=NOW, ttl=600), KEY,
                          tokens.POLICY_PREFIX)
    assert reason(receipt) == "not a policy token"
    with pytest.raises(TokenInvalid):
        tokens.verify(policy(), [KEY], prefix=tokens.RECEIPT_PREFIX, typ="policy", now=NOW, max_ttl=900)


def test_missing_claims_cannot_be_signed_or_verified() -> None:
    """sign() refuses incomplete claims; a token lacking a required claim is refused."""
    with pytest.raises(ValueError, match="claims lack"):
        tokens.sign({"typ": "policy"}, KEY, tokens.POLICY_PREFIX)


def test_token_ref_is_one_way_and_stable() -> None:
    """The reference of a token is a stable SHA-256 that does not contain the token."""
    token = policy()
    assert tokens.token_ref(token) == tokens.token_ref(token)
    assert tokens.token_ref(token).startswith("sha256:") and token not in tokens.token_ref(token)
