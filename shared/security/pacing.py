"""Pacing of refused callers: a caller whose requests keep being refused gets its further refusals
slowly, and is served one request at a time, so a flood of refused requests costs the server (and the
flooding clients' own machines) little and cannot crowd out another tenant.

Refusals (4xx answers of the gate) are counted per offender (an API key once authenticated, else the
client address) with GCRA (:mod:`shared.security.ratelimit`'s algorithm, here in memory): the first
``burst`` refusals in a row and ``per_minute`` after them are answered at once; an offender over that
allowance is *penalised*. A penalised offender's refusals are held before they are answered for as
long as it is over its allowance, at most ``max_hold`` seconds (an ``asyncio`` timer: no CPU while
held), and its requests are served one at a time (a lock per offender, taken after authentication and
before the body is read, released when the answer has been sent). A flooding key so gets at most one
request judged per ``max_hold`` seconds per process, however many connections it opens, and its
clients wait instead of spinning.

Held answers and waiting requests are capped per process (``max_held``) so holding cannot exhaust file
descriptors: over the cap a refusal is answered at once with ``Connection: close``, and a penalised
offender's request that would wait is refused at once (429). A caller that gets an ordinary refusal
now and then is never held. The state is per process (exact per process, not shared).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: answers counted as refusals (the gate's 4xx; 404 and 409 are answers about data, not refusals)
REFUSED_STATUSES = frozenset({400, 401, 403, 413, 422, 429})


@dataclass(frozen=True, slots=True)
class PacingPolicy:
    """``burst`` refusals in a row answered at once, then ``per_minute``; over that a refusal is held up
    to ``max_hold`` seconds; at most ``max_held`` answers held or requests waiting per process.
    ``max_hold`` 0 turns pacing off."""

    burst: int = 20
    per_minute: float = 60.0
    max_hold: float = 2.0
    max_held: int = 256

    def __post_init__(self) -> None:
        if self.burst < 1 or self.per_minute <= 0 or self.max_hold < 0 or self.max_held < 0:
            raise ValueError("a pacing policy needs burst >= 1, per_minute > 0, max_hold >= 0 and max_held >= 0")

    @property
    def enabled(self) -> bool:
        return self.max_hold > 0

    @property
    def interval(self) -> float:
        """Seconds between refusals at the sustained pace (GCRA's emission interval)."""
        return 60.0 / self.per_minute

    @property
    def window(self) -> float:
        """How far ahead of now an offender's TAT may run before its refusals are held."""
        return self.burst * self.interval


def refusal_step(tat: float | None, now: float, policy: PacingPolicy) -> tuple[float, float]:
    """Count one refusal of an offender whose TAT is ``tat``: its new TAT, and how long this refusal is to
    be held (0: answer at once). The TAT runs at most ``max_hold`` past the window, so an offender that
    stops is back to prompt answers within ``window + max_hold`` seconds."""
    new_tat = max(tat if tat is not None else now, now) + policy.interval
    excess = new_tat - now - policy.window
    if excess <= 1e-9:
        return new_tat, 0.0
    new_tat = min(new_tat, now + policy.window + policy.max_hold)
    return new_tat, min(excess, policy.max_hold)


def penalised(tat: float | None, now: float, policy: PacingPolicy) -> bool:
    """True when the offender's next refusal would be held."""
    return tat is not None and tat + policy.interval - now - policy.window > 1e-9


class HeldFull(Exception):
    """Too many answers are held or requests waiting in this process to hold one more."""


@dataclass(slots=True)
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Pacer:
    """The per-process state of :mod:`shared.security.pacing`: each offender's TAT, the held answers and
    the turns of penalised offenders."""

    def __init__(self, policy: PacingPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._tats: dict[str, float] = {}
        self._turns: dict[str, _Turn] = {}
        #: answers being held plus requests waiting for their offender's turn
        self.held = 0
        #: set to answer every held refusal at once (the process is stopping)
        self._released = asyncio.Event()

    def penalised(self, offender: str) -> bool:
        return self.policy.enabled and penalised(self._tats.get(offender), self.clock(), self.policy)

    def refused(self, offender: str) -> float:
        """Count one refusal of ``offender``: the seconds its answer is to be held (0: at once)."""
        if not self.policy.enabled:
            return 0.0
        now = self.clock()
        tat, hold = refusal_step(self._tats.get(offender), now, self.policy)
        self._tats[offender] = tat
        if len(self._tats) > 10_000:  # offenders back within their allowance are forgotten
            self._tats = {k: t for k, t in self._tats.items() if t > now}
        return hold

    async def hold(self, seconds: float) -> bool:
        """Wait ``seconds`` (or until :meth:`release_all`); False at once when the cap is reached."""
        if seconds <= 0 or self._released.is_set():
            return True
        if self.held >= self.policy.max_held:
            return False
        self.held += 1
        try:
            await asyncio.wait_for(self._released.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            self.held -= 1
        return True

    async def turn(self, offender: str) -> Callable[[], None] | None:
        """Wait for ``offender``'s turn when it is penalised: a function that ends the turn, or None when
        it is not penalised (nothing to end). :class:`HeldFull` when waiting would pass the cap."""
        if not self.penalised(offender):
            return None
        turn = self._turns.get(offender)
        if turn is None:
            turn = self._turns[offender] = _Turn()
        waiting = turn.lock.locked()
        if waiting and self.held >= self.policy.max_held:
            raise HeldFull()
        turn.users += 1
        if waiting:
            self.held += 1
        try:
            await turn.lock.acquire()
        except BaseException:
            turn.users -= 1
            self._forget(offender, turn)
            raise
        finally:
            if waiting:
                self.held -= 1
        ended = False

        def end() -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            turn.users -= 1
            turn.lock.release()
            self._forget(offender, turn)

        return end

    def _forget(self, offender: str, turn: _Turn) -> None:
        if not turn.users and not turn.lock.locked() and self._turns.get(offender) is turn:
            del self._turns[offender]

    def release_all(self) -> None:
        """Answer every held refusal now and hold no more (the process is stopping)."""
        self._released.set()
