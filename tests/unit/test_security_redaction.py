"""Redaction of structured values and the field-name rules: names, deep structures, find_secret, properties."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.security.redaction import REDACTED, find_secret, is_secret_field, redact, redact_text
from tests.support.depth import examples

AWS = "AKIAIOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "a1B2c3D4e5" * 4
STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
STRIPE_TEST = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"
SLACK = "xoxb-123456789012-abcdefghijkl"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA75\nabc+/=\n-----END RSA PRIVATE KEY-----"
JFK = "jfk_0123456789ab_" + "Z" * 43


@pytest.mark.parametrize("name", ["password", "Password", "API-KEY", "api_key", "x-api-key", "Authorization",
                                  "set-cookie", "db_password", "clientSecret", "refresh_token", "aws_secret_key",
                                  "ssh_private_key", "signing_key", "otp", "card_cvv", "sessionid", "dsn", "apiKey",
                                  "AccountKey", "SharedAccessKey", "db_pass", "Secret Access Key", "XSRF-TOKEN",
                                  "spring.datasource.password", "passphrase", " token "])
def test_secret_field_names(name: str) -> None:
    """Sentry's denylist and Rails' partial matches are secret, after normalising case and '-'."""
    assert is_secret_field(name)


@pytest.mark.parametrize("name", ["template_key", "idempotency_key", "tenant_id", "trace_id", "footprint",
                                  "description", "input_hash", "key_id", "public_key", "event_type", "author",
                                  "templateKey", "sortKey", "passed", "bypass", "ping", "compass", "keyboard"])
def test_ordinary_field_names(name: str) -> None:
    """JobForge's own non-secret names (and look-alikes such as 'footprint') are kept."""
    assert not is_secret_field(name)


@pytest.mark.parametrize("secret", [AWS, GITHUB, STRIPE, STRIPE_TEST, SLACK, JWT, JFK, "github_pat_" + "A" * 30,
                                    "whsec_" + "B" * 24])
def test_value_patterns(secret: str) -> None:
    """Each known token shape is redacted wherever it sits in text."""
    text = f"before {secret} after"
    assert redact_text(text) == f"before {REDACTED} after"


def test_pem_urls_bearer_and_assignments() -> None:
    """Private keys, URL passwords, Bearer credentials and secret=value assignments are redacted."""
    assert "MIIE" not in redact_text(f"key:\n{PEM}\ndone")
    assert redact_text("postgresql+psycopg://app:hunter2@db:5432/x") == f"postgresql+psycopg://app:{REDACTED}@db:5432/x"
    assert redact_text("Authorization: Bearer abcdef123456") == f"Authorization: Bearer {REDACTED}"
    assert "hunter2" not in redact_text("export DB_PASSWORD=hunter2; MY_TOKEN: s3cr3tvalue")
    assert "s3cr3tvalue" not in redact_text("export DB_PASSWORD=hunter2; MY_TOKEN: s3cr3tvalue")
    plain = "author: Alice, template_key=autopilot.x.y, 12 tokens used"
    assert redact_text(plain) == plain


def test_deep_structures() -> None:
    """Nested dicts and lists are redacted by key name and by value, without touching the input."""
    value = {"user": "ann", "auth": {"password": "pw", "nested": [{"api_key": 1}]},
             "notes": [f"token {GITHUB}", {"x": (AWS,)}], "template_key": "a.b.c", "n": 3}
    out = redact(value)
    assert out["auth"] == REDACTED
    assert out["notes"] == [f"token {REDACTED}", {"x": [REDACTED]}]
    assert out["template_key"] == "a.b.c" and out["n"] == 3 and out["user"] == "ann"
    assert value["auth"]["password"] == "pw"
    kept = redact(value, keep_types=True)
    assert kept["auth"] == {"password": REDACTED, "nested": [{"api_key": 1}]}
    deep: Any = "leaf"
    for _ in range(50_000):
        deep = [deep]
    assert redact(deep) is not None  # no RecursionError
    cyclic: list[Any] = []
    cyclic.append({"again": cyclic, "token": "x"})
    node = redact(cyclic)  # a cycle ends instead of running forever
    while not isinstance(node, str):
        if isinstance(node, dict):
            assert node["token"] == REDACTED
            node = node["again"]
        else:
            node = node[0]
    assert node == "<too deep>"


def test_find_secret_names_the_path() -> None:
    """A secret in inputs is found with its JSON path; references and counts are not secrets."""
    assert find_secret({"repo": "x", "env": [{"name": "A", "value": STRIPE}]}) == ("$.env[0].value",
                                                                                  "secret-looking value")
    assert find_secret({"github_token": "abc"}) == ("$.github_token", "secret field name")
    assert find_secret({"secret_name": "GITHUB_TOKEN", "max_tokens": 100, "password": ""}) is None
    assert find_secret({"a": [{"ok": 1}, {"log": '{"api_key": "x"}'}]}) == ("$.a[1].log", "secret-looking value")
    assert find_secret({"scopes": ["tokens:issue", "jobs:*"]}) is None


secrets_st = st.sampled_from([AWS, GITHUB, STRIPE, SLACK, JWT, JFK])
filler = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


@settings(max_examples=examples(ci=100, deep=200), deadline=None)
@given(filler, secrets_st, filler)
def test_property_secret_never_survives(before: str, secret: str, after: str) -> None:
    """A known secret separated by spaces from any text never survives redaction."""
    assert secret not in redact_text(f"{before} {secret} {after}")


@settings(max_examples=examples(ci=100, deep=200), deadline=None)
@given(filler)
def test_property_idempotent(text: str) -> None:
    """Redacting twice is the same as redacting once."""
    once = redact_text(text)
    assert redact_text(once) == once


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10) | secrets_st,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["a", "b", "password", "token", "note", "api-key"]), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=examples(ci=100, deep=200), deadline=None)
@given(json_values)
def test_property_structures_keep_no_secret(value: Any) -> None:
    """After deep redaction no known secret appears anywhere, and secret-named fields hold the marker only."""
    out = redact(value)
    dumped = orjson.dumps(out).decode()
    for secret in (AWS, GITHUB, STRIPE, SLACK, JWT, JFK):
        assert secret not in dumped
    stack = [out]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if is_secret_field(key):
                    assert child == REDACTED
                stack.append(child)
        elif isinstance(node, list):
            stack.extend(node)
