"""Feature flags: off by default, env and store precedence, read at call time."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from jobforge.errors import FeatureDisabled, InvalidRequest, UnknownFlag
from shared.flags import Flag, FlagReader, FlagSource, parse_switch, resolve

DESIGN_FLAGS = {
    "JOBFORGE_EVENTS_ENABLED", "JOBFORGE_TRIGGERS_ENABLED", "JOBFORGE_AUTOPILOT_JOBS_ENABLED",
    "JOBFORGE_ACTION_JOBS_ENABLED", "JOBFORGE_AUDIT_LOGGING_ENABLED", "JOBFORGE_MANIFESTS_ENABLED",
    "JOBFORGE_RATE_LIMITING_ENABLED", "JOBFORGE_SECURITY_VALIDATION_ENABLED", "REPLAY_PACK_ENABLED",
    "VERIFY_PACK_ENABLED",
}


def test_every_design_flag_exists_and_is_off_by_default() -> None:
    """The flags are exactly DESIGN.md's list and each resolves to off from the default."""
    assert {f.value for f in Flag} == DESIGN_FLAGS
    for flag in Flag:
        assert resolve(flag, {}, {}) == resolve(flag, {}, {}) and not resolve(flag, {}, {}).enabled
        assert resolve(flag, {}, {}).source is FlagSource.DEFAULT


@pytest.mark.parametrize(("raw", "enabled"), [("1", True), ("true", True), ("ON", True), ("yes", True),
                                              ("0", False), ("off", False), ("", False), ("maybe", False)])
def test_env_values(raw: str, enabled: bool) -> None:
    """Env values turn a flag on only when they clearly say so; anything unclear fails safe (off)."""
    value = resolve(Flag.EVENTS, {"JOBFORGE_EVENTS_ENABLED": raw}, {})
    assert value.enabled is enabled and value.source is FlagSource.ENV


def test_store_override_beats_env() -> None:
    """A store override (the kill switch) wins over the environment in both directions."""
    env = {"VERIFY_PACK_ENABLED": "1"}
    assert resolve(Flag.VERIFY_PACK, env, {Flag.VERIFY_PACK: False}).enabled is False
    assert resolve(Flag.VERIFY_PACK, env, {Flag.VERIFY_PACK: False}).source is FlagSource.STORE
    assert resolve(Flag.EVENTS, {}, {Flag.EVENTS: True}).enabled is True


def test_parse_names_and_switches() -> None:
    """Flag names parse case-insensitively; unknown names and switch words are typed errors."""
    assert Flag.parse("replay_pack_enabled") is Flag.REPLAY_PACK
    with pytest.raises(UnknownFlag):
        Flag.parse("JOBFORGE_NOPE")
    assert parse_switch("on") is True and parse_switch("OFF") is False
    with pytest.raises(InvalidRequest):
        parse_switch("sometimes")


def test_reader_reads_env_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing the environment changes the next answer: nothing is cached for the process lifetime."""
    reader = FlagReader(None)
    assert not asyncio.run(reader.is_enabled(Flag.EVENTS))
    monkeypatch.setenv("JOBFORGE_EVENTS_ENABLED", "1")
    assert asyncio.run(reader.is_enabled(Flag.EVENTS))


def test_reader_rereads_overrides_after_ttl() -> None:
    """Store overrides are cached for at most the TTL, then read again."""
    calls: list[int] = []
    state: dict[Flag, bool] = {}

    async def load() -> Mapping[Flag, bool]:
        calls.append(1)
        return dict(state)

    async def scenario() -> None:
        reader = FlagReader(load, ttl_seconds=0.05, env={})
        assert not await reader.is_enabled(Flag.EVENTS)
        state[Flag.EVENTS] = True
        assert not await reader.is_enabled(Flag.EVENTS)  # within TTL: cached
        await asyncio.sleep(0.06)
        assert await reader.is_enabled(Flag.EVENTS)

    asyncio.run(scenario())
    assert len(calls) == 2


def test_confirm_reads_an_override_made_within_the_ttl_but_not_more_often_than_min_age() -> None:
    """A snapshot that would refuse is read again fresh (an override just turned on counts at once), unless
    the overrides were read less than ``min_age`` ago (refused requests cannot make every check a read)."""
    calls: list[int] = []
    state: dict[Flag, bool] = {}

    async def load() -> Mapping[Flag, bool]:
        calls.append(1)
        return dict(state)

    async def scenario() -> None:
        reader = FlagReader(load, ttl_seconds=60, env={})
        stale = await reader.snapshot()
        assert not stale[Flag.EVENTS]
        state[Flag.EVENTS] = True
        assert (await reader.confirm(stale, min_age=60)) is stale  # read too recently: no extra read
        assert len(calls) == 1
        fresh = await reader.confirm(stale, min_age=0)
        assert fresh[Flag.EVENTS] and len(calls) == 2
        assert await reader.is_enabled(Flag.EVENTS)  # the fresh reading is the cache now

    asyncio.run(scenario())


def test_require_names_the_first_flag_that_is_off() -> None:
    """`require` raises FeatureDisabled naming the flag that is off."""
    reader = FlagReader(None, env={"JOBFORGE_AUTOPILOT_JOBS_ENABLED": "1"})
    with pytest.raises(FeatureDisabled) as info:
        asyncio.run(reader.require(Flag.AUTOPILOT_JOBS, Flag.VERIFY_PACK))
    assert info.value.flag == "VERIFY_PACK_ENABLED"
    assert "VERIFY_PACK_ENABLED" in str(info.value)


@pytest.mark.parametrize(("env", "overrides", "says"), [
    ({}, {}, "not set in the environment, and no fleet-wide override"),
    ({"VERIFY_PACK_ENABLED": "0"}, {}, "the environment has VERIFY_PACK_ENABLED='0'"),
    ({"VERIFY_PACK_ENABLED": "1"}, {Flag.VERIFY_PACK: False}, "the fleet-wide override is off"),
])
def test_a_refusal_names_whose_reading_it_was_and_the_source(env: dict[str, str],
                                                              overrides: dict[Flag, bool], says: str) -> None:
    """A flag that is off is refused naming the process whose environment was read, where the value came
    from, and the command that turns it on for every process."""

    async def load() -> Mapping[Flag, bool]:
        return overrides

    reader = FlagReader(load, env=env, where="the jobforge-worker process (pid 42)")
    with pytest.raises(FeatureDisabled) as info:
        asyncio.run(reader.require(Flag.VERIFY_PACK))
    refused = info.value
    assert refused.message == (f"feature disabled: VERIFY_PACK_ENABLED is off in the jobforge-worker process (pid 42)"
                               f": {says}; turn it on for every process of the stack with `jobforge flags set "
                               "VERIFY_PACK_ENABLED on`")
    assert refused.details["source"] == resolve(Flag.VERIFY_PACK, env, overrides).source.value
    assert refused.details["where"] == "the jobforge-worker process (pid 42)"


def test_a_snapshot_is_the_mapping_admission_reads() -> None:
    """A snapshot answers as a mapping of every flag to on/off; admission's refusal from it carries the
    reason, while a bare mapping still gives the short one."""
    from shared.flags import FlagSnapshot, disabled, this_process

    snapshot = asyncio.run(FlagReader(None, env={"JOBFORGE_EVENTS_ENABLED": "yes"}).snapshot())
    assert isinstance(snapshot, FlagSnapshot) and len(snapshot) == len(Flag)
    assert dict(snapshot) == {flag: flag is Flag.EVENTS for flag in Flag}
    assert snapshot.where == this_process()
    assert "not set in the environment" in disabled(snapshot, Flag.TRIGGERS).message
    assert disabled({}, Flag.TRIGGERS).message.startswith("feature disabled: JOBFORGE_TRIGGERS_ENABLED is off (")
