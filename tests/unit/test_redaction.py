"""The redaction engine on text: every shape of secret goes, ordinary text stays, JSON stays JSON,
streams give what whole texts give, and the work is linear in the input whatever it holds."""

from __future__ import annotations

import gc
import json
import time
from typing import Any

import orjson
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from shared.security import redaction
from shared.security.redaction import REDACTED, REDACTED_KEY, StreamRedactor, redact_text
from tests.support.depth import examples

GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2
TOKENS = {
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": GITHUB,
    "github_pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "gitlab": "glpat-" + "x1Y2z3" * 4,
    "slack": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "slack_webhook": "hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "stripe": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "stripe_test": "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "stripe_webhook": "whsec_" + "B" * 24,
    "google": "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "openai": "sk-proj-" + "Ab3" * 12,
    "anthropic": "sk-ant-api03-" + "Zz9_" * 10,
    "npm": "npm_" + "a1B2c3D4e5F6" * 3,
    "pypi": "pypi-AgEIcHlwaS5vcmc" + "CJDYzYmM3" * 7,
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "jobforge_key": "jfk_0123456789ab_" + "Z" * 43,
    "jobforge_policy": "jfp_abcdefghij.klmnopqrst",
    "digitalocean": "dop_v1_" + "ab12" * 16,
    "vault": "hvs." + "CAESI" * 6,
    "sendgrid": "SG." + "a" * 22 + "." + "b" * 43,
    "shopify": "shpat_" + "0123456789abcdef" * 2,
    "twilio": "SK" + "0123456789abcdef" * 2,
    "mailgun": "key-" + "0123456789abcdefABCDEF0123456789",
    "databricks": "dapi" + "0123456789abcdef" * 2,
    "age": "AGE-SECRET-KEY-1" + "QZ3" * 19 + "Q",
    "huggingface": "hf_" + "abcdefghijklmnopqrstuvwxyzABCDEFGH",
    "linear": "lin_api_" + "a1" * 20,
}
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA75\nabc+/=\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize("name", sorted(TOKENS))
def test_known_tokens_are_redacted_in_context(name: str) -> None:
    """Each token format is replaced wherever it sits in a line, and the words around it survive."""
    text = f"push with {TOKENS[name]} # used by ci"
    assert redact_text(text) == f"push with {REDACTED} # used by ci"


def test_ordinary_text_is_untouched() -> None:
    """Words that merely resemble keywords, scopes, times and references stay as they are."""
    text = ("AKIA is a prefix; ghp_short; eyJhbGciOi alone; sk_test_abc; 12 passed, 0 failed\n"
            "missing scope(s): tokens:issue, jobs:request at 12:30:01; basic configuration; bearer of news\n"
            "author: Alice, template_key=autopilot.x.y, 12 tokens used, key_id=k1, if token == expected:\n"
            '{"template_key": "a.b", "count": 3, "secret_name": null, "token_count": 5}\n')
    assert redact_text(text) == text


SHAPES = [
    # JSON and Python reprs, also inside JSON strings (step output carried in a payload)
    ('{"api_key": "s3cr3t", "x": 1}', '{"api_key": "[REDACTED]", "x": 1}'),
    ('{"password":"s3cr3t"}', '{"password":"[REDACTED]"}'),
    ('{"clientSecret": "a \\"quoted\\" s3cr3t"}', '{"clientSecret": "[REDACTED]"}'),
    ('"log": "{\\"api_key\\": \\"s3cr3t\\"}"', '"log": "{\\"api_key\\": \\"[REDACTED]\\"}"'),
    ("{'password': 's3cr3t', 'user': 'ann'}", "{'password': '[REDACTED]', 'user': 'ann'}"),
    ('{"Secret Access Key": "s3cr3t"}', '{"Secret Access Key": "[REDACTED]"}'),
    # YAML and headers: to the end of the line, keeping an authorization scheme
    ("password: correct horse battery\nnext: 1", "password: [REDACTED]\nnext: 1"),
    ("  api_key: 's3cr3t'", "  api_key: '[REDACTED]'"),
    ("Authorization: Bearer abc.def", "Authorization: Bearer [REDACTED]"),
    ("authorization: token ghx", "authorization: token [REDACTED]"),
    ("X-Api-Key: s3cr3t", "X-Api-Key: [REDACTED]"),
    ("Cookie: session=abc; theme=dark", "Cookie: [REDACTED]"),
    # .env and shell
    ("DB_PASSWORD=s3cr3t\n", "DB_PASSWORD=[REDACTED]\n"),
    ('export GITHUB_TOKEN="s3 cr3t" && make', 'export GITHUB_TOKEN="[REDACTED]" && make'),
    ("spring.datasource.password = s3cr3t", "spring.datasource.password = [REDACTED]"),
    ("deploy --password s3cr3t --user ann", "deploy --password [REDACTED] --user ann"),
    ("deploy --api-key=s3cr3t", "deploy --api-key=[REDACTED]"),
    # query strings, URLs, hashes
    ("GET /cb?code=1&access_token=s3cr3t&state=x", "GET /cb?code=1&access_token=[REDACTED]&state=x"),
    ("postgresql+psycopg://app:s3cr3t@db:5432/x", "postgresql+psycopg://app:[REDACTED]@db:5432/x"),
    ("{:password => 's3cr3t'}", "{:password => '[REDACTED]'}"),
    ("curl -H 'Authorization: Basic dXNlcjpwYXNz' -d x", "curl -H 'Authorization: Basic [REDACTED]"),
    ("sent Bearer abc12345xyz upstream", "sent Bearer [REDACTED] upstream"),
    ("pin=1234 ok", "pin=[REDACTED] ok"),
    (f"key:\n{PEM}\ndone", f"key:\n{REDACTED_KEY}\ndone"),
    ("x -----BEGIN PRIVATE KEY-----\nMIIE...", f"x {REDACTED_KEY}"),
    ('["-----BEGIN EC PRIVATE KEY-----\\nMHc", "next"]', f'["{REDACTED_KEY}", "next"]'),
]


@pytest.mark.parametrize(("text", "expected"), SHAPES)
def test_key_value_shapes(text: str, expected: str) -> None:
    """JSON, reprs, YAML, headers, .env, shell, flags, query strings, URLs and key blocks."""
    assert redact_text(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("--AKIA0000000000000000passw 0", "--[REDACTED]passw [REDACTED]"),  # a token in a flag's name
    ("postgres://AKIA0000000000000000:pw@h/x", "postgres://[REDACTED]:[REDACTED]@h/x"),  # in a URL's user
    ("AKIA0000000000000000--PASS 0", "[REDACTED]--PASS [REDACTED]"),  # a flag right after a token
    (f"AKIA0000000000000000{GITHUB}", f"{REDACTED}{REDACTED}"),  # a token right after a token
])
def test_what_the_scan_steps_over_is_still_judged(text: str, expected: str) -> None:
    """Tokens between a candidate and its span, and whatever follows a span, are judged as in the
    redacted text: once is all it takes (redacting twice gives the same) on both engines."""
    assert redact_text(text) == expected == redact_text(expected)
    assert redaction.PYTHON.redact_text(text, True) == expected


def test_public_keys_and_certificates_stay() -> None:
    """Only private-key blocks are key material."""
    public = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----"
    assert redact_text(public) == public


def test_json_keys_can_be_left_to_the_caller() -> None:
    """json_keys=False keeps values under JSON keys (JobForge's own fields) and still judges JSON in strings."""
    text = '{"secret_name": "db", "log": "{\\"password\\": \\"pw\\"}"}'
    assert redact_text(text, json_keys=False) == '{"secret_name": "db", "log": "{\\"password\\": \\"[REDACTED]\\"}"}'
    assert redact_text(text) == '{"secret_name": "[REDACTED]", "log": "{\\"password\\": \\"[REDACTED]\\"}"}'


# -- properties over generated input -------------------------------------------------------------

SECRET_NAMES = ["password", "api_key", "API-KEY", "clientSecret", "access_token", "DB_PASSWORD", "x-api-key",
                "Authorization", "private_key", "session_id", "aws.secret.key", "cookie", "passphrase", "otp"]
value_chars = st.characters(codec="utf-8", exclude_characters="\x00\n\r\"'\\ =:&;,<>{}[]()|`#")
# a value starting with "-" after a flag reads as the next flag ("--password -v"), so none does
secret_values = st.text(value_chars, min_size=6, max_size=30).filter(
    lambda v: v.strip() == v and "--" not in v and not v.startswith("-"))
names = st.sampled_from(SECRET_NAMES)


def shapes(name: str, secret: str) -> list[str]:
    """The same secret written as JSON, YAML, .env, a header, a query string, a flag and a repr."""
    return [
        json.dumps({name: secret}), json.dumps({"nested": {name: secret, "n": 1}}), f"{name}: {secret}",
        f"  {name}: \"{secret}\"", f"export {name}={secret}", f"{name}='{secret}'", f"GET /x?{name}={secret}&y=1",
        f"--{name} {secret}", f"{{'{name}': '{secret}'}}", json.dumps({"log": json.dumps({name: secret})}),
    ]


output_lines = st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\x00\r"), max_size=30), max_size=4)


@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(names, secret_values, st.integers(0, 9), output_lines, output_lines)
@example("password", "hunter2xyz", 9, [], [])
def test_property_no_secret_shape_survives(name: str, secret: str, shape: int, before: list[str],
                                           after: list[str]) -> None:
    """A secret under a secret name, in any shape, nested among other output lines, never survives:
    not in the whole text, not streamed in chunks."""
    assume(not any(secret in line for line in [*before, *after]))
    text = "\n".join([*before, shapes(name, secret)[shape], *after]) + "\n"
    assert secret not in redact_text(text)
    stream = StreamRedactor()
    streamed = "".join(stream.feed(text[i:i + 5]) for i in range(0, len(text), 5)) + stream.flush()
    assert secret not in streamed


@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(st.sampled_from(sorted(TOKENS.values())), output_lines, output_lines)
def test_property_tokens_never_survive(token: str, before: list[str], after: list[str]) -> None:
    """A known token separated from other output by a space never survives."""
    assume(not any(token in line for line in [*before, *after]))
    text = " ".join(["\n".join(before), token, "\n".join(after)])
    assert token not in redact_text(text)


json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.sampled_from([*TOKENS.values(), PEM, "password=x", "Bearer abc123456", "-----BEGIN PRIVATE KEY-----\nx",
                       '{"token": "a\\"b"}', "a\\", '\\"', "x://u:p@h"]),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8) | st.sampled_from(SECRET_NAMES), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=examples(ci=100, deep=400), deadline=None)
@given(json_docs, st.booleans(), st.booleans())
def test_property_json_stays_json(doc: Any, indent: bool, json_keys: bool) -> None:
    """Redacting serialised JSON (compact or indented, any nesting of escapes) leaves valid JSON
    with the same shape, and no known token in it."""
    text = json.dumps(doc, indent=2 if indent else None)
    out = redact_text(text, json_keys=json_keys)
    parsed = json.loads(out)
    assert type(parsed) is type(doc)
    for token in TOKENS.values():
        assert token not in out
    again = json.dumps(doc, ensure_ascii=False)
    json.loads(redact_text(again, json_keys=json_keys))


@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=80)
       | st.lists(st.sampled_from(["password", "=", ":", " ", '"', "'", "\\", "\n", "--", "token", "Bearer ",
                                   "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----", "://u:", "@", "abc",
                                   "12345678", "AKIA", "IOSFODNN7EXAMPLE", "[REDACTED]"]), max_size=30).map("".join))
def test_property_idempotent(text: str) -> None:
    """Redacting twice is the same as redacting once."""
    once = redact_text(text)
    assert redact_text(once) == once


stream_text = st.lists(st.sampled_from([
    "line one\n", "password: x\n", "-----BEGIN RSA PRIVATE KEY-----\n", "MIIEabc\n", "-----END RSA PRIVATE KEY-----\n",
    '"', "token=abc ", GITHUB, " ", "\n", "-----END CERTIFICATE-----\n", "x" * 50, "--password ", "pw\n",
]), max_size=25).map("".join)


@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(stream_text, st.integers(1, 40))
def test_property_streaming_equals_whole_text(text: str, chunk: int) -> None:
    """Streamed in chunks of any size, output is exactly the redaction of the whole text."""
    stream = StreamRedactor()
    out = "".join(stream.feed(text[i:i + chunk]) for i in range(0, len(text), chunk)) + stream.flush()
    assert out == redact_text(text)


def test_stream_redactor_flushes_an_unterminated_block_redacted() -> None:
    """Output that ends inside a key block never releases the key material."""
    stream = StreamRedactor()
    out = stream.feed("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n") + stream.flush()
    assert "b3BlbnNzaC1rZXk" not in out and REDACTED_KEY in out


def test_stream_redactor_bounds_long_lines_and_cuts_at_spaces() -> None:
    """A line without newline longer than max_line is emitted in pieces, cut after a space so a
    token near the cut is not split."""
    stream = StreamRedactor(max_line=1000)
    emitted = stream.feed(("word " * 190) + GITHUB + " " + "x" * 4000)
    assert len(emitted) >= 1000 and GITHUB not in emitted + stream.flush()


# -- cost ----------------------------------------------------------------------------------------

ADVERSARIAL = {
    "keyword_dense": "key" * 40_000,
    "separators": "key=" * 30_000,
    "secret_assignments": "token=a " * 15_000,
    "colons": "a: " * 40_000,
    "quoted_names": '"a":' * 30_000,
    "camel_names": "aBcDeFgH=" * 13_000,
    "long_names": ("a" * 300 + "=") * 400,
    "long_quoted_names": ('"' + "a" * 250 + '":') * 480,
    "jwt": "eyJ-" * 30_000,
    "jwt_dots": "eyJaaaaaaaaa." * 10_000,
    "aws": "AKIA" * 30_000,
    "pem_begin": "-----BEGIN " * 12_000,
    "pem_quoted": '-----BEGIN RSA PRIVATE KEY-----"' * 4_000,
    "pem_unterminated": "-----BEGIN RSA PRIVATE KEY-----" + "A" * 100_000,
    "url_user": "postgres://" + "u:" * 50_000,
    "urls": "://u:" * 25_000,
    "bearer": "bearer " * 17_000,
    "flags": "--password " * 11_000,
    "escaped_quotes": '\\"a\\":' * 20_000,
    "quoted_value": 'password="' + '\\"' * 60_000,
    "backslashes": "\\" * 120_000,
    "mixed": ("eyJ" + "-" * 7 + "." + "AKIA" + " password: " + "ghp_" + "\u0130") * 5_000,
}


@pytest.mark.skipif(redaction.NATIVE is None, reason="the work counter is the C engine's")
@settings(max_examples=examples(ci=100, deep=200), deadline=None)
@given(st.sampled_from(sorted(ADVERSARIAL)), st.integers(1, 4),
       st.text(st.sampled_from("ak=:\"'\\- .eyJAKIPbr/@_"), max_size=200))
def test_property_work_is_linear(name: str, repeat: int, noise: str) -> None:
    """No input of n characters makes the engine examine more than 6n characters (counted, not timed)."""
    native = redaction.NATIVE
    assert native is not None
    for text in (ADVERSARIAL[name][: 20_000 * repeat], noise * 50):
        before = native.work()
        native.redact_text(text)
        assert native.work() - before <= 6 * len(text) + 64, name


#: every keyword the engine reacts to: token prefixes, field-name parts, schemes, key-block markers,
#: and the separators, quotes and escapes around them
KEYWORDS = sorted({prefix for rule in redaction.TOKEN_RULES for prefix in rule.prefixes}
                  | set(redaction.PARTIAL_MATCHES) | set(redaction.WORD_MATCHES) | set(redaction.AUTH_SCHEMES)
                  | {redaction.PEM_BEGIN, redaction.PEM_END, *redaction.PEM_SUFFIXES, "-----", "://", "@", "key",
                     "_key"})
GLUE = ["=", ": ", ":", '"', "'", "\\", '\\"', " ", "\n", "&", "?", "--", "-", "_", ".", "{", "}", "[", ",", "a", "1",
        "\u0130"]
#: strings dense with keywords: a generated motif of keywords and glue, repeated to tens of thousands of characters
keyword_dense = st.builds(
    lambda motif, times: (motif * (times // max(len(motif), 1) + 1))[:times],
    st.lists(st.sampled_from(KEYWORDS) | st.sampled_from(GLUE), min_size=1, max_size=12).map("".join),
    st.integers(1_000, 60_000))


@pytest.mark.skipif(redaction.NATIVE is None, reason="the work counter is the C engine's")
@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(keyword_dense, st.booleans())
def test_property_keyword_dense_work_is_linear(text: str, json_keys: bool) -> None:
    """A string of n characters made of the engine's own keywords and the glue between them, in any
    mix, makes the engine examine at most 6n characters (counted, not timed)."""
    native = redaction.NATIVE
    assert native is not None
    before = native.work()
    native.redact_text(text, json_keys)
    assert native.work() - before <= 6 * len(text) + 64


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_cost_is_linear(name: str) -> None:
    """Inputs built to trip backtracking or pile up work: 4x the input costs < 8x the time (either engine)."""
    text = ADVERSARIAL[name]

    def timed(engine: Any, piece: str) -> float:  # CPU time: a long run is not charged for other processes
        started = time.thread_time()
        engine.redact_text(piece, True)
        return time.thread_time() - started

    for engine in filter(None, (redaction.NATIVE, redaction.PYTHON)):
        quarters, fulls = [], []
        gc.disable()  # the least of interleaved runs, collector off
        try:
            for _ in range(5):
                quarters.append(timed(engine, text[: len(text) // 4]))
                fulls.append(timed(engine, text))
        finally:
            gc.enable()
        quarter, full = min(quarters), min(fulls)
        assert full < 8 * quarter + 0.02, f"{name}: {quarter:.4f}s for 1/4, {full:.4f}s for all"


def test_redacted_json_is_a_drop_in_for_the_original() -> None:
    """A redacted history-sized payload still decodes into the same structure with orjson."""
    doc = {"events": [{"input": {"log": f"step printed {{\"token\": \"{i}abc\"}}", "n": i}} for i in range(200)]}
    out = orjson.loads(redact_text(orjson.dumps(doc).decode(), json_keys=False))
    assert out["events"][5]["input"] == {"log": 'step printed {"token": "[REDACTED]"}', "n": 5}
