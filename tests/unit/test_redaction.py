"""The value-pattern redactor: known token shapes go, ordinary text stays, adversarial input stays linear."""

from __future__ import annotations

import time

import pytest

from shared.redaction import REDACTED, REDACTED_KEY, StreamRedactor, redact_bytes, redact_text

GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2
SECRETS = {
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": GITHUB,
    "github_pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "slack": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "stripe": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
}


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_known_tokens_are_redacted_in_context(name: str) -> None:
    """Each token shape is replaced wherever it sits in a line, and the words around it survive."""
    text = f"export TOKEN={SECRETS[name]} # used by ci"
    out = redact_text(text)
    assert SECRETS[name] not in out
    assert out == f"export TOKEN={REDACTED} # used by ci"


def test_ordinary_text_is_untouched() -> None:
    """Words that merely resemble keywords (AKIA in prose, short ghp_ ids, eyJ without dots) stay as they are."""
    text = "AKIA is a prefix; ghp_short; eyJhbGciOi alone; sk_test_abc; 12 passed, 0 failed\n"
    assert redact_text(text) == text


def test_private_key_blocks_are_cut_whole() -> None:
    """A PEM private key block is replaced as a whole; the text after it stays; an unterminated block is cut."""
    block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----"
    assert redact_text(f"key:\n{block}\nafter") == f"key:\n{REDACTED_KEY}\nafter"
    assert redact_text("x -----BEGIN PRIVATE KEY-----\nMIIE...") == f"x {REDACTED_KEY}"
    public = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----"
    assert redact_text(public) == public


def test_bytes_are_redacted_too() -> None:
    """Undecodable bytes do not stop redaction."""
    assert redact_bytes(b"\xff token " + GITHUB.encode()) == "\ufffd token [REDACTED]".encode()


def test_stream_redactor_handles_chunk_boundaries_and_key_blocks() -> None:
    """Secrets split across chunks and key blocks spread over lines are redacted when streamed."""
    stream = StreamRedactor()
    text = f"one {GITHUB} two\n-----BEGIN EC PRIVATE KEY-----\nsecretline\n-----END EC PRIVATE KEY-----\nlast\n"
    out = "".join(stream.feed(text[i:i + 7]) for i in range(0, len(text), 7)) + stream.flush()
    assert out == f"one {REDACTED} two\n{REDACTED_KEY}\nlast\n"


def test_stream_redactor_flushes_an_unterminated_block_redacted() -> None:
    """Output that ends inside a key block never releases the key material."""
    stream = StreamRedactor()
    out = stream.feed("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n") + stream.flush()
    assert "b3BlbnNzaC1rZXk" not in out and REDACTED_KEY in out


def test_stream_redactor_bounds_long_lines() -> None:
    """A line without newline longer than max_line is emitted in pieces instead of growing without bound."""
    stream = StreamRedactor(max_line=1000)
    emitted = stream.feed("x" * 5000)
    assert len(emitted) >= 4000


@pytest.mark.parametrize("piece", [
    "eyJ", "eyJa.", "eyJaaaaaaaaaa.eyJ", "ghp_", "github_pat_", "xoxb-", "AKIA", "sk_live_",
    "-----BEGIN PRIVATE KEY-----", "-----BEGIN ", "-----", "a" * 7 + ".",
])
def test_adversarial_input_is_linear(piece: str) -> None:
    """200 KB of repeated near-misses are redacted in well under a second (gitleaks' PEM regex took 11 s)."""
    text = piece * (200_000 // len(piece))
    started = time.perf_counter()
    redact_text(text)
    stream = StreamRedactor()
    stream.feed(text)
    stream.flush()
    assert time.perf_counter() - started < 1.0
