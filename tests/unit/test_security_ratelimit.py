"""GCRA: burst, sustained rate, retry-after and the IETF RateLimit headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.security.ratelimit import RatePolicy, headers, step


def run(policy: RatePolicy, times: list[float]) -> list[bool]:
    tat: float | None = None
    out = []
    for now in times:
        decision = step(tat, now, policy)
        out.append(decision.allowed)
        if decision.allowed:
            tat = decision.tat
    return out


def test_burst_then_sustained_rate() -> None:
    """100/min admits 100 at once, then one per 0.6 s."""
    policy = RatePolicy(100, 60)
    assert run(policy, [0.0] * 150).count(True) == 100
    assert run(policy, [0.0] * 100 + [0.59, 0.61]) == [True] * 100 + [False, True]


def test_retry_after_and_remaining() -> None:
    """A refused request learns how long to wait; an admitted one how many remain."""
    policy = RatePolicy(10, 60, burst=2)
    first = step(None, 0.0, policy)
    assert first.allowed and first.remaining == 1
    second = step(first.tat, 0.0, policy)
    assert second.allowed and second.remaining == 0
    third = step(second.tat, 0.0, policy)
    assert not third.allowed and third.retry_after == pytest.approx(6.0)
    assert step(second.tat, 6.0, policy).allowed


def test_headers() -> None:
    """Refusals carry Retry-After, RateLimit and RateLimit-Policy (IETF draft syntax)."""
    policy = RatePolicy(100, 60)
    tat = None
    for _ in range(100):
        d = step(tat, 0.0, policy)
        tat = d.tat
    refused = step(tat, 0.0, policy)
    h = headers(refused, policy)
    assert h["RateLimit-Policy"] == '"tenant";q=100;w=60'
    assert h["RateLimit"].startswith('"tenant";r=0;t=')
    assert h["Retry-After"] == "1"
    assert "Retry-After" not in headers(step(None, 0.0, policy), policy)


def test_policy_validation() -> None:
    """Nonsense policies are refused."""
    for bad in ((0, 60), (1, 0)):
        with pytest.raises(ValueError):
            RatePolicy(*bad)


@given(st.integers(1, 50), st.integers(1, 50), st.lists(st.floats(0, 120, allow_nan=False), max_size=200))
def test_property_never_more_than_burst_plus_rate(limit: int, burst: int, times: list[float]) -> None:
    """Over any run of requests, admitted <= burst + elapsed / interval (the GCRA guarantee)."""
    policy = RatePolicy(limit, 60, burst)
    times = sorted(times)
    admitted = run(policy, times).count(True)
    if times:
        assert admitted <= burst + (times[-1] - times[0]) / policy.interval + 1e-6
