"""JobForge's one redaction engine: one rule set for logs, step logs, errors, Temporal payloads,
manifests, history capture and replay bundles (always on; pure; linear time whatever the input).

What it removes
---------------
* **Known token formats** (gitleaks / detect-secrets style, :data:`TOKEN_RULES`): AWS key ids,
  GitHub, GitLab, Slack, Stripe, Google, OpenAI/Anthropic-style ``sk-``, npm, PyPI, JWTs, JobForge's
  own API keys and policy tokens, DigitalOcean, Vault, SendGrid, Shopify, Twilio, Mailgun, Square,
  Databricks, age, Hugging Face, Atlassian, Linear. A token is a literal prefix that does not follow
  a character of :attr:`TokenRule.before`, then segments of a character class whose *maximal* run
  must be ``min``..``max`` long.
* **PEM private-key blocks**, ``-----BEGIN ... PRIVATE KEY-----`` to the matching END line, as a
  whole (``[REDACTED PRIVATE KEY]``). An unterminated block runs to the first ``"`` (so JSON text
  stays JSON) or to the end of the text.
* **Key/value shapes** whose name is a secret field name (:func:`is_secret_field`: Sentry's denylist,
  Rails' partial matches, ``*_key``; case, camelCase, ``-``, ``.`` and spaces normalised): JSON and
  Python reprs (``"api_key": "v"``, ``'password': 'v'``, also inside JSON strings at any escape
  level, ``\\"token\\": \\"v\\"``), YAML and HTTP headers (``password: v`` to the end of the line,
  ``Authorization: Bearer v`` keeps the scheme), ``.env`` and shell (``DB_PASSWORD=v``,
  ``export TOKEN="v w"``), query strings (``?token=v&x=1``), ``=>`` hashes and command-line flags
  (``--password v``).
* **Credentials elsewhere**: ``Bearer``/``Basic`` followed by a credential holding a digit, and the
  password of ``scheme://user:password@host``.

Numbers, ``true``/``false``/``null`` (and Python's ``Infinity``/``NaN``), objects and arrays after a
*quoted* name are left alone (so
JSON stays JSON and structured data keeps its types); a colon after an *unquoted* name counts only
when a space follows it (YAML and headers), so ``tokens:issue`` or ``12:30`` are not assignments.

How it runs (the contract both implementations keep)
----------------------------------------------------
One left-to-right scan with a cursor that never moves back. At each position the first character
decides what may start there: ``-`` a PEM block or a ``--flag``, ``:`` a URL (``://``) or a
separator, ``=`` a separator, anything else a token prefix or ``Bearer``/``Basic``. A match becomes
a span, the cursor jumps past it, and what it covered is not looked at again. A separator's name is
read backwards: the quoted string just before it (the nearest earlier quote of the same kind with
the same backslash run, within :data:`NAME_MAX` characters on the same line) or the last
:data:`NAME_MAX` characters of the run of name characters ``[A-Za-z0-9_.-]`` before it. Values stop
at the end of the line, never cross an unescaped ``"`` and never end inside an escape sequence, so
redacting JSON text leaves valid JSON. Everything but PEM blocks is line-local, which is what lets
:class:`StreamRedactor` redact a stream line by line with the same result.

Every step is bounded: a prefix attempt only starts where its ``before`` class does not precede it,
so a run of body characters is scanned at most once per segment; names are read once per
separator and separators' names never overlap; quoted values and PEM blocks move the cursor past
what they scanned, and the next END marker and quote are found once per text (cached, monotonic).
The work is linear in the length of the text with a small constant, on any input (property-tested
by counting work in ``tests/unit/test_redaction_engine.py``; ``bench/security.py`` prints the cost
of adversarial inputs against plain text of the same size).

Two implementations
-------------------
:class:`PyEngine` here is the reference. The optional C accelerator ``shared._native.Redactor``
(see :mod:`shared.security._accel`) runs the same algorithm configured with the same rule set
(:func:`native_config`); ``tests/unit/test_security_native.py`` holds both to identical output on
random, adversarial and hypothesis-generated input. The structured functions (:func:`redact`,
:func:`find_secret`) walk values with an explicit stack and apply the text engine to every string.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.security._accel import Redactor as _NativeRedactor
from shared.security._accel import collector_paused

if TYPE_CHECKING:
    from shared._native import Redactor

__all__ = ["REDACTED", "REDACTED_KEY", "StreamRedactor", "find_secret", "is_secret_field", "redact",
           "redact_text"]

REDACTED = "[REDACTED]"
REDACTED_KEY = "[REDACTED PRIVATE KEY]"
#: names (of a separator, of a flag) are judged on at most this many characters
NAME_MAX = 256
#: spaces allowed between a name and its separator, and between a separator and its value
MAX_SPACES = 8
#: spaces allowed between ``Bearer``/``Basic`` and the credential
MAX_SCHEME_SPACES = 16
#: the structured walks stop this deep (a cyclic value ends there instead of running forever)
MAX_WALK_DEPTH = 10_000
TOO_DEEP = "<too deep>"

UPPER = string.ascii_uppercase
LOWER = string.ascii_lowercase
DIGITS = string.digits
ALNUM = UPPER + LOWER + DIGITS
WORD = ALNUM + "_"
B64URL = WORD + "-"
HEX = DIGITS + "abcdef"
ASCII_WS = " \t\n\r\f\v"


# -- the rule set --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """A maximal run of ``chars`` that must be ``min``..``max`` long (``max`` 0: no bound), after ``lead``."""

    chars: str
    min: int
    max: int = 0
    lead: str = ""


@dataclass(frozen=True, slots=True)
class TokenRule:
    """A known token format: one of ``prefixes``, not preceded by a character of ``before``, then segments."""

    name: str
    prefixes: tuple[str, ...]
    segments: tuple[Segment, ...]
    #: characters that may not precede a prefix ("" = word characters and the first segment's class)
    before: str = ""

    @property
    def blocked_by(self) -> str:
        return self.before or "".join(sorted(set(WORD) | set(self.segments[0].chars)))


TOKEN_RULES: tuple[TokenRule, ...] = (
    TokenRule("aws_access_key_id", ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"),
              (Segment(UPPER + DIGITS, 16, 16),)),
    TokenRule("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), (Segment(ALNUM, 36, 255),)),
    TokenRule("github_pat", ("github_pat_",), (Segment(WORD, 22, 255),)),
    TokenRule("gitlab_token", ("glpat-", "gldt-", "glrt-", "glptt-"), (Segment(B64URL, 20),)),
    TokenRule("slack_token", ("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxr-", "xoxs-", "xoxe-", "xapp-"),
              (Segment(ALNUM + "-", 10),)),
    TokenRule("slack_webhook", ("hooks.slack.com/services/",), (Segment(WORD + "/-", 20),), before=WORD + "."),
    TokenRule("stripe_key", ("sk_live_", "rk_live_", "sk_test_", "rk_test_"), (Segment(ALNUM, 16),)),
    TokenRule("stripe_webhook_secret", ("whsec_",), (Segment(ALNUM + "+/=", 16),)),
    TokenRule("google_api_key", ("AIza",), (Segment(B64URL, 35, 35),)),
    TokenRule("sk_api_key", ("sk-",), (Segment(B64URL, 20),)),
    TokenRule("npm_token", ("npm_",), (Segment(ALNUM, 36, 36),)),
    TokenRule("pypi_token", ("pypi-AgEIcHlwaS5vcmc",), (Segment(B64URL, 50),)),
    TokenRule("jwt", ("eyJ",), (Segment(B64URL, 8), Segment(B64URL, 8, lead=".eyJ"), Segment(B64URL, 8, lead="."))),
    TokenRule("jobforge_api_key", ("jfk_",), (Segment(HEX, 12, 12), Segment(B64URL, 20, lead="_"))),
    TokenRule("jobforge_policy_token", ("jfp_",), (Segment(B64URL, 8), Segment(B64URL, 8, lead="."))),
    TokenRule("digitalocean_token", ("dop_v1_", "doo_v1_", "dor_v1_"), (Segment(HEX, 64, 64),)),
    TokenRule("vault_token", ("hvs.", "hvb."), (Segment(B64URL, 24),)),
    TokenRule("sendgrid_key", ("SG.",), (Segment(B64URL, 22, 22), Segment(B64URL, 43, 43, lead="."))),
    TokenRule("shopify_token", ("shpat_", "shpss_", "shpca_", "shppa_"), (Segment(HEX + "ABCDEF", 32, 32),)),
    TokenRule("twilio_api_key", ("SK",), (Segment(HEX + "ABCDEF", 32, 32),)),
    TokenRule("mailgun_key", ("key-",), (Segment(ALNUM, 32, 32),)),
    TokenRule("square_token", ("sq0atp-", "sq0csp-"), (Segment(B64URL, 22),)),
    TokenRule("databricks_token", ("dapi",), (Segment(HEX, 32, 32),)),
    TokenRule("age_secret_key", ("AGE-SECRET-KEY-1",), (Segment(UPPER + DIGITS, 58, 58),)),
    TokenRule("huggingface_token", ("hf_",), (Segment(UPPER + LOWER, 34, 34),)),
    TokenRule("atlassian_token", ("ATATT3",), (Segment(B64URL + "=", 100),)),
    TokenRule("linear_api_key", ("lin_api_",), (Segment(ALNUM, 40, 40),)),
)

#: Sentry's default denylist (sentry_sdk.scrubber.DEFAULT_DENYLIST): exact names, normalised
SENTRY_DENYLIST = (
    "password", "passwd", "secret", "api_key", "apikey", "auth", "credentials", "mysql_pwd", "privatekey",
    "private_key", "token", "session", "csrftoken", "sessionid", "x_csrftoken", "x_forwarded_for", "set_cookie",
    "cookie", "authorization", "x_api_key", "aiohttp_session", "connect.sid", "csrf_token", "csrf", "_csrf",
    "_csrf_token", "phpsessid", "_session", "symfony", "user_session", "_xsrf", "xsrf_token",
)
#: Rails' filter_parameters partial matches (substrings), plus a few of the same kind
PARTIAL_MATCHES = ("passw", "passphrase", "secret", "token", "crypt", "certificate", "credential", "authorization",
                   "cookie", "api_key", "apikey", "private_key", "access_key", "signing_key", "session")
#: short names matched as whole ``_``-separated words (as substrings they hit 'footprint', 'passenger')
WORD_MATCHES = ("otp", "ssn", "cvv", "cvc", "salt", "pin", "dsn", "pwd", "pass", "pw", "jwt")
#: names ending in ``_key`` that are not secrets
SAFE_KEY_NAMES = ("template_key", "idempotency_key", "sort_key", "partition_key", "primary_key", "foreign_key",
                  "public_key", "cache_key", "object_key", "lookup_key", "group_key")
#: input field names that hold a secret *value* (refused in job inputs by :func:`find_secret`): these
#: endings or an exact denylist name; ``secret_name`` or ``max_tokens`` (references, counts) are fine
VALUE_FIELD_ENDINGS = ("password", "passwd", "secret", "token", "api_key", "apikey", "private_key", "access_key",
                       "secret_key", "client_secret", "authorization", "cookie")
#: unquoted values after a quoted name that are left alone (numbers too): JSON's, and Python's json extras
JSON_LITERALS = ("true", "false", "null", "Infinity", "NaN")
#: ``Authorization: <scheme> <credential>`` keeps the scheme
AUTH_SCHEMES = ("bearer", "basic", "token", "digest", "negotiate", "ntlm")
#: credentials after a bare ``Bearer``/``Basic``
BARE_SCHEMES = ("bearer", "basic")

NAME_CHARS = WORD + ".-"
CREDENTIAL_CHARS = ALNUM + "._~+/=-"
PEM_HEADER_CHARS = UPPER + DIGITS + " "
#: where an unquoted value after ``=`` (or a flag) ends
STOP_EQUALS = ASCII_WS + "\"'\\&;,<>{}[]()|`"
#: where an unquoted value after ``: `` ends (YAML and headers: the end of the line)
STOP_COLON = "\n\r\"\\"
URL_USER_STOP = ASCII_WS + ":/@\"'\\"
URL_PASSWORD_STOP = ASCII_WS + "@/\"'\\"
PEM_BEGIN = "-----BEGIN"
PEM_END = "-----END"
PEM_DASHES = "-----"
PEM_SUFFIXES = ("PRIVATE KEY BLOCK", "PRIVATE KEY")
PEM_MAX_HEADER = 64
PEM_MAX_LABEL = 40


# -- field names ---------------------------------------------------------------------------------

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_FOLD = str.maketrans(UPPER + "- .", LOWER + "___")


def normalize_name(name: str) -> str:
    """``name`` as field names are compared: ASCII whitespace stripped, camelCase split with ``_``,
    ASCII letters lower-cased, ``-``, ``.`` and spaces as ``_`` (other characters kept as they are)."""
    return _CAMEL.sub("_", name.strip(ASCII_WS)).translate(_FOLD)


_DENY = frozenset(normalize_name(n) for n in SENTRY_DENYLIST)
_SAFE = frozenset(normalize_name(n) for n in SAFE_KEY_NAMES)
_WORDS = frozenset(WORD_MATCHES)
_field_cache: dict[str, bool] = {}
_value_cache: dict[str, bool] = {}


def _decide_field(norm: str) -> bool:
    if norm in _DENY:
        return True
    if norm in _SAFE:
        return False
    if any(part in norm for part in PARTIAL_MATCHES):
        return True
    if norm.endswith("_key") or "_key_" in norm:
        return True
    return any(word in _WORDS for word in norm.split("_"))


def is_secret_field(name: str) -> bool:
    """Whether values under the field ``name`` are secrets (Sentry denylist, Rails partials, ``*_key``)."""
    decided = _field_cache.get(name)
    if decided is None:
        decided = _decide_field(normalize_name(name))
        if len(_field_cache) < 8192:
            _field_cache[name] = decided
    return decided


def holds_secret_value(name: str) -> bool:
    """Whether a non-empty string under ``name`` in job inputs is a secret value (stricter than
    :func:`is_secret_field`: references such as ``secret_name`` are allowed)."""
    decided = _value_cache.get(name)
    if decided is None:
        norm = normalize_name(name)
        decided = norm in _DENY or norm.endswith(VALUE_FIELD_ENDINGS)
        if len(_value_cache) < 8192:
            _value_cache[name] = decided
    return decided


# -- the text engine (reference implementation) --------------------------------------------------


def _char_class(chars: str) -> str:
    """A regex character class matching exactly ``chars``."""
    return "[" + "".join("\\" + c if c in "\\]^-[" else c for c in chars) + "]"


_Span = tuple[int, int, str]


def _end(run: re.Pattern[str], text: str, at: int, endpos: int | None = None) -> int:
    """Where the run ``run`` (a starred class, which always matches) starting at ``at`` ends."""
    match = run.match(text, at) if endpos is None else run.match(text, at, endpos)
    assert match is not None
    return match.end()



class PyEngine:
    """The reference implementation of the scan described in the module docstring."""

    def __init__(self) -> None:
        self.rules = TOKEN_RULES
        self._by_pair: dict[str, list[tuple[str, TokenRule, frozenset[str]]]] = {}
        for rule in TOKEN_RULES:
            blocked = frozenset(rule.blocked_by)
            for prefix in rule.prefixes:
                self._by_pair.setdefault(prefix[:2], []).append((prefix, rule, blocked))
        self._prefixes = tuple(dict.fromkeys(p for rule in TOKEN_RULES for p in rule.prefixes))
        self._runs = {chars: re.compile(_char_class(chars) + "*") for chars in
                      {seg.chars for rule in TOKEN_RULES for seg in rule.segments}
                      | {CREDENTIAL_CHARS, PEM_HEADER_CHARS}}
        self._until_eq = re.compile("[^" + _char_class(STOP_EQUALS)[1:] + "*")
        self._until_colon = re.compile("[^" + _char_class(STOP_COLON)[1:] + "*")
        self._until_user = re.compile("[^" + _char_class(URL_USER_STOP)[1:] + "*")
        self._until_password = re.compile("[^" + _char_class(URL_PASSWORD_STOP)[1:] + "*")
        self._quote_stop = re.compile(r"[\n\r\"']")
        self._bare = re.compile("|".join("".join(f"[{c.upper()}{c}]" for c in word) for word in BARE_SCHEMES))
        self._name_chars = frozenset(NAME_CHARS)
        self._word = frozenset(WORD)

    # -- the scan -------------------------------------------------------------------------------

    def _candidates(self, text: str) -> list[int]:
        found: set[int] = set()
        for word in (*self._prefixes, "--", ":", "="):
            at = text.find(word)
            while at >= 0:
                found.add(at)
                at = text.find(word, at + 1)
        found.update(m.start() for m in self._bare.finditer(text))
        return sorted(found)

    def spans(self, text: str, json_keys: bool = True, first_only: bool = False) -> list[_Span]:
        """The redactions of ``text``, left to right and not overlapping: (start, end, replacement)."""
        out: list[_Span] = []
        cursor = 0
        blocks = _Blocks(text)
        for at in self._candidates(text):
            if at < cursor:
                continue
            char = text[at]
            # right after a span, the character before is its replacement's ']' (redacting twice = once)
            after_span = bool(out) and out[-1][1] == at
            span: _Span | None
            if char == "-":
                span = self._pem(text, at, blocks) or self._flag(text, at, after_span)
            elif char == ":":
                span = self._url(text, at) if text.startswith("//", at + 1) else self._assignment(text, at, json_keys)
            elif char == "=":
                span = self._assignment(text, at, json_keys)
            else:
                span = self._token(text, at, after_span) or self._bare_credential(text, at, after_span)
            if span is not None:
                out.extend(self._gap_tokens(text, at, span[0]))
                out.append(span)
                cursor = span[1]
                if first_only:
                    break
        return out

    def _gap_tokens(self, text: str, at: int, start: int) -> list[_Span]:
        """Tokens between a candidate and the span it found (a flag's name, a URL's user, the spaces
        or scheme before a value), which the scan would otherwise step over."""
        found: list[_Span] = []
        k = at + 1
        while k < start:
            after_span = bool(found) and found[-1][1] == k
            token = self._token(text, k, after_span) if text[k:k + 2] in self._by_pair else None
            if token is not None and token[1] <= start:
                found.append(token)
                k = token[1]
            else:
                k += 1
        return found

    def redact_text(self, text: str, json_keys: bool = True) -> str:
        spans = self.spans(text, json_keys)
        if not spans:
            return text
        parts: list[str] = []
        pos = 0
        for start, end, replacement in spans:
            parts.append(text[pos:start])
            parts.append(replacement)
            pos = end
        parts.append(text[pos:])
        return "".join(parts)

    def changes(self, text: str, json_keys: bool = True) -> bool:
        return bool(self.spans(text, json_keys, first_only=True))

    # -- token formats ----------------------------------------------------------------------------

    def _token(self, text: str, at: int, after_span: bool = False) -> _Span | None:
        candidates = self._by_pair.get(text[at:at + 2])
        if not candidates:
            return None
        previous = ("]" if after_span else text[at - 1]) if at else ""
        for prefix, rule, blocked in candidates:
            if previous in blocked or not text.startswith(prefix, at):
                continue
            end = at + len(prefix)
            for segment in rule.segments:
                if segment.lead:
                    if not text.startswith(segment.lead, end):
                        break
                    end += len(segment.lead)
                start = end
                end = _end(self._runs[segment.chars], text, start)
                if end - start < segment.min or (segment.max and end - start > segment.max):
                    break
            else:
                return at, end, REDACTED
        return None

    def _bare_credential(self, text: str, at: int, after_span: bool = False) -> _Span | None:
        if at and not after_span and text[at - 1] in self._word:
            return None
        for word in BARE_SCHEMES:
            piece = text[at:at + len(word)]
            if not (piece.isascii() and piece.lower() == word):
                continue
            after = at + len(word)
            start = after
            while start < len(text) and text[start] == " " and start - after < MAX_SCHEME_SPACES:
                start += 1
            if start == after:
                return None
            end = _end(self._runs[CREDENTIAL_CHARS], text, start)
            if end - start >= 8 and any(c in DIGITS for c in text[start:end]):
                return start, end, REDACTED
            return None
        return None

    # -- private keys -----------------------------------------------------------------------------

    def _pem(self, text: str, at: int, blocks: _Blocks) -> _Span | None:
        if not text.startswith(PEM_BEGIN, at):
            return None
        after = _pem_header(text, at + len(PEM_BEGIN), self._runs[PEM_HEADER_CHARS])
        if after < 0:
            return None
        return at, blocks.end(after, self._runs[PEM_HEADER_CHARS]), REDACTED_KEY

    # -- URLs ---------------------------------------------------------------------------------------

    def _url(self, text: str, at: int) -> _Span | None:
        user = at + 3
        colon = _end(self._until_user, text, user)
        if colon == user or not text.startswith(":", colon):
            return None
        start = colon + 1
        end = _end(self._until_password, text, start)
        if end == start or not text.startswith("@", end):
            return None
        return start, end, REDACTED

    # -- key/value shapes -----------------------------------------------------------------------

    def _assignment(self, text: str, at: int, json_keys: bool) -> _Span | None:
        sep_len = 1
        if text[at] == "=":
            following = text[at + 1:at + 2]
            if following == "=":
                return None
            if following == ">":
                sep_len = 2
        named = _name_before(text, at, self._name_chars)
        if named is None:
            return None
        name, quoted, json_key = named
        if json_key and not json_keys:
            return None
        colon = text[at] == ":"
        if colon and not quoted and not text.startswith(" ", at + 1):
            return None
        if not is_secret_field(name):
            return None
        value = at + sep_len
        limit = value + MAX_SPACES
        while value < len(text) and value < limit and text[value] == " ":
            value += 1
        return self._value(text, value, quoted, self._until_colon if colon else self._until_eq)

    def _flag(self, text: str, at: int, after_span: bool = False) -> _Span | None:
        if not text.startswith("--", at) or (at and not after_span and text[at - 1] in self._name_chars):
            return None
        end = at  # a name ends where another "--" begins: every character is read by one flag at most
        while (end < len(text) and text[end] in self._name_chars and end - at <= NAME_MAX
               and not (end >= at + 2 and text.startswith("--", end))):
            end += 1
        if end - at > NAME_MAX or not text.startswith(" ", end) or not is_secret_field(text[at:end]):
            return None
        value = end
        while value < len(text) and value - end < MAX_SPACES and text[value] == " ":
            value += 1
        if text.startswith("-", value):
            return None
        return self._value(text, value, False, self._until_eq)

    def _value(self, text: str, at: int, quoted_name: bool, until: re.Pattern[str]) -> _Span | None:
        if at >= len(text):
            return None
        char = text[at]
        if char == "\\" or char in "\"'":
            quote = at
            while quote < len(text) and text[quote] == "\\" and quote - at <= NAME_MAX:
                quote += 1
            if quote >= len(text) or text[quote] not in "\"'":
                return None
            start = quote + 1
            end = self._closing(text, start, text[quote], quote - at)
            return (start, end, REDACTED) if end > start else None
        if char in "{[":
            return None
        if quoted_name and _json_literal(text, at, self._word):
            return None
        start = _after_scheme(text, at)
        end = _end(until, text, start)
        return (start, end, REDACTED) if end > start else None

    def _closing(self, text: str, start: int, quote: str, level: int) -> int:
        """Where a quoted value opened at ``level`` (backslashes before its quote) ends: before the
        backslash run of the quote that closes it, at an unescaped ``"``, or at the end of the line."""
        at = start
        while True:
            match = self._quote_stop.search(text, at)
            if match is None:
                return len(text)
            at = match.start()
            char = text[at]
            if char in "\n\r":
                return at
            run = _backslashes_before(text, at, start)
            if (char == '"' and run % 2 == 0) or (char == quote and (run % 2 == 0 or run <= level)):
                return at - run
            at += 1


def _backslashes_before(text: str, at: int, floor: int) -> int:
    run = 0
    while at - run - 1 >= floor and text[at - run - 1] == "\\":
        run += 1
    return run


def _name_before(text: str, sep: int, name_chars: frozenset[str]) -> tuple[str, bool, bool] | None:
    """(name, quoted, a JSON key) of the separator at ``sep``, or None."""
    at = sep - 1
    while at >= 0 and sep - 1 - at < MAX_SPACES and text[at] == " ":
        at -= 1
    if at < 0:
        return None
    char = text[at]
    if char in "\"'":
        run = _backslashes_before(text, at, max(0, at - NAME_MAX - 1))
        if run > NAME_MAX:
            return None
        end = at - run
        opening = text.rfind(char, max(0, end - NAME_MAX - 1), end)
        if opening < 0:
            return None
        name = text[opening + 1:end]
        if "\n" in name or "\r" in name:
            return None
        if _backslashes_before(text, opening, max(0, opening - run - 1)) != run:
            return None
        return name, True, char == '"' and run % 2 == 0
    if char not in name_chars:
        return None
    start = at
    while start > 0 and text[start - 1] in name_chars and at - start + 1 < NAME_MAX:
        start -= 1
    return text[start:at + 1], False, False


def _json_literal(text: str, at: int, word: frozenset[str]) -> bool:
    if text[at] in "-0123456789":
        return True
    for literal in JSON_LITERALS:
        if text.startswith(literal, at):
            after = at + len(literal)
            return after >= len(text) or text[after] not in word
    return False


def _after_scheme(text: str, at: int) -> int:
    """Past ``<scheme> `` when the value starts with an authorization scheme, else ``at``."""
    for scheme in AUTH_SCHEMES:
        piece = text[at:at + len(scheme)]
        if piece.isascii() and piece.lower() == scheme and text.startswith(" ", at + len(scheme)):
            end = at + len(scheme)
            while end < len(text) and text[end] == " " and end - at - len(scheme) < MAX_SCHEME_SPACES:
                end += 1
            return end
    return at


def _pem_header(text: str, at: int, header_run: re.Pattern[str]) -> int:
    """The end of ``<label> PRIVATE KEY[ BLOCK]-----`` starting at ``at`` (after BEGIN or END), or -1."""
    end = _end(header_run, text, at, min(len(text), at + PEM_MAX_HEADER))
    if not text.startswith(PEM_DASHES, end):
        return -1
    label = text[at:end]
    for suffix in PEM_SUFFIXES:
        if label.endswith(suffix):
            return end + len(PEM_DASHES) if len(label) - len(suffix) <= PEM_MAX_LABEL else -1
    return -1


@dataclass
class _Blocks:
    """Where private-key blocks end: the next valid END line and the next ``"``.

    Blocks are asked for in text order, so each search resumes where the last one found its
    answer (or finds that there is none left): every character is searched once per text.
    """

    text: str
    _end_at: int = -2  # the next valid END marker's start (-1: none left, -2: not searched yet)
    _end_stop: int = 0
    _quote_at: int = -2

    def end(self, after: int, header_run: re.Pattern[str]) -> int:
        text = self.text
        if self._end_at == -2 or 0 <= self._end_at < after:
            at = text.find(PEM_END, after)
            stop = -1
            while at >= 0:
                stop = _pem_header(text, at + len(PEM_END), header_run)
                if stop >= 0:
                    break
                at = text.find(PEM_END, at + 1)
            self._end_at, self._end_stop = at, stop
        if self._quote_at == -2 or 0 <= self._quote_at < after:
            self._quote_at = text.find('"', after)
        quote_stop = len(text)
        if self._quote_at >= 0:
            quote_stop = self._quote_at - _backslashes_before(text, self._quote_at, after)
        if 0 <= self._end_at < quote_stop:
            return self._end_stop
        return quote_stop


# -- the engine in use ---------------------------------------------------------------------------


def native_config() -> dict[str, Any]:
    """The rule set as the C accelerator takes it (the same data :class:`PyEngine` runs)."""
    return {
        "tokens": [(prefix, rule.blocked_by, [(seg.lead, seg.chars, seg.min, seg.max) for seg in rule.segments])
                   for rule in TOKEN_RULES for prefix in rule.prefixes],
        "deny": sorted(_DENY), "safe": sorted(_SAFE), "partials": list(PARTIAL_MATCHES), "words": list(WORD_MATCHES),
        "value_endings": list(VALUE_FIELD_ENDINGS), "auth_schemes": list(AUTH_SCHEMES),
        "bare_schemes": list(BARE_SCHEMES), "json_literals": list(JSON_LITERALS), "redacted": REDACTED,
        "redacted_key": REDACTED_KEY,
        "name_max": NAME_MAX, "max_spaces": MAX_SPACES, "max_scheme_spaces": MAX_SCHEME_SPACES,
        "name_chars": NAME_CHARS, "credential_chars": CREDENTIAL_CHARS, "pem_header_chars": PEM_HEADER_CHARS,
        "stop_equals": STOP_EQUALS, "stop_colon": STOP_COLON, "url_user_stop": URL_USER_STOP,
        "url_password_stop": URL_PASSWORD_STOP, "ascii_ws": ASCII_WS, "word": WORD,
        "pem_begin": PEM_BEGIN, "pem_end": PEM_END, "pem_dashes": PEM_DASHES, "pem_suffixes": list(PEM_SUFFIXES),
        "pem_max_header": PEM_MAX_HEADER, "pem_max_label": PEM_MAX_LABEL, "max_walk_depth": MAX_WALK_DEPTH,
        "too_deep": TOO_DEEP,
    }


PYTHON = PyEngine()
#: the engine every caller uses: the C accelerator when built, else the reference
NATIVE: Redactor | None = _NativeRedactor(native_config()) if _NativeRedactor is not None else None


def _exact(text: str) -> str:
    if type(text) is str:
        return text
    if not isinstance(text, str):
        raise TypeError(f"redact_text takes str, not {type(text).__name__}")
    return str.__str__(text)  # a str subclass: its characters, without its methods


def redact_text(text: str, *, json_keys: bool = True) -> str:
    """``text`` with every secret redacted (the same object when nothing is).

    ``json_keys=False`` leaves values under JSON keys (a ``"name":`` whose quote is not escaped)
    to the caller: Temporal's payload codec uses it, since those are JobForge's own typed fields,
    while JSON *inside* strings (a step's output) is still judged.
    """
    text = _exact(text)
    if NATIVE is not None:
        return NATIVE.redact_text(text, json_keys)
    return PYTHON.redact_text(text, json_keys)


def _changes(text: str) -> bool:
    if NATIVE is not None:
        return NATIVE.changes(text)
    return PYTHON.changes(text)


# -- structured values ---------------------------------------------------------------------------


def redact(value: Any, *, keep_types: bool = False) -> Any:
    """A copy of ``value`` with secrets redacted: by field name (:func:`is_secret_field`) and in every
    string (:func:`redact_text`). Tuples become lists, non-JSON objects ``"<TypeName>"``.

    Under a secret field name the whole value becomes ``[REDACTED]``; with ``keep_types`` only the
    strings in it do, and numbers, booleans, null and the shape stay (replay bundles: a replayed
    workflow decodes its recorded inputs into the same types). Explicit stack: no recursion limit.
    """
    with collector_paused():
        if NATIVE is not None:
            done = NATIVE.redact_value(value, keep_types)
            if done is not NotImplemented:
                return done
        return _redact_walk(value, keep_types, redact_text)


def _redact_walk(value: Any, keep_types: bool, text_rule: Callable[[str], str]) -> Any:
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, bool, int]] = [(value, root, 0, False, 0)]
    while stack:
        item, parent, slot, secret, depth = stack.pop()
        out: Any
        if depth > MAX_WALK_DEPTH:
            out = TOO_DEEP
        elif isinstance(item, str):
            out = REDACTED if secret else text_rule(_exact(item))
        elif isinstance(item, dict):
            out = {}
            for key, child in item.items():
                child_secret = secret or (isinstance(key, str) and is_secret_field(key))
                if child_secret and not keep_types:
                    out[key] = REDACTED
                else:
                    out[key] = None
                    stack.append((child, out, key, child_secret, depth + 1))
        elif isinstance(item, list | tuple):
            out = [None] * len(item)
            stack.extend((child, out, index, secret, depth + 1) for index, child in enumerate(item))
        elif item is None or isinstance(item, bool | int | float):
            out = item
        else:
            out = REDACTED if secret else f"<{type(item).__name__}>"
        parent[slot] = out
    return root[0]


def find_secret(value: Any) -> tuple[str, str] | None:
    """(JSON path, why) of the first secret in ``value`` in document order, or None.

    A secret is a non-empty string under a name that holds secret values
    (:func:`holds_secret_value`), or a string the text engine redacts.
    """
    from shared.security.limits import render_path

    if NATIVE is not None:
        found = NATIVE.find_secret(value)
        if found is not NotImplemented:
            if found is None:
                return None
            keys, why = found
            path: Any = None
            for key in keys:
                path = (path, key)
            return render_path(path), why
    return _find_walk(value, render_path, _changes)


def _find_walk(value: Any, render: Callable[[Any], str], changes: Callable[[str], bool]) -> tuple[str, str] | None:
    stack: list[tuple[Any, Any, bool, int]] = [(value, None, False, 0)]
    while stack:
        node, path, named, depth = stack.pop()
        if depth > MAX_WALK_DEPTH:
            continue
        if isinstance(node, str):
            if named and node:
                return render(path), "secret field name"
            if changes(_exact(node)):
                return render(path), "secret-looking value"
        elif isinstance(node, dict):
            stack.extend((child, (path, key), isinstance(key, str) and holds_secret_value(key), depth + 1)
                         for key, child in reversed(list(node.items())))
        elif isinstance(node, list | tuple):
            stack.extend((node[i], (path, i), False, depth + 1) for i in range(len(node) - 1, -1, -1))
    return None


# -- streams -------------------------------------------------------------------------------------


@dataclass
class StreamRedactor:
    """Redacts output that arrives in chunks, line by line, with the result :func:`redact_text` gives
    on the whole text: every rule but private-key blocks is line-local, and a line that opens a block
    is held (with the lines after it) until a line ends it.

    A line longer than ``max_line`` is redacted in ``max_line`` pieces, cut after the last space of
    a piece where there is one, so memory stays bounded; a held block keeps at most ``max_block``
    characters (it is redacted as a whole anyway).
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
                    while self._partial_len >= self.max_line:
                        out.append(self._line(self._take_piece()))
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

    def _take_piece(self) -> str:
        text = self._take_partial()
        cut = text.rfind(" ", 0, self.max_line)
        cut = cut + 1 if cut > self.max_line // 2 else self.max_line
        rest = text[cut:]
        if rest:
            self._partial.append(rest)
            self._partial_len = len(rest)
        return text[:cut]

    def _line(self, line: str) -> str:
        if self._block is not None:
            if self._block_len < self.max_block:
                self._block.append(line)
                self._block_len += len(line)
            if _opens_block(line) or not _closes_block(line):
                return ""  # still inside the block, or this line ends it and opens another
            block = "".join(self._block)
            if self._block_len >= self.max_block:  # the middle was dropped; keep the END line's tail
                block += line
            self._block = None
            self._block_len = 0
            return redact_text(block)
        if _opens_block(line):
            self._block = [line]
            self._block_len = len(line)
            return ""
        return redact_text(line)


_HEADER_RUN = re.compile(_char_class(PEM_HEADER_CHARS) + "*")


def _closes_block(line: str) -> bool:
    """Whether a held private-key block may end in ``line`` (a valid END line or a quote)."""
    if '"' in line:
        return True
    at = line.find(PEM_END)
    while at >= 0:
        if _pem_header(line, at + len(PEM_END), _HEADER_RUN) >= 0:
            return True
        at = line.find(PEM_END, at + 1)
    return False


def _opens_block(line: str) -> bool:
    """Whether ``line`` may leave a private-key block open: its last BEGIN line is not followed by
    an END line or a quote (holding a line that did not need it changes nothing)."""
    at = line.rfind(PEM_BEGIN)
    while at >= 0:
        after = _pem_header(line, at + len(PEM_BEGIN), _HEADER_RUN)
        if after >= 0:
            return not _closes_block(line[after:])
        at = line.rfind(PEM_BEGIN, 0, at)
    return False
