"""Redaction of secret-looking values in free text (always on; pure, linear time).

The rule set follows gitleaks / detect-secrets for the tokens most often leaked into build logs:
AWS access key ids, GitHub tokens, Slack tokens, Stripe live keys, JWTs and PEM private keys.

Every pattern is linear in the input: each one starts with a literal keyword (so a cheap
``in`` prefilter skips it on most text) and is anchored by a negative look-behind on its own body
class, so a match can only start at the beginning of a run of body characters and every run is
scanned once. Private-key blocks are cut with ``str.find`` instead of a regex spanning lines
(gitleaks' regex took seconds on adversarial input under Python's ``re``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

REDACTED = "[REDACTED]"
REDACTED_KEY = "[REDACTED PRIVATE KEY]"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    keywords: tuple[str, ...]
    pattern: re.Pattern[str]


RULES: tuple[Rule, ...] = (
    Rule("aws_access_key_id", ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"),
         re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}(?![A-Z0-9])")),
    Rule("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
         re.compile(r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,}+")),
    Rule("github_pat", ("github_pat_",),
         re.compile(r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,}+")),
    Rule("slack_token", ("xox",),
         re.compile(r"(?<![A-Za-z0-9-])xox[abposre]-[A-Za-z0-9-]{10,}+")),
    Rule("stripe_live_key", ("k_live_",),
         re.compile(r"(?<![A-Za-z0-9_])[sr]k_live_[A-Za-z0-9]{16,}+")),
    Rule("jwt", ("eyJ",),
         re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}+\.eyJ[A-Za-z0-9_-]{8,}+"
                    r"\.[A-Za-z0-9_-]{8,}+")),
)

_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----")


def _redact_private_keys(text: str) -> str:
    if "PRIVATE KEY" not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        begin = _PEM_BEGIN.search(text, pos)
        if begin is None:
            out.append(text[pos:])
            break
        out.append(text[pos:begin.start()])
        out.append(REDACTED_KEY)
        end = _PEM_END.search(text, begin.end())
        if end is None:  # unterminated block: everything after BEGIN may be key material
            break
        pos = end.end()
    return "".join(out)


def redact_text(text: str) -> str:
    """``text`` with every secret-looking value replaced by ``[REDACTED]`` (private keys as a whole)."""
    text = _redact_private_keys(text)
    for rule in RULES:
        if any(keyword in text for keyword in rule.keywords):
            text = rule.pattern.sub(REDACTED, text)
    return text


def redact_bytes(data: bytes) -> bytes:
    """:func:`redact_text` over UTF-8 bytes (undecodable bytes are replaced)."""
    return redact_text(data.decode("utf-8", errors="replace")).encode("utf-8")


@dataclass
class StreamRedactor:
    """Redacts output that arrives in chunks: line by line, holding private-key blocks until they end.

    A line longer than ``max_line`` is processed in ``max_line`` pieces, so memory stays bounded; a
    held key block keeps at most ``max_block`` characters (it is redacted as a whole anyway).
    """

    max_line: int = 65536
    max_block: int = 1 << 20
    _partial: list[str] = field(default_factory=list)
    _partial_len: int = 0
    _block: list[str] | None = None
    _block_len: int = 0

    def feed(self, chunk: str) -> str:
        out: list[str] = []
        start = 0
        while True:
            newline = chunk.find("\n", start)
            if newline < 0:
                rest = chunk[start:]
                if rest:
                    self._partial.append(rest)
                    self._partial_len += len(rest)
                    if self._partial_len >= self.max_line:
                        out.append(self._line(self._take_partial()))
                break
            self._partial.append(chunk[start:newline + 1])
            out.append(self._line(self._take_partial()))
            start = newline + 1
        return "".join(out)

    def flush(self) -> str:
        """Whatever is still held (an unterminated key block comes out redacted)."""
        out = self._line(self._take_partial()) if self._partial else ""
        if self._block is not None:
            out += redact_text("".join(self._block))
            self._block = None
            self._block_len = 0
        return out

    def _take_partial(self) -> str:
        line = "".join(self._partial)
        self._partial.clear()
        self._partial_len = 0
        return line

    def _line(self, line: str) -> str:
        if self._block is not None:
            if self._block_len < self.max_block:
                self._block.append(line)
                self._block_len += len(line)
            if _PEM_END.search(line) is None:
                return ""
            block = "".join(self._block)
            if self._block_len >= self.max_block:  # the middle was dropped; keep the END line's tail
                block += line
            self._block = None
            self._block_len = 0
            return redact_text(block)
        begin = _PEM_BEGIN.search(line)
        if begin is not None and _PEM_END.search(line, begin.end()) is None:
            self._block = [line]
            self._block_len = len(line)
            return ""
        return redact_text(line)
