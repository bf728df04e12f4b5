"""Payload limits: sizes, depth, strings, arrays, the JSON path of a violation, linear time."""

from __future__ import annotations

import gc
import re
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobforge.errors import (
    InvalidInputs,
    InvalidRequest,
    PayloadLimitExceeded,
    PayloadTooLarge,
    SecretInInputs,
    UnstorableText,
)
from jobforge.models import JobRun
from shared.admission import judge
from shared.flags import Flag
from shared.security import limits as limits_module
from shared.security.limits import (
    PayloadLimits,
    check_payload,
    check_size,
    check_storable,
    check_structure,
    find_unstorable,
    parse_and_check,
    pg_text,
    render_path,
    storable,
)
from shared.settings import Settings
from shared.templates import load_registry
from tests.support.depth import examples

SMALL = PayloadLimits(max_bytes=1000, max_depth=3, max_string=10, max_array=4)


def nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_defaults_are_the_threat_model_seeds() -> None:
    """The defaults are 1 MiB, depth 10, strings of 100,000 chars and arrays of 10,000 items."""
    assert PayloadLimits() == PayloadLimits(1_048_576, 10, 100_000, 10_000)


def test_within_limits_passes() -> None:
    """A document at every limit exactly is accepted."""
    check_payload({"a": [1, 2, 3, "x" * 10], "b": {"c": None}}, SMALL)
    check_structure(nest(3), SMALL)


def test_depth_names_limit_and_path() -> None:
    """One level too deep is refused, naming max_depth and the path of the container that broke it."""
    with pytest.raises(PayloadLimitExceeded) as info:
        check_structure({"x": [{"y": {"z": 1}}]}, SMALL)
    assert info.value.details["limit"] == "max_depth"
    assert info.value.details["path"] == "$.x[0].y"
    assert "max_depth" in info.value.message and "$.x[0].y" in info.value.message


def test_string_and_key_lengths() -> None:
    """A long string value or a long key is refused with its path."""
    with pytest.raises(PayloadLimitExceeded) as info:
        check_structure({"ok": ["fine", "x" * 11]}, SMALL)
    assert (info.value.details["limit"], info.value.details["path"]) == ("max_string", "$.ok[1]")
    with pytest.raises(PayloadLimitExceeded) as info:
        check_structure({"k" * 11: 1}, SMALL)
    assert info.value.details["limit"] == "max_string"
    assert info.value.details["path"] == "$." + "k" * 11


def test_array_length_and_odd_keys_in_path() -> None:
    """A long array is refused; keys that are not identifiers are quoted in the path."""
    with pytest.raises(PayloadLimitExceeded) as info:
        check_structure({"a b": [1, 2, 3, 4, 5]}, SMALL)
    assert (info.value.details["limit"], info.value.details["path"]) == ("max_array", "$['a b']")


def test_size_limit_is_checked_before_parsing() -> None:
    """Bytes over max_bytes are refused as payload_too_large without being parsed."""
    with pytest.raises(PayloadTooLarge) as info:
        parse_and_check(b"{" * 2000, SMALL)
    assert info.value.details == {"limit": "max_bytes", "allowed": 1000, "actual": 2000}
    with pytest.raises(PayloadTooLarge):
        check_size(1001, SMALL)
    check_size(1000, SMALL)


def test_bad_json_is_invalid_request() -> None:
    """Bytes that are not JSON are an invalid request."""
    with pytest.raises(InvalidRequest):
        parse_and_check(b"{nope", SMALL)


def test_non_json_values_are_refused() -> None:
    """A value that JSON cannot carry is refused with its path."""
    with pytest.raises(PayloadLimitExceeded) as info:
        check_structure({"a": [object()]}, SMALL)
    assert info.value.details["path"] == "$.a[0]"


def test_very_deep_document_needs_no_recursion() -> None:
    """100,000 levels of nesting are refused quickly, with no RecursionError."""
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    started = time.perf_counter()
    with pytest.raises(PayloadLimitExceeded) as info:
        check_structure(deep)
    assert info.value.details["limit"] == "max_depth"
    assert time.perf_counter() - started < 2


def test_work_is_linear() -> None:
    """Checking a document 8x larger takes far less than 64x longer (no quadratic work)."""
    def doc(n: int) -> Any:
        return [{"id": i, "name": f"n{i}", "tags": ["a", "b"]} for i in range(n)]

    def best(value: Any) -> float:  # CPU time, min of repeats: other processes are not charged to it
        times = []
        for _ in range(5):
            started = time.thread_time()
            check_structure(value, limits)
            times.append(time.thread_time() - started)
        return min(times)

    limits = PayloadLimits(max_array=10**7)
    small, large = doc(5_000), doc(40_000)
    assert best(large) < 24 * best(small) + 0.01


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=15),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=40,
)


def reference(value: Any, limits: PayloadLimits, depth: int = 0) -> str | None:
    """A plain recursive statement of the limits, to hold the fast walk to."""
    if isinstance(value, dict | list):
        if depth + 1 > limits.max_depth:
            return "max_depth"
        if isinstance(value, list) and len(value) > limits.max_array:
            return "max_array"
        items = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
        broken = [reason for key, child in items
                  for reason in [("max_string" if key is not None and len(key) > limits.max_string else None),
                                 reference(child, limits, depth + 1)] if reason]
        return broken[0] if broken else None
    if isinstance(value, str) and len(value) > limits.max_string:
        return "max_string"
    return None


@settings(max_examples=examples(ci=100, deep=300), deadline=None)
@given(json_values)
def test_property_fast_walk_agrees_with_the_reference(value: Any) -> None:
    """For any JSON value, the checker refuses exactly when the recursive reference finds a violation."""
    expected = reference(value, SMALL)
    try:
        check_structure(value, SMALL)
    except PayloadLimitExceeded as exc:
        assert expected is not None, exc.message
        assert exc.details["path"].startswith("$")
    else:
        assert expected is None


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_property_size_is_the_serialised_length(value: Any) -> None:
    """check_payload refuses exactly the documents whose JSON is longer than max_bytes."""
    limits = PayloadLimits(max_bytes=60, max_depth=100, max_string=10**6, max_array=10**6)
    size = len(orjson.dumps(value))
    if size > 60:
        with pytest.raises(PayloadTooLarge):
            check_payload(value, limits)
    else:
        check_payload(value, limits)


# -- text the store cannot hold -------------------------------------------------------------------

BAD_CHARS = ["\x00", "\ud800", "\udfff", "\udc00"]
bad_text = st.builds(lambda a, bad, b: a + bad + b, st.text(max_size=5), st.sampled_from(BAD_CHARS),
                     st.text(max_size=5))
#: storable text whose JSON holds ``\\u0000``-like bytes (an escaped backslash, then ``u0000``)
LOOKALIKES = ["\\u0000", "\\\\u0000", "\\", "u0000", "\\\\\\u0000"]
lookalike_text = st.lists(st.sampled_from([*LOOKALIKES, "a"]), min_size=1, max_size=4).map("".join)
any_text = st.text(max_size=6) | bad_text | lookalike_text | st.builds(lambda a, b: a + b, lookalike_text, bad_text)
documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=25,
)


def first_unstorable(node: Any, path: Any = None) -> str | None:
    """The reference: a dict's keys first, then its values, in order; lists in order."""
    bad = re.compile("[\x00\ud800-\udfff]")
    if isinstance(node, str):
        return render_path(path) if bad.search(node) else None
    if isinstance(node, dict):
        for key in node:
            if bad.search(key):
                return render_path((path, key))
        for key, child in node.items():
            found = first_unstorable(child, (path, key))
            if found:
                return found
    if isinstance(node, list):
        for index, child in enumerate(node):
            found = first_unstorable(child, (path, index))
            if found:
                return found
    return None


@settings(max_examples=examples(ci=100, deep=400), deadline=None)
@given(documents)
def test_property_unstorable_text_is_found_with_its_path(doc: Any) -> None:
    """NUL or an unpaired surrogate anywhere (a value, a key, any depth) is found, with the JSON path of
    the first one; a document without any is storable as it is."""
    found = find_unstorable(doc)
    assert (found[0] if found else None) == first_unstorable(doc)
    if found is None:
        assert storable(doc) == doc
    else:
        assert find_unstorable(storable(doc)) is None


REGISTRY = load_registry(Settings())


@settings(max_examples=100, deadline=None)
@given(documents.filter(lambda d: isinstance(d, dict)))
def test_property_admission_refuses_unstorable_inputs(inputs: dict[str, Any]) -> None:
    """Admission refuses such inputs with UnstorableText naming the same path, before hashing them."""
    run = JobRun(tenant_id="t", template_key="autopilot.jobforge.healthcheck", inputs=inputs)
    expected = first_unstorable(inputs)
    flags = dict.fromkeys(Flag, True)
    try:
        judge(run, run.template_key, REGISTRY, flags)
    except UnstorableText as err:
        assert err.details["path"] == expected
    except (SecretInInputs, InvalidInputs, PayloadLimitExceeded):
        assert expected is None
    else:
        assert expected is None


def test_finding_one_bad_string_costs_a_few_serialisations() -> None:
    """One NUL at the end of a large document is found by halving, not by a walk: about the cost of a
    few serialisations of the document (CPU time against one, interleaved, the least of several)."""
    records = [{"id": i, "name": f"n{i}", "tags": ["a", "b"], "meta": {"k": "v" * 20}} for i in range(20_000)]
    dirty = {"records": records, "last": ["x", {"y": "z\x00"}]}
    clean = {"records": records, "last": ["x", {"y": "z"}]}
    assert find_unstorable(dirty) == ("$.last[1].y", "\x00") and find_unstorable(clean) is None
    finds, dumps = [], []
    for _ in range(7):
        started = time.thread_time()
        find_unstorable(dirty)
        finds.append(time.thread_time() - started)
        started = time.thread_time()
        orjson.dumps(clean)
        dumps.append(time.thread_time() - started)
    assert min(finds) < 10 * min(dumps) + 0.002, f"{min(finds):.4f}s vs {min(dumps):.4f}s for one serialisation"


def test_parsing_leaves_the_collector_as_it_was() -> None:
    """parse_and_check holds the cyclic collector off only while it parses, also when it refuses."""
    assert gc.isenabled()
    parse_and_check(b"[[[1]]]", PayloadLimits())
    with pytest.raises(InvalidRequest):
        parse_and_check(b"[[[1]", PayloadLimits())
    assert gc.isenabled()
    gc.disable()
    try:
        parse_and_check(b"[1]", PayloadLimits())
        assert not gc.isenabled()
    finally:
        gc.enable()


# -- objects and arrays, counted before parsing --------------------------------------------------

bracket_text = st.text(st.sampled_from('[]{}"\\ax,:'), max_size=12)
bracket_values = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | bracket_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(bracket_text, children, max_size=4),
    max_leaves=30)


@pytest.mark.skipif(limits_module._native_count_containers is None, reason="the C accelerator is not built")
@settings(max_examples=examples(ci=100, deep=400), deadline=None)
@given(bracket_values, st.booleans())
def test_property_containers_counted_on_the_bytes(value: Any, indent: bool) -> None:
    """The C count on a document's bytes equals its objects and arrays, whatever brackets, quotes and
    backslashes its strings and keys hold."""
    assert limits_module._native_count_containers is not None
    raw = orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0)
    assert limits_module._native_count_containers(raw) == limits_module._containers(value)


@pytest.mark.parametrize("native", [True, False])
def test_too_many_containers_are_refused(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A body with more objects and arrays than max_containers is refused naming the limit and the
    count (with the C count, before it is even parsed: a broken tail does not matter); brackets in
    strings do not count."""
    if not native:
        monkeypatch.setattr(limits_module, "_native_count_containers", None)
    elif limits_module._native_count_containers is None:
        pytest.skip("the C accelerator is not built")
    lim = PayloadLimits(max_containers=100, max_array=1000)
    dense = b"[" + b",".join([b"[[0]]"] * 60) + b"]"
    with pytest.raises(PayloadLimitExceeded) as info:
        parse_and_check(dense, lim)
    assert info.value.details == {"limit": "max_containers", "allowed": 100, "actual": 121, "path": "$"}
    if native:
        with pytest.raises(PayloadLimitExceeded):
            parse_and_check(dense[:-1] + b"{", lim)  # not even valid JSON: refused before parsing
    assert parse_and_check(orjson.dumps(["[[{" * 100, {"a": [1]}]), lim) == ["[[{" * 100, {"a": [1]}]


def test_storable_text_and_documents_keep_everything_else() -> None:
    """pg_text and storable replace only what PostgreSQL refuses, with U+FFFD."""
    assert pg_text("a\x00b\ud800") == "a\ufffdb\ufffd" and pg_text("plain") == "plain"
    assert storable({"k\x00": ["v\udfff", 1, None]}) == {"k\ufffd": ["v\ufffd", 1, None]}
    with pytest.raises(UnstorableText) as info:
        check_storable({"a": "x\x00"}, "the inputs")
    assert info.value.details == {"path": "$.a", "code_point": "U+0000"} and "\x00" not in info.value.message
