"""Scopes: resource:action grants, whole-segment wildcards, case sensitivity, what is missing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobforge.errors import InsufficientScope, InvalidRequest
from shared.security.scopes import check_scope, grants, missing_scopes, parse_scopes, require_scopes


@pytest.mark.parametrize(("granted", "required", "ok"), [
    ("jobs:request", "jobs:request", True),
    ("jobs:*", "jobs:request", True),
    ("*:request", "jobs:request", True),
    ("*:*", "audit:read", True),
    ("jobs:read", "jobs:request", False),
    ("events:*", "jobs:request", False),
    ("Jobs:request", "jobs:request", False),
    ("jobs:Request", "jobs:request", False),
    ("jobs:request", "jobs:*", False),
    ("jobs:*", "jobs:*", True),
    ("jo*:request", "jobs:request", False),
    ("jobs:req*", "jobs:request", False),
    ("jobs", "jobs:request", False),
])
def test_grant_matrix(granted: str, required: str, ok: bool) -> None:
    """A grant covers a requirement only segment by segment, with '*' as a whole segment, case-sensitively."""
    assert grants(granted, required) is ok


@pytest.mark.parametrize("bad", ["jobs", "jobs:", ":read", "jo*:read", "jobs:re*d", "a:b:c", "jobs read", "", "*"])
def test_malformed_scopes_are_refused(bad: str) -> None:
    """Anything but resource:action with whole-segment wildcards is not a scope."""
    with pytest.raises(InvalidRequest):
        check_scope(bad)


def test_parse_scopes_splits_dedupes_sorts() -> None:
    """A comma/space separated list parses into sorted, unique, validated scopes."""
    assert parse_scopes("jobs:*, events:write jobs:*") == ("events:write", "jobs:*")
    with pytest.raises(InvalidRequest):
        parse_scopes(" , ")


def test_denial_names_every_missing_scope() -> None:
    """The error lists each required scope no grant covers, and what was required."""
    with pytest.raises(InsufficientScope) as info:
        require_scopes(["jobs:request"], ["jobs:request", "actions:deploy", "audit:read"])
    assert info.value.missing == ["actions:deploy", "audit:read"]
    assert "actions:deploy" in info.value.message and "audit:read" in info.value.message
    require_scopes(["*:*"], ["anything:at_all"])


segment = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
scope = st.builds(lambda r, a: f"{r}:{a}", segment, segment)


@given(scope, scope)
def test_property_wildcards_widen_never_narrow(granted: str, required: str) -> None:
    """If a grant covers a requirement, its wildcarded forms do too; '*:*' covers every scope."""
    resource, action = granted.split(":")
    if grants(granted, required):
        assert grants(f"{resource}:*", required) and grants(f"*:{action}", required)
    assert grants("*:*", required)
    assert grants(required, required)


@given(st.lists(scope, max_size=5), st.lists(scope, max_size=5))
def test_property_missing_is_exactly_the_uncovered(granted: list[str], required: list[str]) -> None:
    """missing_scopes returns exactly the required scopes that no grant covers."""
    missing = missing_scopes(granted, required)
    for need in dict.fromkeys(required):
        assert (need in missing) is (not any(grants(g, need) for g in granted))


@given(scope)
def test_property_case_matters(required: str) -> None:
    """Upper-casing a grant that differs from the requirement never makes it match."""
    upper = required.upper()
    if upper != required:
        assert not grants(upper, required)
