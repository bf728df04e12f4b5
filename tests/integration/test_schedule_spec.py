"""A Schedule's times read back as cron text (what `triggers show` prints and what repair stores on the trigger)
against a real Temporal: the text compiles to the same times, so a trigger that adopted it recreates its Schedule
as it was."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from temporalio.client import Client, Schedule, ScheduleActionStartWorkflow, ScheduleSpec, ScheduleState
from temporalio.testing import WorkflowEnvironment

from shared.triggers.schedules import spec_text

pytestmark = pytest.mark.integration

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def field(low: int, high: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    """One cron field: *, a value, a range, a step, a list, or (months, days) names."""
    value = st.integers(low, high)
    pair = st.tuples(value, value).map(sorted)
    ranged = pair.filter(lambda p: p[0] < p[1]).map(lambda p: f"{p[0]}-{p[1]}")
    stepped = st.tuples(st.sampled_from(["*", *[f"{low}-{high}"]]), st.integers(2, max(2, (high - low) // 2))) \
        .map(lambda p: f"{p[0]}/{p[1]}")
    ranged_step = st.tuples(ranged, st.integers(2, 5)).map(lambda p: f"{p[0]}/{p[1]}")
    listed = st.lists(value, min_size=2, max_size=4, unique=True).map(lambda v: ",".join(map(str, sorted(v))))
    options = [st.just("*"), value.map(str), ranged, stepped, ranged_step, listed]
    if names:
        options.append(st.sampled_from(names))
        options.append(pair.filter(lambda p: p[0] < p[1] and p[1] - low < len(names)).map(
            lambda p: f"{names[p[0] - low]}-{names[p[1] - low]}"))
    return st.one_of(options)


crons = st.one_of(
    st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly"]),
    st.tuples(field(0, 59), field(0, 23), field(1, 31), field(1, 12, MONTHS), field(0, 6, DAYS)).map(" ".join),
)


async def compiled(client: Client, spec: ScheduleSpec) -> ScheduleSpec:
    """``spec`` as Temporal holds it once created (cron text compiled to calendars)."""
    sid = f"roundtrip/{uuid.uuid4().hex}"
    handle = await client.create_schedule(sid, Schedule(
        action=ScheduleActionStartWorkflow("nothing", id=sid, task_queue="nowhere"), spec=spec,
        state=ScheduleState(paused=True)))
    try:
        return (await handle.describe()).schedule.spec
    finally:
        await handle.delete()


@examples(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cron=crons)
async def test_property_cron_read_back_compiles_to_the_same_times(temporal_env: WorkflowEnvironment, cron: str) -> None:
    """Any cron expression Temporal compiles reads back as one 5-field cron expression that Temporal compiles
    to the same calendar, and reads back as itself."""
    first = await compiled(temporal_env.client, ScheduleSpec(cron_expressions=[cron]))
    text, as_cron, interval = spec_text(first)
    assert as_cron == text and interval is None, (cron, text)
    again = await compiled(temporal_env.client, ScheduleSpec(cron_expressions=[as_cron]))
    assert again.calendars == first.calendars, (cron, as_cron)
    assert spec_text(again)[1] == as_cron


async def test_a_calendar_given_to_the_stock_cli_reads_as_cron(temporal_env: WorkflowEnvironment) -> None:
    """`temporal schedule create --calendar '{"dayOfWeek":"Fri","hour":"17","minute":"5"}'` reads back as
    `5 17 * * 5` (the fields it leaves out take Temporal's defaults)."""
    import asyncio
    import subprocess

    from workers.stack import temporal_binary

    sid = f"roundtrip/{uuid.uuid4().hex}"
    address = str(temporal_env.client.service_client.config.target_host)
    done = await asyncio.to_thread(subprocess.run, [
        str(temporal_binary()), "schedule", "create", "--schedule-id", sid, "--address", address, "--paused",
        "--calendar", '{"dayOfWeek":"Fri","hour":"17","minute":"5"}', "--workflow-id", sid,
        "--task-queue", "nowhere", "--type", "nothing"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    handle = temporal_env.client.get_schedule_handle(sid)
    try:
        assert spec_text((await handle.describe()).schedule.spec)[:2] == ("5 17 * * 5", "5 17 * * 5")
    finally:
        await handle.delete()
