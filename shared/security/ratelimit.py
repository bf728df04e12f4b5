"""GCRA rate limiting (pure): one theoretical arrival time (TAT) per key.

The store runs the same step as one atomic ``INSERT ... ON CONFLICT DO UPDATE ... WHERE ...
RETURNING`` on PostgreSQL's ``clock_timestamp()``; :func:`step` is the reference the tests hold it
to, and the HTTP headers come from :func:`headers`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """``limit`` requests per ``period`` seconds, up to ``burst`` at once (default: ``limit``)."""

    limit: int
    period: float = 60.0
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period <= 0 or (self.burst is not None and self.burst < 1):
            raise ValueError("a rate policy needs limit >= 1, period > 0 and burst >= 1")

    @property
    def interval(self) -> float:
        """Seconds between requests at the sustained rate (GCRA's emission interval T)."""
        return self.period / self.limit

    @property
    def capacity(self) -> int:
        return self.burst or self.limit

    @property
    def window(self) -> float:
        """How far ahead of now the TAT may run (capacity x T)."""
        return self.capacity * self.interval


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    #: the key's TAT after this request (unchanged when refused), seconds on the caller's clock
    tat: float
    remaining: int
    #: seconds until a request would be admitted (0 when admitted)
    retry_after: float
    #: seconds until the key is back to full capacity
    reset: float


def decide(tat: float, now: float, policy: RatePolicy) -> RateDecision:
    """Describe the outcome for a key whose TAT is ``tat`` (after the store's step) at ``now``."""
    T, window = policy.interval, policy.window
    ahead = max(tat - now, 0.0)
    remaining = max(math.floor((window - ahead) / T + 1e-9), 0)
    return RateDecision(allowed=True, tat=tat, remaining=remaining, retry_after=0.0, reset=ahead)


def refused(tat: float, now: float, policy: RatePolicy) -> RateDecision:
    """The answer for a refused request when the key's TAT is ``tat``."""
    T, window = policy.interval, policy.window
    ahead = max(tat - now, 0.0)
    retry = max(ahead + T - window, 0.0)
    return RateDecision(allowed=False, tat=tat, remaining=0, retry_after=retry, reset=ahead)


def step(tat: float | None, now: float, policy: RatePolicy) -> RateDecision:
    """One GCRA step: admit when the new TAT stays within the window, else refuse."""
    T = policy.interval
    new_tat = max(tat if tat is not None else now, now) + T
    if new_tat - now <= policy.window + 1e-9:
        return decide(new_tat, now, policy)
    return refused(tat if tat is not None else now, now, policy)


def headers(decision: RateDecision, policy: RatePolicy, name: str = "tenant") -> dict[str, str]:
    """``RateLimit`` / ``RateLimit-Policy`` (IETF httpapi draft) and ``Retry-After`` when refused."""
    out = {
        "RateLimit-Policy": f'"{name}";q={policy.limit};w={math.ceil(policy.period)}',
        "RateLimit": f'"{name}";r={decision.remaining};t={math.ceil(decision.reset)}',
    }
    if not decision.allowed:
        out["Retry-After"] = str(max(math.ceil(decision.retry_after), 1))
    return out
