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
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jobforge.errors import FeatureDisabled, UnknownFlag


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
    #: the environment's text for a value from ``env``
    raw: str | None = field(default=None, compare=False)


_TRUE = frozenset({"1", "true", "yes", "on", "enabled"})
_FALSE = frozenset({"0", "false", "no", "off", "disabled", ""})


def parse_switch(text: str) -> bool:
    """``on``/``off`` (and the usual spellings) as a bool; anything else is a typed error."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    from jobforge.errors import InvalidRequest

    raise InvalidRequest(f"{text!r} is not a switch value; use on or off")


def resolve(flag: Flag, env: Mapping[str, str], overrides: Mapping[Flag, bool]) -> FlagValue:
    """Decide one flag's value: store override, else environment, else off."""
    if flag in overrides:
        return FlagValue(flag, overrides[flag], FlagSource.STORE)
    raw = env.get(flag.value)
    if raw is not None:
        value = raw.strip().lower()
        # an unparseable env value fails safe: the feature stays off
        return FlagValue(flag, value in _TRUE, FlagSource.ENV, raw)
    return FlagValue(flag, False, FlagSource.DEFAULT)


def this_process(name: str = "") -> str:
    """``the <name> process (pid N)``: whose environment a reader in this process reads."""
    return f"the {name or Path(sys.argv[0]).name or 'python'} process (pid {os.getpid()})"


def refusal(value: FlagValue, where: str, hint: str = "") -> FeatureDisabled:
    """The refusal for a flag that is off, naming whose reading it was and where its value came from."""
    flag = value.flag.value
    if value.source is FlagSource.STORE:
        detail = "the fleet-wide override is off"
    elif value.source is FlagSource.ENV:
        detail = f"the environment has {flag}={(value.raw or '')[:40]!r}"
    else:
        detail = "not set in the environment, and no fleet-wide override"
    return FeatureDisabled(flag, f"feature disabled: {flag} is off in {where}: {detail}{hint}; turn it on for "
                                 f"every process of the stack with `jobforge flags set {flag} on`",
                           source=value.source.value, where=where)


class FlagSnapshot(Mapping[Flag, bool]):
    """Every flag's value as one reader saw it at one moment: a mapping of flag to on/off that can also
    say why a flag is off (:meth:`refusal`)."""

    def __init__(self, values: Iterable[FlagValue], where: str = "", hint: Callable[[Flag], str] | None = None,
                 ) -> None:
        self.by_flag = {value.flag: value for value in values}
        self.where = where or this_process()
        self._hint = hint

    def __getitem__(self, flag: Flag) -> bool:
        return self.by_flag[flag].enabled

    def __iter__(self) -> Iterator[Flag]:
        return iter(self.by_flag)

    def __len__(self) -> int:
        return len(self.by_flag)

    def refusal(self, flag: Flag) -> FeatureDisabled:
        value = self.by_flag.get(flag, FlagValue(flag, False, FlagSource.DEFAULT))
        return refusal(value, self.where, self._hint(flag) if self._hint else "")


def disabled(flags: Mapping[Flag, bool], flag: Flag) -> FeatureDisabled:
    """The refusal for ``flag`` being off in ``flags``: detailed when ``flags`` is a :class:`FlagSnapshot`."""
    if isinstance(flags, FlagSnapshot):
        return flags.refusal(flag)
    return FeatureDisabled(flag.value)


OverrideLoader = Callable[[], Awaitable[Mapping[Flag, bool]]]


class FlagReader:
    """Reads flags at call time; store overrides are re-read after ``ttl_seconds``.

    ``where`` names whose environment ``env`` is (this process's by default), for refusals; ``hint``
    adds to a refusal of a flag (e.g. that the caller's own shell sets it, but it is not what counts).
    """

    def __init__(self, load_overrides: OverrideLoader | None, ttl_seconds: float = 2.0,
                 env: Mapping[str, str] | None = None, *, where: str = "",
                 hint: Callable[[Flag], str] | None = None) -> None:
        self._load = load_overrides
        self._ttl = ttl_seconds
        self._env = env  # None = os.environ, read on every call
        self.where = where or this_process()
        self._hint = hint
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

    async def snapshot(self, flags: Iterable[Flag] = tuple(Flag)) -> FlagSnapshot:
        """The values of ``flags`` now, as a mapping that can explain a refusal."""
        return FlagSnapshot(await self.values(flags), self.where, self._hint)

    async def confirm(self, snapshot: FlagSnapshot, min_age: float = 0.25) -> FlagSnapshot:
        """``snapshot`` read again with the store's overrides fresh, unless they were read less than ``min_age``
        seconds ago: a refusal for a flag that is off is confirmed first, so an override just turned on takes
        effect at once instead of after the TTL (``min_age`` bounds the extra reads refused requests cause)."""
        if self._load is None or time.monotonic() - self._loaded_at < min_age:
            return snapshot
        self._loaded_at = float("-inf")
        return await self.snapshot(snapshot.by_flag)

    async def is_enabled(self, flag: Flag) -> bool:
        return (await self.value(flag)).enabled

    async def require(self, *flags: Flag) -> None:
        """Raise :class:`FeatureDisabled` naming the first flag that is off, whose reading it was and why."""
        snapshot = await self.snapshot(flags)
        for flag in flags:
            if not snapshot[flag]:
                raise snapshot.refusal(flag)
