"""Feature flags: every new capability is OFF until its flag turns it on.

A flag's value is resolved at call time from, in order of precedence:

1. a fleet-wide **store override** (``jobforge flags set NAME on|off``), the kill switch that
   running workers honour within seconds without a restart;
2. the process **environment** (``JOBFORGE_EVENTS_ENABLED=1``);
3. the **default**, which is always off.

:func:`resolve` is the pure decision; :class:`FlagReader` feeds it the environment and the store's
overrides (cached for at most ``flag_override_ttl_seconds``).
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from shared.errors import FeatureDisabled, UnknownFlag


class Flag(enum.StrEnum):
    """Every feature flag; the ``#:`` comment of each is its description in the settings reference."""

    #: accepting events (SDK, CLI, ``POST /v1/events``) and routing them to triggers
    EVENTS = "JOBFORGE_EVENTS_ENABLED"
    #: cron and event triggers: creating them and firing them (a fire held by it is recorded as a skip)
    TRIGGERS = "JOBFORGE_TRIGGERS_ENABLED"
    #: autopilot job templates (read-only jobs such as the healthcheck and the verify pack)
    AUTOPILOT_JOBS = "JOBFORGE_AUTOPILOT_JOBS_ENABLED"
    #: action jobs, which change things outside JobForge (key rotation); each run also needs a policy token
    ACTION_JOBS = "JOBFORGE_ACTION_JOBS_ENABLED"
    #: the per-tenant, hash-chained audit log of every allow and deny (and of flag changes, on ``_fleet``)
    AUDIT_LOGGING = "JOBFORGE_AUDIT_LOGGING_ENABLED"
    #: the artifact manifest (``manifest.json``: every artifact of a run with its hash) written at the end of a run
    MANIFESTS = "JOBFORGE_MANIFESTS_ENABLED"
    #: per-tenant (and optionally per-actor) rate limits on events and job requests
    RATE_LIMITING = "JOBFORGE_RATE_LIMITING_ENABLED"
    #: payload limits (bytes, depth, string length, array items) on inputs and event payloads
    SECURITY_VALIDATION = "JOBFORGE_SECURITY_VALIDATION_ENABLED"
    #: provenance capture and stored histories of finished runs, for replay bundles
    REPLAY_PACK = "REPLAY_PACK_ENABLED"
    #: the verify pack template (``autopilot.readylayer.verify_pack``, ``jobforge verify``)
    VERIFY_PACK = "VERIFY_PACK_ENABLED"

    @classmethod
    def parse(cls, name: str) -> Flag:
        """The flag named ``name`` (its env variable name, case-insensitive)."""
        try:
            return cls(name.strip().upper())
        except ValueError:
            raise UnknownFlag(name) from None


class FlagSource(enum.StrEnum):
    DEFAULT = "default"
    ENV = "env"
    STORE = "store"


@dataclass(frozen=True, slots=True)
class FlagValue:
    flag: Flag
    enabled: bool
    source: FlagSource


_TRUE = frozenset({"1", "true", "yes", "on", "enabled"})
_FALSE = frozenset({"0", "false", "no", "off", "disabled", ""})


def parse_switch(text: str) -> bool:
    """``on``/``off`` (and the usual spellings) as a bool; anything else is a typed error."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    from shared.errors import InvalidRequest

    raise InvalidRequest(f"{text!r} is not a switch value; use on or off")


def resolve(flag: Flag, env: Mapping[str, str], overrides: Mapping[Flag, bool]) -> FlagValue:
    """Decide one flag's value: store override, else environment, else off."""
    if flag in overrides:
        return FlagValue(flag, overrides[flag], FlagSource.STORE)
    raw = env.get(flag.value)
    if raw is not None:
        value = raw.strip().lower()
        # an unparseable env value fails safe: the feature stays off
        return FlagValue(flag, value in _TRUE, FlagSource.ENV)
    return FlagValue(flag, False, FlagSource.DEFAULT)


OverrideLoader = Callable[[], Awaitable[Mapping[Flag, bool]]]


class FlagReader:
    """Reads flags at call time; store overrides are re-read after ``ttl_seconds``."""

    def __init__(self, load_overrides: OverrideLoader | None, ttl_seconds: float = 2.0,
                 env: Mapping[str, str] | None = None) -> None:
        self._load = load_overrides
        self._ttl = ttl_seconds
        self._env = env  # None = os.environ, read on every call
        self._cached: Mapping[Flag, bool] = {}
        self._loaded_at = float("-inf")

    async def overrides(self) -> Mapping[Flag, bool]:
        if self._load is None:
            return {}
        now = time.monotonic()
        if now - self._loaded_at >= self._ttl:
            self._cached = await self._load()
            self._loaded_at = now
        return self._cached

    async def value(self, flag: Flag) -> FlagValue:
        env = os.environ if self._env is None else self._env
        return resolve(flag, env, await self.overrides())

    async def values(self, flags: Iterable[Flag] = tuple(Flag)) -> list[FlagValue]:
        env = os.environ if self._env is None else self._env
        overrides = await self.overrides()
        return [resolve(flag, env, overrides) for flag in flags]

    async def is_enabled(self, flag: Flag) -> bool:
        return (await self.value(flag)).enabled

    async def require(self, *flags: Flag) -> None:
        """Raise :class:`FeatureDisabled` naming the first flag that is off."""
        for value in await self.values(flags):
            if not value.enabled:
                raise FeatureDisabled(value.flag.value)
