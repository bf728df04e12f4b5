"""Deep redaction by field name and by value pattern (always on; pure, linear time).

Text rules extend :mod:`shared.redaction` (AWS, GitHub, Slack, Stripe live, JWT, PEM private keys)
with Stripe test / webhook secrets, Slack webhooks, JobForge's own API keys and policy tokens,
``Bearer``/``Basic`` credentials, passwords inside URLs and ``secret=value`` assignments. Every
pattern is anchored at the start of a run of its own characters (negative look-behind) and uses
possessive or bounded quantifiers, so each run is scanned a bounded number of times.

Field names follow Sentry's default denylist (exact) and Rails' ``filter_parameters`` partial
matches, after normalising case and ``-`` → ``_``. Rails' ``_key`` partial is kept except for the
names JobForge itself uses for non-secrets (``template_key``, ``idempotency_key``, ...); ``email``
is not treated as a secret (it is personal data, not a credential).

Cost. A rule's pattern runs only where one of its keywords occurs, so most of the work on ordinary
text is finding out that no keyword does. With the optional C accelerator (``shared._native``, see
:mod:`shared.security._accel`) one pass over the text answers that for all 34 keywords at once (a
table of every keyword's first two characters, then a compare); the case-insensitive keywords are
matched with ASCII letters folded, and text that is not ASCII is lower-cased first, exactly as the
pure-Python path searches ``text.lower()``. The search runs again whenever a rule changed the text,
so every rule sees the same text either way and the output is identical (see
``tests/unit/test_security_native.py``). Without the accelerator each keyword is one ``in`` test.
:func:`redact` on a large document serialises it once (``orjson.dumps``), collects its distinct keys
(in C with the accelerator) and, when no key is a secret field name, redacts the serialised text
as a whole; on a 1 MB document that is about 0.2-0.8x of ``orjson.loads`` with the accelerator and
about 2-5x without it (``bench/security.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.redaction import _PEM_BEGIN, _PEM_END, REDACTED, RULES, _redact_private_keys
from shared.security._accel import Matcher as _NativeMatcher
from shared.security._accel import collect_keys as _native_collect_keys

if TYPE_CHECKING:
    from shared._native import Matcher

__all__ = ["REDACTED", "StreamRedactor", "find_secret", "is_secret_field", "redact", "redact_text"]


@dataclass(frozen=True, slots=True)
class TextRule:
    """A pattern tried only where one of its keywords occurs.

    ``keywords`` are searched with ``str.find`` (in the lower-cased text when ``fold``); from each
    occurrence the match start is found by walking back at most ``back`` characters of
    ``back_chars``, and ``pattern`` is *matched* there (it carries its own look-behind). Each
    occurrence inside an earlier match is skipped, so a run of text is matched a bounded number of
    times: linear, and most of a large text is never touched by the regex engine at all.
    """

    name: str
    keywords: tuple[str, ...]
    pattern: re.Pattern[str]
    replacement: str = REDACTED
    fold: bool = False
    back: int = 0
    back_chars: frozenset[str] = frozenset()


_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SCHEME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-")
_ASSIGNED_NAMES = r"passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|authorization"

EXTRA_RULES: tuple[TextRule, ...] = (
    TextRule("stripe_test_or_webhook_secret", ("sk_test_", "rk_test_", "whsec_"),
             re.compile(r"(?<![A-Za-z0-9_])(?:[sr]k_test_|whsec_)[A-Za-z0-9+/=]{16,}+")),
    TextRule("slack_webhook", ("hooks.slack.com",), re.compile(r"hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}+")),
    TextRule("jobforge_api_key", ("jfk_",), re.compile(r"(?<![A-Za-z0-9_])jfk_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}+")),
    TextRule("jobforge_policy_token", ("jfp_",),
             re.compile(r"(?<![A-Za-z0-9_])jfp_[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,}+")),
    TextRule("http_credentials", ("bearer", "basic"),
             re.compile(r"(?<![A-Za-z0-9_])(bearer|basic)(\s{1,16}+)[A-Za-z0-9._~+/=-]{8,}+", re.IGNORECASE),
             r"\1\2" + REDACTED, fold=True),
    TextRule("url_password", ("://",),
             re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]{0,30}+://[^\s:/@\"'\\]{1,256}+:)"
                        r"[^\s@/\"'\\]{1,256}+@"),
             r"\1" + REDACTED + "@", back=31, back_chars=_SCHEME_CHARS),
    TextRule("assignment", ("passw", "pwd", "secret", "token", "key", "credential", "authorization"),
             re.compile(r"(?<![A-Za-z0-9_])([A-Za-z0-9_-]{0,40}?(?:" + _ASSIGNED_NAMES + r")[A-Za-z0-9_-]{0,40}+"
                        r"\s{0,8}+[=:]\s{0,8}+)(?!(?:bearer|basic)\s)[^\s\"'\\,;&<>{}\[\]]{1,4096}+",
                        re.IGNORECASE),
             r"\1" + REDACTED, fold=True, back=40, back_chars=_NAME_CHARS),
)


def _spans(text: str, folded: str | None, present: int | None = None) -> list[tuple[int, int, str]]:
    """(start, end, replacement) of every match of the extra rules.

    ``present``: the :data:`_MATCHER` bits of the keywords that occur (in ``text``, or in ``folded``
    for folding rules), or None to search for them here.
    """
    found: list[tuple[int, int, str]] = []
    for index, rule in enumerate(EXTRA_RULES):
        if rule.fold and folded is None:  # lower-casing changed the length: let the regex scan it all
            found.extend((m.start(), m.end(), m.expand(rule.replacement)) for m in rule.pattern.finditer(text))
            continue
        haystack = folded if rule.fold and folded is not None else text
        if present is not None:
            if not present & _EXTRA_BITS[index]:
                continue
        elif not any(word in haystack for word in rule.keywords):
            continue
        tried: set[int] = set()
        covered = -1
        hits = sorted({at for word in rule.keywords for at in _occurrences(haystack, word)})
        for at in hits:
            if at < covered:
                continue
            start = at
            while start > 0 and at - start < rule.back and text[start - 1] in rule.back_chars:
                start -= 1
            for begin in range(start, at + 1) if rule.back else (at,):
                if begin in tried:
                    continue
                tried.add(begin)
                match = rule.pattern.match(text, begin)
                if match is not None and match.end() > at:
                    found.append((match.start(), match.end(), match.expand(rule.replacement)))
                    covered = match.end()
                    break
    return found


def _occurrences(haystack: str, word: str) -> list[int]:
    out: list[int] = []
    at = haystack.find(word)
    while at >= 0:
        out.append(at)
        at = haystack.find(word, at + 1)
    return out


def _gate(words: tuple[str, ...]) -> str:
    """The longest prefix all ``words`` share: one cheap ``in`` test before testing each word."""
    prefix = words[0] if words else ""
    for word in words[1:]:
        while not word.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


_BASE_GATES = tuple(_gate(rule.keywords) for rule in RULES)


def _redact_known_tokens(text: str) -> str:
    """:func:`shared.redaction.redact_text`, rule for rule, with a shared-prefix test before the keywords."""
    text = _redact_private_keys(text)
    for rule, gate in zip(RULES, _BASE_GATES, strict=True):
        if (not gate or gate in text) and any(keyword in text for keyword in rule.keywords):
            text = rule.pattern.sub(REDACTED, text)
    return text


# -- the keyword search in one pass (shared._native.Matcher) --------------------------------------

_PEM_WORD = "PRIVATE KEY"  # the test of shared.redaction._redact_private_keys
_EXACT_WORDS: tuple[str, ...] = tuple(dict.fromkeys(
    (_PEM_WORD, *(w for rule in RULES for w in rule.keywords),
     *(w for rule in EXTRA_RULES if not rule.fold for w in rule.keywords))))
_FOLD_WORDS: tuple[str, ...] = tuple(dict.fromkeys(w for rule in EXTRA_RULES if rule.fold for w in rule.keywords))


def _bits(words: tuple[str, ...], offset: int, wanted: tuple[str, ...]) -> int:
    return sum(1 << (offset + words.index(w)) for w in set(wanted))


_PEM_BIT = _bits(_EXACT_WORDS, 0, (_PEM_WORD,))
_RULE_BITS = tuple(_bits(_EXACT_WORDS, 0, rule.keywords) for rule in RULES)
_EXTRA_BITS = tuple(_bits(_FOLD_WORDS, len(_EXACT_WORDS), rule.keywords) if rule.fold
                    else _bits(_EXACT_WORDS, 0, rule.keywords) for rule in EXTRA_RULES)
_EXACT_MASK = (1 << len(_EXACT_WORDS)) - 1
_FOLD_MASK = ((1 << len(_FOLD_WORDS)) - 1) << len(_EXACT_WORDS)
_ALL_MASK = _EXACT_MASK | _FOLD_MASK

#: one pass finds which keywords occur: exact words as they are, fold words in ``text.lower()``
_MATCHER = _NativeMatcher(_EXACT_WORDS, _FOLD_WORDS) if _NativeMatcher is not None else None


def _present(matcher: Matcher, text: str) -> tuple[int, str | None]:
    """(bits of the keywords that occur, ``text.lower()`` or None when lower-casing changed the length).

    The fold words are matched with ASCII letters folded, which is the search in ``text.lower()``
    for ASCII text; other text is lower-cased first, as the pure-Python path does. For ASCII text
    the folded text is not built here (``""`` stands for "same length, build it when needed").
    """
    if text.isascii():
        return matcher.search(text, _ALL_MASK), ""
    bits = matcher.search(text, _EXACT_MASK)
    folded = text.lower()
    if len(folded) != len(text):
        return bits, None
    return bits | matcher.search(folded, _FOLD_MASK), folded


def _redact_text_native(text: str, matcher: Matcher) -> str:
    """:func:`_redact_text_python` with every ``keyword in text`` answered by one pass of ``matcher``.

    The bits are searched again whenever a rule changed the text, so each test sees the text the
    pure-Python path would test.
    """
    bits, folded = _present(matcher, text)
    if not bits and folded is not None:
        return text  # no keyword anywhere: no rule can match
    if bits & _PEM_BIT:
        changed = _redact_private_keys(text)
        if changed is not text:
            text = changed
            bits, folded = _present(matcher, text)
    for rule, rule_bits in zip(RULES, _RULE_BITS, strict=True):
        if bits & rule_bits:
            changed = rule.pattern.sub(REDACTED, text)
            if changed is not text:
                text = changed
                bits, folded = _present(matcher, text)
    if folded == "":
        folded = text.lower() if bits & _FOLD_MASK else text  # text stands in: no folding rule will look
    return _apply(text, _spans(text, folded, bits))


def redact_text(text: str) -> str:
    """``text`` with every secret-looking value replaced by ``[REDACTED]``.

    The rules of :mod:`shared.redaction` (applied exactly as its ``redact_text`` does) and then
    :data:`EXTRA_RULES`. With the C accelerator, one pass over the text finds which rules' keywords
    occur (usually none), instead of one ``in`` test per keyword.
    """
    matcher = _MATCHER
    if matcher is not None and type(text) is str:
        return _redact_text_native(text, matcher)
    return _redact_text_python(text)


def _redact_text_python(text: str) -> str:
    text = _redact_known_tokens(text)
    folded = text.lower()
    return _apply(text, _spans(text, folded if len(folded) == len(text) else None))


def _apply(text: str, spans: list[tuple[int, int, str]]) -> str:
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    pos = 0
    for start, end, replacement in spans:
        if start < pos:
            continue  # overlaps an earlier redaction, which already covers it
        out.append(text[pos:start])
        out.append(replacement)
        pos = end
    out.append(text[pos:])
    return "".join(out)


# -- field names ---------------------------------------------------------------------------------

#: Sentry's default denylist (sentry_sdk.scrubber.DEFAULT_DENYLIST), normalised
SENTRY_DENYLIST = frozenset({
    "password", "passwd", "secret", "api_key", "apikey", "auth", "credentials", "mysql_pwd", "privatekey",
    "private_key", "token", "session", "csrftoken", "sessionid", "x_csrftoken", "x_forwarded_for", "set_cookie",
    "cookie", "authorization", "x_api_key", "aiohttp_session", "connect.sid", "csrf_token", "csrf", "_csrf",
    "_csrf_token", "phpsessid", "_session", "symfony", "user_session", "_xsrf", "xsrf_token",
})
#: Rails' filter_parameters partial matches (substring), plus a few of the same kind
PARTIAL_MATCHES = ("passw", "secret", "token", "crypt", "certificate", "credential", "authorization", "cookie",
                   "api_key", "apikey", "private_key", "access_key", "signing_key", "session")
#: short Rails partials matched as whole ``_``-separated words (as substrings they hit 'footprint')
WORD_MATCHES = frozenset({"otp", "ssn", "cvv", "cvc", "salt", "pin", "dsn", "pwd"})
#: names ending in ``_key`` that JobForge uses for non-secrets
SAFE_KEY_NAMES = frozenset({"template_key", "idempotency_key", "sort_key", "partition_key", "primary_key",
                            "foreign_key", "public_key", "cache_key", "object_key", "lookup_key", "group_key"})

_field_cache: dict[str, bool] = {}


def _decide_field(name: str) -> bool:
    norm = name.strip().lower().replace("-", "_")
    if norm in SENTRY_DENYLIST:
        return True
    if norm in SAFE_KEY_NAMES:
        return False
    if any(part in norm for part in PARTIAL_MATCHES):
        return True
    if norm.endswith("_key") or "_key_" in norm:
        return True
    return any(word in WORD_MATCHES for word in norm.split("_"))


def is_secret_field(name: str) -> bool:
    """Whether values under the field ``name`` are secrets (Sentry denylist + Rails partials)."""
    decided = _field_cache.get(name)
    if decided is None:
        decided = _decide_field(name)
        if len(_field_cache) < 8192:
            _field_cache[name] = decided
    return decided


# -- structured values ---------------------------------------------------------------------------


_PLAIN = frozenset({dict, list, tuple, str, int, float, bool, type(None)})
_SEQUENCES = frozenset({list, tuple})


def _keys(value: Any) -> set[Any] | None:
    """Every dict key anywhere in ``value``, level by level at C speed; None for non-plain types."""
    from itertools import chain, compress, repeat
    from operator import is_

    keys: set[Any] = set()
    frontier = [value]
    while frontier:
        types = list(map(type, frontier))
        if not _PLAIN.issuperset(types):
            return None
        dicts = list(compress(frontier, map(is_, types, repeat(dict))))
        keys.update(chain.from_iterable(dicts))
        sequences = compress(frontier, map(_SEQUENCES.__contains__, types))
        frontier = list(chain(chain.from_iterable(map(dict.values, dicts)), chain.from_iterable(sequences)))
    return keys


def _collect_keys(value: Any) -> set[Any] | None:
    """:func:`_keys`, by the C accelerator when it can decide."""
    if _native_collect_keys is not None:
        keys = _native_collect_keys(value)
        if keys is not False:
            return keys
    return _keys(value)


def redact(value: Any) -> Any:
    """``value`` with secret fields replaced and secret-looking strings redacted.

    Large JSON documents take a fast path: when no key is a secret field name and the serialised
    text needs no redaction, ``value`` itself comes back (nothing was copied); when only values
    need redaction, the redacted text is parsed back. Everything else is walked with an explicit
    stack (no recursion limit); non-JSON objects are replaced by their type name.
    """
    if isinstance(value, dict | list) and value:
        import orjson

        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            text = None
        keys = _collect_keys(value) if text is not None else None
        if keys is not None and not any(isinstance(k, str) and is_secret_field(k) for k in keys):
            assert text is not None
            cleaned = redact_text(text)
            if cleaned == text:
                return value
            try:
                return orjson.loads(cleaned)
            except orjson.JSONDecodeError:
                pass  # a redaction crossed string boundaries (an unterminated key): walk instead
    return _redact_walk(value)


def _redact_walk(value: Any) -> Any:
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while stack:
        item, parent, slot = stack.pop()
        if isinstance(item, str):
            out: Any = redact_text(item)
        elif isinstance(item, dict):
            out = {}
            for key, child in item.items():
                if isinstance(key, str) and is_secret_field(key):
                    out[key] = REDACTED
                else:
                    out[key] = None
                    stack.append((child, out, key))
        elif isinstance(item, list | tuple):
            out = [None] * len(item)
            stack.extend((child, out, index) for index, child in enumerate(item))
        elif item is None or isinstance(item, bool | int | float):
            out = item
        else:
            out = f"<{type(item).__name__}>"
        parent[slot] = out
    return root[0]


# -- secrets where they must not be --------------------------------------------------------------

#: input field names that hold a secret *value* (exact Sentry names, or these endings); names such
#: as ``secret_name`` or ``max_tokens`` (references, counts) stay allowed
_VALUE_FIELD_ENDINGS = ("password", "passwd", "secret", "token", "api_key", "apikey", "private_key",
                        "access_key", "secret_key", "client_secret", "authorization", "cookie")


def _holds_secret_value(name: str) -> bool:
    norm = name.strip().lower().replace("-", "_")
    return norm in SENTRY_DENYLIST or norm.endswith(_VALUE_FIELD_ENDINGS)


def find_secret(value: Any) -> tuple[str, str] | None:
    """(JSON path, why) of the first secret-looking value in ``value``, or None.

    A secret is a non-empty string under a secret field name, or a string a text rule redacts.
    The common case (nothing found) costs one serialisation and one pass of the text rules.
    """
    import orjson

    from shared.security.limits import render_path

    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = None
    if text is not None and redact_text(text) == text and not any(
            _holds_secret_value(name) for name in _field_names(value)):
        return None
    stack: list[tuple[Any, Any]] = [(value, None)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, child in reversed(list(node.items())):
                if isinstance(key, str) and _holds_secret_value(key) and isinstance(child, str) and child:
                    return render_path((path, key)), "secret field name"
                stack.append((child, (path, key)))
        elif isinstance(node, list | tuple):
            stack.extend((node[i], (path, i)) for i in range(len(node) - 1, -1, -1))
        elif isinstance(node, str) and redact_text(node) != node:
            return render_path(path), "secret-looking value"
    return None


def _field_names(value: Any) -> set[str]:
    names: set[str] = set()
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            names.update(key for key in node if isinstance(key, str))
            stack.extend(child for child in node.values() if isinstance(child, dict | list | tuple))
        elif isinstance(node, list | tuple):
            stack.extend(child for child in node if isinstance(child, dict | list | tuple))
    return names


# -- streams -------------------------------------------------------------------------------------


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
