"""The C accelerator (shared._native) and the pure-Python code give the same answers.

Payload limits: the native pre-check accepts exactly what the pure-Python pre-check accepts, never
something the exact walk refuses, and check_structure refuses with the same limit and path either
way. Redaction: the C engine (``Redactor``, configured with the rule set) and the reference
(``PyEngine`` and the Python walks) give identical text, values, verdicts and paths, on random and
adversarial input (deep nesting, huge arrays, str subclasses, non-str keys, big ints, tuples,
non-JSON objects, every PyUnicode kind, characters whose lower case is ASCII).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobforge.errors import PayloadLimitExceeded
from shared.security import _accel, limits, redaction
from shared.security.limits import PayloadLimits, check_structure
from tests.support.depth import examples

ROOT = Path(__file__).resolve().parents[2]


def _compiler_available() -> bool:
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return include.exists() and any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))


if _accel.enabled() and _accel.Redactor is None and _compiler_available():
    pytest.fail("shared._native is not built although a C compiler is here: run `pip install -e .` "
                "(or set JOBFORGE_NATIVE=0 to test the pure-Python path only)", pytrace=False)

try:
    from shared import _native
except ImportError:  # no compiler on this machine: only the pure-Python path can be tested
    _native = None  # type: ignore[assignment]

needs_native = pytest.mark.skipif(_native is None, reason="shared._native is not built")

#: an engine built here too, so JOBFORGE_NATIVE=0 still tests the native code
ENGINE = _native.Redactor(redaction.native_config()) if _native is not None else None
PY = redaction.PYTHON


@pytest.fixture
def python_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """limits and redaction run their pure-Python code for the test's duration."""
    monkeypatch.setattr(limits, "_native_check_limits", None)
    monkeypatch.setattr(redaction, "NATIVE", None)
    yield


def both_paths(fn: Any, *args: Any) -> tuple[Any, Any]:
    """``fn(*args)`` with the accelerator, then without it: each an (outcome, value) pair."""
    saved = (limits._native_check_limits, redaction.NATIVE)

    def run() -> tuple[str, Any]:
        try:
            return "ok", fn(*args)
        except PayloadLimitExceeded as exc:
            return "refused", (exc.message, exc.details)

    try:
        if _native is not None:
            limits._native_check_limits = _native.check_limits
            redaction.NATIVE = ENGINE
        native = run()
        limits._native_check_limits = None
        redaction.NATIVE = None
        python = run()
    finally:
        limits._native_check_limits, redaction.NATIVE = saved
    return native, python


def typed(value: Any) -> list[Any]:
    """``value`` flattened in document order, every node tagged by its type (1, 1.0 and True differ)."""
    out: list[Any] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            out.append(("dict", len(node)))
            for key, child in reversed(node.items()):
                stack.append(child)
                stack.append(key)
        elif isinstance(node, list | tuple):
            out.append((type(node).__name__, len(node)))
            stack.extend(reversed(node))
        else:
            out.append((type(node).__name__, repr(node) if isinstance(node, float) else node))
    return out


# -- strategies ----------------------------------------------------------------------------------


class Name(str):
    """A str subclass (keys and values of this type are not plain JSON to the fast paths)."""


class Opaque:
    """Not JSON at all."""


AWS = "AKIAIOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "a1B2c3D4e5" * 4
STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
SLACK = "xoxb-123456789012-abcdefghijkl"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
JFK = "jfk_0123456789ab_" + "Z" * 43
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA75\n-----END RSA PRIVATE KEY-----"

#: pieces that make the rules fire, almost fire, or fold differently outside ASCII
FRAGMENTS = [
    AWS, GITHUB, STRIPE, SLACK, JWT, JFK, PEM, "-----BEGIN EC PRIVATE KEY-----", "-----END PRIVATE KEY-----",
    "PRIVATE KEY", "AKIA", "ASIA", "ghp_", "gho_", "github_pat_" + "A" * 24, "xox", "xoxp-", "k_live_", "eyJ",
    "eyJaaaaaaaaa.", "sk_test_" + "B" * 20, "rk_test_", "whsec_", "hooks.slack.com/services/" + "T" * 24,
    "jfk_", "jfp_abcdefgh.ijklmnop", "jfp_", "://", "postgres://user:hunter2@db", "https://a:b@c",
    "Bearer ", "bearer\t", "BASIC ", "Basic abcdefgh12", "passw", "PassWord=", "pwd:", "PWD", "secret",
    "SECRET_KEY = x", "Token: ", "token", "tokens", "KEY=", "key", "api-key: v", "credential", "Credentials",
    "authorization", "Authorization: Bearer abcdefghijk", "\u212aey=", "\u212aEY: s3cr3t", "to\u212aen=1",
    "\u0130", "\u0130\u0130", "ß", "é", "\u0100", "\U0001f600", "\U00010400", " ", "  ", "=", ":", "\n", '"',
    "'", "\\", ",", "{", "}", "[", "]", "[REDACTED]", "_", "-", ".", "/", "@",
]
texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=24).map("".join)

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
           | st.text(max_size=12) | texts | st.sampled_from([AWS, GITHUB, JWT])
           | st.builds(Name, st.text(max_size=5)) | st.builds(Opaque) | st.just(b"bytes") | st.just({1, 2}))
keys = (st.text(max_size=8) | st.sampled_from(["password", "token", "note", "api-key", "template_key", "x" * 20])
        | st.builds(Name, st.sampled_from(["a", "password"])) | st.integers(-3, 3) | st.none()
        | st.tuples(st.integers(0, 2)))
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.lists(children, max_size=4).map(tuple)
    | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)
plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | texts,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=8) | texts, children, max_size=6),
    max_leaves=40,
)
limit_sets = st.builds(PayloadLimits, max_bytes=st.just(10**9), max_depth=st.integers(0, 6),
                       max_string=st.integers(0, 30), max_array=st.integers(0, 7))


# -- payload limits ------------------------------------------------------------------------------


@needs_native
@settings(max_examples=examples(ci=100, deep=400), deadline=None)
@given(values | plain_values, limit_sets)
def test_property_native_limits_precheck_agrees(value: Any, lim: PayloadLimits) -> None:
    """The native pre-check says "within limits" exactly when the pure-Python one does, and never
    for a value the exact walk refuses."""
    assert _native is not None
    fast = _native.check_limits(value, lim.max_depth, lim.max_string, lim.max_array)
    assert fast == limits._fast_scan(value, lim)
    if fast:
        assert limits._find_violation(value, lim) is None


@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(values | plain_values, limit_sets)
def test_property_check_structure_same_on_both_paths(value: Any, lim: PayloadLimits) -> None:
    """check_structure accepts, or refuses with the same message, limit and path, on both paths."""
    native, python = both_paths(check_structure, value, lim)
    assert native == python


def deep_lists(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def deep_dicts(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def cyclic() -> Any:
    value: list[Any] = []
    value.append({"again": value})
    return value


ADVERSARIAL_VALUES = {
    "deep_lists": deep_lists(100_000),
    "deep_dicts": deep_dicts(100_000),
    "deep_tuple": (deep_lists(50),),
    "cyclic": cyclic(),
    "huge_array": list(range(200_000)),
    "huge_array_of_dicts": [{"a": i} for i in range(50_000)],
    "wide_dict": {f"k{i}": i for i in range(100_000)},
    "long_string": "x" * 300_000,
    "long_key": {"k" * 200_000: 1},
    "astral_string": "\U0001f600" * 100,
    "big_int": [2**200, -(2**100)],
    "nan_inf": [float("nan"), float("inf"), -float("inf")],
    "str_subclass_value": {"a": Name("x")},
    "str_subclass_key": {Name("a"): 1},
    "int_key": {1: "x"},
    "none_key": {None: "x"},
    "tuple_key": {(1, 2): "x"},
    "object": {"a": [Opaque()]},
    "bytes": {"a": b"x"},
    "set": {"a": {1}},
    "dict_subclass": {"a": type("D", (dict,), {})(b=1)},
    "list_subclass": type("L", (list,), {})([1]),
    "bool_and_none": [True, False, None],
}
BIG = PayloadLimits(max_bytes=10**9, max_depth=10**6, max_string=10**6, max_array=10**6)


@pytest.mark.parametrize("limits_name", ["default", "big", "small", "huge_numbers"])
@pytest.mark.parametrize("name", sorted(ADVERSARIAL_VALUES))
def test_adversarial_limits_same_on_both_paths(name: str, limits_name: str) -> None:
    """Deep nesting (10^5), cycles, huge arrays and odd types: the same verdict, limit and path."""
    lim = {"default": PayloadLimits(), "big": BIG, "small": PayloadLimits(max_depth=2, max_string=3, max_array=2),
           "huge_numbers": PayloadLimits(max_depth=10**30, max_string=10**30, max_array=-(10**30))}[limits_name]
    if name == "cyclic" and lim.max_depth > 100:
        pytest.skip("the exact walk follows a cycle down to the depth limit: too slow here")
    native, python = both_paths(check_structure, ADVERSARIAL_VALUES[name], lim)
    assert native == python


@needs_native
def test_native_limits_are_fast_and_exact_at_the_edges() -> None:
    """At every limit exactly the document passes; one over, the native pre-check says look closer."""
    assert _native is not None
    lim = PayloadLimits(max_depth=3, max_string=5, max_array=4)
    at_limit = {"abcde": [[1, 2, 3, "abcde"]]}
    assert _native.check_limits(at_limit, lim.max_depth, lim.max_string, lim.max_array)
    for over in ({"abcdef": 1}, {"a": "abcdef"}, {"a": [[[1]]]}, [1, 2, 3, 4, 5]):
        assert not _native.check_limits(over, lim.max_depth, lim.max_string, lim.max_array)
    deep = deep_lists(100_000)
    started = time.perf_counter()
    assert _native.check_limits(deep, 10**6, 10, 10)  # 100,001 levels, no recursion
    assert not _native.check_limits(deep, 10, 10, 10)
    assert time.perf_counter() - started < 1


@needs_native
def test_native_limits_overflow_falls_back() -> None:
    """Limits beyond a C integer are judged by the pure-Python pre-check."""
    lim = PayloadLimits(max_depth=10**30, max_string=10**30, max_array=10**30)
    with pytest.raises(OverflowError):
        _native.check_limits([1], lim.max_depth, lim.max_string, lim.max_array)  # type: ignore[union-attr]
    assert limits._within_limits([1], lim)


def test_python_only_fixture_runs_python(python_only: None) -> None:
    """With the accelerator switched off the gate still refuses, naming the path."""
    with pytest.raises(PayloadLimitExceeded) as info:
        check_structure({"a": [1, 2, 3]}, PayloadLimits(max_array=2))
    assert info.value.details["path"] == "$.a"
    assert redaction.redact_text(f"x {AWS}") == "x [REDACTED]"
    assert redaction.NATIVE is None


# -- redaction ---------------------------------------------------------------------------------


def same_text(text: str) -> None:
    assert ENGINE is not None
    for json_keys in (True, False):
        assert ENGINE.redact_text(text, json_keys) == PY.redact_text(text, json_keys), (text, json_keys)
        assert ENGINE.changes(text, json_keys) == PY.changes(text, json_keys)


@needs_native
@settings(max_examples=examples(ci=100, deep=400), deadline=None)
@given(texts)
def test_property_redact_text_same_on_both_paths(text: str) -> None:
    """redact_text gives exactly the same output with and without the accelerator."""
    same_text(text)


@needs_native
@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_property_redact_text_arbitrary_unicode(text: str) -> None:
    """Any Unicode text (every PyUnicode kind), both paths agree."""
    same_text(text)


@needs_native
@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join), st.sampled_from(["", "\u00e9", "\u0100",
                                                                                      "\U0001f600"]))
def test_property_same_in_every_unicode_kind(text: str, marker: str) -> None:
    """The same text held as 1-, 2- and 4-byte PyUnicode redacts the same on both paths."""
    same_text(text + marker)
    same_text(marker + text)


#: names of 1-20 characters (the C engine caches verdicts on names of up to 16 ASCII characters):
#: secret and harmless ones, one character apart, case and separators varied, some not ASCII
SEPARATOR_NAMES = st.text(alphabet="keytoknpasswrd_-.AKEYTOK\u00e9", min_size=1, max_size=20)


@needs_native
@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(st.lists(st.tuples(SEPARATOR_NAMES, st.sampled_from(["=", ": ", "=>", "='", '": "', " = "]),
                          st.text(alphabet="ab1 &\"'", max_size=4)), min_size=1, max_size=60))
def test_property_separator_dense_text_same_on_both_paths(pieces: list[tuple[str, str, str]]) -> None:
    """Text dense with separators whose names repeat, differ by one character, or exceed the cached
    length: the C engine's name-verdict cache (shared by every call on the engine) never changes an
    answer, whatever was judged before."""
    text = "".join(name + sep + value for name, sep, value in pieces)
    same_text(text)
    same_text(text.upper())
    same_text(text * 3)  # the same names again, now answered from the cache


#: every token prefix and every shorter piece of one, with what may follow them
PREFIX_PIECES = [*sorted({p[:k] for rule in redaction.TOKEN_RULES for p in rule.prefixes
                          for k in range(1, len(p) + 1)}), "=", " ", "A" * 16, "x" * 36, "\u00e9"]


@needs_native
@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(st.lists(st.sampled_from(PREFIX_PIECES), max_size=30).map("".join))
def test_property_token_prefix_fragments_same_on_both_paths(text: str) -> None:
    """Token prefixes whole, cut short and run together (the scan's prefix filter on its first three
    characters and the whole-prefix check before scan_token): both paths agree, at the end of the text too."""
    same_text(text)
    same_text(text + "=")


@needs_native
@pytest.mark.parametrize("text", [
    "\u212aey=hunter2",  # KELVIN SIGN: not ASCII, so never a keyword
    "\u212aEY = s3cr3t and AKIAIOSFODNN7EXAMPLE",
    "to\u212aen=abc",
    "\u0130 token=abc",  # lower-casing U+0130 makes the text longer: the engine never lower-cases text
    "\U0001f600 Authorization: Bearer abcdefghijkl",
    "caf\u00e9 password=\u00e9t\u00e9",
    '"p\u00e4ssword": "x", "\u00e9api_key": "y"',
    "x" * 10 + "\u0100" + " secret: v",
    PEM + " trailing token=x",
    "-----BEGIN RSA PRIVATE KEY-----" + "A" * 1000,
    "ghp_" + "x" * 36 + "eyJ" + "ab" * 10,
    "a" * 300 + "_password=x", '"' + "a" * 300 + '_password": "x"', "--" + "p" * 300 + " x",
    '\\\\"token\\\\": \\\\"x\\\\"', "password=\\", "password='abc\\'", 'x = "a\\\\" password": 1',
    "", "k", "ke", "key", ":", "=", "=>", "-", "--", "://", "-----BEGIN", '"', "'", "\\",
])
def test_redact_text_edge_cases_same_on_both_paths(text: str) -> None:
    """Non-ASCII look-alikes, bounds of names, escape levels, empty and one-character texts."""
    same_text(text)


@needs_native
def test_str_subclass_is_redacted_by_its_characters() -> None:
    """A str subclass may override ``find`` or ``lower``: it is redacted as the plain str it holds."""
    class Loud(str):
        def lower(self) -> str:
            return str.upper(self)

        def find(self, *args: Any) -> int:
            return -1

    text = Loud("x token=abc")
    assert redaction.redact_text(text) == "x token=[REDACTED]"
    assert type(redaction.redact_text(text)) is str


NAMES = st.text(alphabet=st.sampled_from("aAbcdeEkKlnoprsStTuwyY_-. \t0\u00e9\u212a"), max_size=20) | st.sampled_from(
    ["password", "apiKey", "X-Api-Key", "template_key", "sortKey", "db_pass", "connect.sid", "MySQL_PWD", "a_key_b",
     "pin", "ping", "secret_name", "max_tokens", "AccountKey", "PHPSESSID", " token ", "\u212aey"])


@needs_native
@settings(max_examples=examples(ci=100, deep=500), deadline=None)
@given(NAMES)
def test_property_field_names_same_on_both_paths(name: str) -> None:
    """is_secret_field and holds_secret_value agree between C and Python for any name."""
    assert ENGINE is not None
    assert ENGINE.is_secret_field(name) == redaction.is_secret_field(name)
    assert ENGINE.holds_secret_value(name) == redaction.holds_secret_value(name)


@needs_native
@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(values | plain_values, st.booleans())
def test_property_redact_same_on_both_paths(value: Any, keep_types: bool) -> None:
    """redact gives the same output, type for type, with and without the accelerator."""
    native, python = both_paths(lambda v: redaction.redact(v, keep_types=keep_types), value)
    assert typed(native[1]) == typed(python[1])


@needs_native
@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(values | plain_values)
def test_property_find_secret_same_on_both_paths(value: Any) -> None:
    """find_secret names the same path and reason with and without the accelerator."""
    native, python = both_paths(redaction.find_secret, value)
    assert native == python


#: the limits' adversarial values at sizes a Python walk takes in well under a second
REDACT_VALUES = {**ADVERSARIAL_VALUES, "deep_lists": deep_lists(20_000), "deep_dicts": deep_dicts(20_000),
                 "huge_array": list(range(20_000)), "huge_array_of_dicts": [{"a": i} for i in range(5_000)],
                 "wide_dict": {f"k{i}": i for i in range(10_000)}}


@needs_native
@pytest.mark.parametrize("name", sorted(REDACT_VALUES))
def test_adversarial_redact_same_on_both_paths(name: str) -> None:
    """Deep nesting, cycles, huge arrays, odd keys and types: redact and find_secret agree on both paths."""
    value = REDACT_VALUES[name]
    for keep_types in (False, True):
        native, python = both_paths(functools.partial(redaction.redact, keep_types=keep_types), value)
        assert typed(native[1]) == typed(python[1])
    native, python = both_paths(redaction.find_secret, value)
    assert native == python


@needs_native
def test_native_walk_leaves_what_is_not_plain_to_python() -> None:
    """Str and container subclasses and non-str keys make the C walks answer NotImplemented."""
    assert ENGINE is not None
    for value in ({Name("a"): 1}, {1: "x"}, [Name("x")], {"a": type("D", (dict,), {})(b=1)}):
        assert ENGINE.redact_value(value, False) is NotImplemented
        assert ENGINE.find_secret(value) is NotImplemented
    assert ENGINE.redact_value({"a": [Opaque()]}, False) is NotImplemented
    assert ENGINE.find_secret({"a": [Opaque(), "token=x"]}) == (["a", 1], "secret-looking value")


@needs_native
def test_redactor_rejects_bad_config() -> None:
    """The engine refuses a configuration it could not run exactly."""
    assert _native is not None
    config = redaction.native_config()
    for key, bad, error in [("tokens", [("a", "", [("", "x", 1, 0)])], ValueError),
                            ("deny", ["\u00e9"], ValueError), ("name_chars", 5, TypeError),
                            ("tokens", [("ab", "", [])], ValueError)]:
        with pytest.raises(error):
            _native.Redactor({**config, key: bad})
    with pytest.raises(KeyError):
        _native.Redactor({})


ADVERSARIAL_TEXTS = {
    "jwt": "eyJ-" * 30_000,
    "aws": "AKIA" * 30_000,
    "pem_unterminated": "-----BEGIN RSA PRIVATE KEY-----" + "A" * 100_000,
    "pem_quoted": '-----BEGIN RSA PRIVATE KEY-----\\"' * 4_000,
    "url_user": "postgres://" + "u:" * 50_000,
    "assignment": "password=" * 13_000,
    "json_names": '{"password": "x", "token_count": 3, ' * 3_000,
    "escaped_json": '\\"api_key\\": \\"x\\", ' * 5_000,
    "bearer": "bearer " * 17_000,
    "kelvin": "\u212aey=" * 20_000,
    "mixed": ("eyJ" + "-" * 7 + "." + "AKIA" + " password: " + "ghp_" + "\u0130") * 3_000,
}


@needs_native
@pytest.mark.parametrize("name", sorted(ADVERSARIAL_TEXTS))
def test_adversarial_text_same_on_both_paths(name: str) -> None:
    """Inputs built to trip backtracking: the same output on both paths."""
    same_text(ADVERSARIAL_TEXTS[name])


def test_environment_switch_forces_python() -> None:
    """JOBFORGE_NATIVE=0 at import runs the pure-Python code."""
    env = {**os.environ, "JOBFORGE_NATIVE": "0"}
    code = ("from shared.security import _accel, limits, redaction; "
            "assert _accel.IMPLEMENTATION == 'python'; "
            "assert limits._native_check_limits is None and redaction.NATIVE is None; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


@needs_native
def test_accelerator_is_used_when_built() -> None:
    """Unless JOBFORGE_NATIVE=0, limits and redaction use the built accelerator."""
    if not _accel.enabled():
        pytest.skip("JOBFORGE_NATIVE=0 in this run")
    assert _accel.IMPLEMENTATION == "native"
    assert limits._native_check_limits is not None and redaction.NATIVE is not None
