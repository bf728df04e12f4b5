"""Refusal pacing's decision (pure GCRA over refusals) and its per-process state: holds are bounded, an
occasional refusal is never held, a flood is, the penalty ends once the flood stops, and the number of
held answers and waiting requests never passes the cap."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.security.pacing import HeldFull, Pacer, PacingPolicy, penalised, refusal_step

policies = st.builds(PacingPolicy, burst=st.integers(1, 50), per_minute=st.floats(1, 6000),
                     max_hold=st.floats(0.01, 60), max_held=st.integers(0, 1000))
#: gaps between refusals, seconds
gaps = st.lists(st.floats(0, 30), min_size=1, max_size=200)


@given(policies, gaps)
def test_every_hold_is_within_zero_and_max_hold(policy: PacingPolicy, between: list[float]) -> None:
    """Whatever the refusals' timing, a hold is between 0 and ``max_hold``, and the TAT never runs more
    than ``window + max_hold`` ahead of now."""
    tat, now = None, 0.0
    for gap in between:
        now += gap
        tat, hold = refusal_step(tat, now, policy)
        assert 0.0 <= hold <= policy.max_hold
        assert tat - now <= policy.window + policy.max_hold + 1e-6


@given(policies)
def test_the_burst_is_answered_at_once_and_the_next_refusal_is_held(policy: PacingPolicy) -> None:
    """``burst`` refusals at one instant are not held; the one after them is, and ``penalised`` says so
    before it comes."""
    tat = None
    for _ in range(policy.burst):
        assert not penalised(tat, 0.0, policy)
        tat, hold = refusal_step(tat, 0.0, policy)
        assert hold == 0.0
    assert penalised(tat, 0.0, policy)
    _, hold = refusal_step(tat, 0.0, policy)
    assert hold > 0.0


@given(policies, gaps)
def test_a_caller_refused_at_the_sustained_pace_is_never_held(policy: PacingPolicy, between: list[float]) -> None:
    """Refusals no closer together than the sustained pace's interval are always answered at once."""
    tat, now = None, 0.0
    for gap in between:
        now += max(gap, policy.interval)
        tat, hold = refusal_step(tat, now, policy)
        assert hold == 0.0


@given(policies, st.integers(1, 500))
def test_the_penalty_ends_once_the_flood_stops(policy: PacingPolicy, flood: int) -> None:
    """However long a flood at one instant, a refusal ``max_hold`` plus one interval later is not held."""
    tat = None
    for _ in range(flood):
        tat, _ = refusal_step(tat, 0.0, policy)
    later = policy.max_hold + policy.interval + 1e-6
    assert not penalised(tat, later, policy)
    assert refusal_step(tat, later, policy)[1] == 0.0


def flooded(policy: PacingPolicy, offender: str = "key:a") -> Pacer:
    """A pacer on a frozen clock whose ``offender`` has spent its burst."""
    pacer = Pacer(policy, clock=lambda: 0.0)
    for _ in range(policy.burst):
        assert pacer.refused(offender) == 0.0
    return pacer


async def until_held(pacer: Pacer, n: int) -> None:
    """Let the loop run until ``n`` are held (a condition: each step lets the waiting task go on)."""
    for _ in range(1000):
        if pacer.held == n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{pacer.held} held, not {n}")


async def test_a_paced_offender_is_served_one_request_at_a_time() -> None:
    """A penalised offender's second request waits until the first one's turn ends; another offender
    does not wait at all."""
    pacer = flooded(PacingPolicy(burst=2, max_hold=5, max_held=10))
    end_first = await pacer.turn("key:a")
    assert end_first is not None
    second = asyncio.ensure_future(pacer.turn("key:a"))
    await until_held(pacer, 1)  # the second request waits for its turn
    assert await pacer.turn("key:b") is None
    assert not second.done()
    end_first()
    end_second = await second
    assert end_second is not None and pacer.held == 0
    end_second()


async def test_holding_stops_at_the_cap_and_release_answers_held_refusals() -> None:
    """With ``max_held`` 1, one refusal is held; a second hold is declined at once, and so is a request
    that would wait for the offender's turn; ``release_all`` ends the held one."""
    pacer = flooded(PacingPolicy(burst=1, max_hold=60, max_held=1))
    end = await pacer.turn("key:a")
    assert end is not None
    held = asyncio.ensure_future(pacer.hold(pacer.refused("key:a")))
    await until_held(pacer, 1)
    assert await pacer.hold(1.0) is False
    with pytest.raises(HeldFull):
        await pacer.turn("key:a")
    pacer.release_all()
    assert await held is True
    assert pacer.held == 0
    end()


async def test_pacing_off_holds_nothing() -> None:
    """``max_hold`` 0: no refusal is held and no offender is penalised, however many."""
    pacer = Pacer(PacingPolicy(burst=1, max_hold=0), clock=lambda: 0.0)
    for _ in range(100):
        assert pacer.refused("key:a") == 0.0
    assert await pacer.turn("key:a") is None
