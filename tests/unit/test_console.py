"""The console's pure parts: SVG charts, the verify-step timeline, page cursors, colours, the vendored htmx."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobforge.errors import InvalidRequest
from shared.store.paging import decode_cursor, encode_cursor, page_size
from workers.console import charts
from workers.console.charts import Span
from workers.console.render import query
from workers.console.timeline import spans_from_history, spans_from_progress

CONSOLE = Path(__file__).resolve().parents[2] / "workers" / "console"
SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_stacked_bars_are_well_formed_scaled_and_carry_their_numbers() -> None:
    """Bars stack per bucket in series order, the tallest reaches the axis maximum, labels are escaped, and
    the same numbers come back as table rows (empty buckets left out)."""
    buckets = [T0 + timedelta(minutes=i) for i in range(4)]
    counts = {(buckets[0], "succeeded"): 3, (buckets[0], "failed"): 2, (buckets[2], "<b>"): 5}
    chart = charts.stacked_bars("c1", "Runs & <things>", buckets, ("succeeded", "failed", "<b>"), counts)
    root = parse(chart.svg)
    assert root.find(f"{SVG}title").text == "Runs & <things>"  # escaped in the markup, intact once parsed
    rects = root.findall(f"{SVG}rect")
    assert len(rects) == 3
    heights = [float(r.get("height", 0)) for r in rects]
    assert heights[0] == pytest.approx(heights[2] * 3 / 5) and heights[1] == pytest.approx(heights[2] * 2 / 5)
    assert chart.rows == (("2026-12-02 10:00 UTC", "3", "2", "0", "5"), ("2026-12-02 10:02 UTC", "0", "0", "5", "5"))
    assert chart.headers == ("interval", "succeeded", "failed", "<b>", "total")
    assert not chart.empty and charts.stacked_bars("c2", "t", buckets, ("a",), {}).empty


def test_duration_bars_and_timeline_place_their_bars_in_proportion() -> None:
    """p95 bars are at least as long as p50 bars and the slowest p95 is the longest; on the timeline a step
    starting later starts further right, and parallel steps share their start."""
    chart = charts.duration_bars("d", "Durations", [("a.b", 10, 1.0, 2.0), ("c.d", 3, 0.5, 8.0)])
    widths = [float(r.get("width", 0)) for r in parse(chart.svg).findall(f"{SVG}rect")]
    assert widths[0] >= widths[1] and widths[2] >= widths[3] and widths[2] == max(widths)
    assert chart.rows[1] == ("c.d", "3", "0.50 s", "8.00 s")
    spans = [Span("lint", 0.0, 1.0, "passed"), Span("typecheck", 0.0, 3.0, "passed"),
             Span("test", 3.0, 2.5, "running", open=True)]
    rects = parse(charts.timeline("t", "Steps", spans).svg).findall(f"{SVG}rect")
    xs = [float(r.get("x", 0)) for r in rects]
    assert xs[0] == xs[1] < xs[2] and rects[2].get("fill-opacity") == "0.6"


@pytest.mark.parametrize(("value", "text"), [(0.123, "0.12 s"), (12.34, "12.3 s"), (245, "4 min 05 s"),
                                             (7380, "2 h 03 min")])
def test_durations_read_as_people_say_them(value: float, text: str) -> None:
    """Short durations keep decimals, long ones are minutes and hours."""
    assert charts.seconds(value) == text


def _payload(value: object) -> dict[str, object]:
    return {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
            "data": base64.b64encode(orjson.dumps(value)).decode()}


def _event(ident: int, kind: str, at: datetime, **attrs: object) -> dict[str, object]:
    name = kind.lower().title().replace("_", "")
    return {"eventId": str(ident), "eventTime": at.isoformat().replace("+00:00", "Z"),
            "eventType": f"EVENT_TYPE_{kind}", f"{name[0].lower()}{name[1:]}EventAttributes": attrs}


def test_timeline_from_history_uses_each_steps_last_attempt_and_result() -> None:
    """Scheduled/started/closed events of the verify activities become spans from the first step; the step
    name comes from the input, the status from the result (install's nested result too); other activities
    and failed steps are handled."""
    events = [
        _event(5, "ACTIVITY_TASK_SCHEDULED", T0, activityType={"name": "verify.prepare"},
               input={"payloads": [_payload({"tenant_id": "t"})]}),
        _event(7, "ACTIVITY_TASK_SCHEDULED", T0 + timedelta(seconds=1), activityType={"name": "verify.install"},
               input={"payloads": [_payload({"step": "install"})]}),
        _event(8, "ACTIVITY_TASK_STARTED", T0 + timedelta(seconds=2), scheduledEventId="7"),
        _event(9, "ACTIVITY_TASK_COMPLETED", T0 + timedelta(seconds=5), scheduledEventId="7",
               result={"payloads": [_payload({"result": {"status": "passed"}})]}),
        _event(11, "ACTIVITY_TASK_SCHEDULED", T0 + timedelta(seconds=6), activityType={"name": "verify.run_step"},
               input={"payloads": [_payload({"step": "lint"})]}),
        _event(12, "ACTIVITY_TASK_SCHEDULED", T0 + timedelta(seconds=6), activityType={"name": "verify.run_step"},
               input={"payloads": [_payload({"step": "typecheck"})]}),
        _event(13, "ACTIVITY_TASK_STARTED", T0 + timedelta(seconds=6), scheduledEventId="11"),
        _event(14, "ACTIVITY_TASK_COMPLETED", T0 + timedelta(seconds=7), scheduledEventId="11",
               result={"payloads": [_payload({"status": "failed"})]}),
        _event(15, "ACTIVITY_TASK_TIMED_OUT", T0 + timedelta(seconds=9), scheduledEventId="12"),
    ]
    spans = spans_from_history(events)
    assert [(s.name, s.start, s.duration, s.status, s.open) for s in spans] == [
        ("install", 1.0, 3.0, "passed", False), ("lint", 5.0, 1.0, "failed", False),
        ("typecheck", 5.0, 3.0, "timed_out", False)]
    assert spans_from_history([]) == [] and spans_from_history([{"eventType": "X"}]) == []


def test_timeline_from_progress_ends_running_steps_now() -> None:
    """Started steps become spans from the first start; a running step lasts until now; pending ones are left out."""
    steps = [{"name": "lint", "status": "passed", "started_at": T0.isoformat(), "duration_seconds": 1.5},
             {"name": "test", "status": "running", "started_at": (T0 + timedelta(seconds=2)).isoformat()},
             {"name": "build", "status": "pending"}]
    spans = spans_from_progress(steps, T0 + timedelta(seconds=5))
    assert [(s.name, s.start, s.duration, s.open) for s in spans] == [("lint", 0.0, 1.5, False),
                                                                       ("test", 2.0, 3.0, True)]


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),  # noqa: DTZ001 - naive bounds
                    timezones=st.just(UTC)),
       st.one_of(st.integers(min_value=0, max_value=2**62), st.text(max_size=80)))
def test_cursors_round_trip(moment: datetime, ident: int | str) -> None:
    """Any (moment, id) survives the cursor exactly (to the microsecond)."""
    assert decode_cursor(encode_cursor(moment, ident)) == (moment, ident)


@given(st.text(max_size=500))
def test_any_other_text_is_a_typed_cursor_error(text: str) -> None:
    """Text that is not a cursor is an InvalidRequest naming the cursor, never another exception."""
    try:
        decode_cursor(text)
    except InvalidRequest as err:
        assert err.details["field"] == "cursor"


def test_page_size_is_bounded() -> None:
    """Page sizes stay within 1..200."""
    assert (page_size(0), page_size(50), page_size(10_000)) == (1, 50, 200)


def test_query_keeps_filters_and_drops_empty_values() -> None:
    """Pager links keep the filters, replace the cursor and leave empty values out."""
    assert query({"status": "failed", "trace": "", "after": "x"}, after="y") == "?status=failed&after=y"
    assert query({}, after=None) == "?"


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_text_and_chart_colours_have_aa_contrast_on_white() -> None:
    """Every text colour of the stylesheet and every chart colour reach 4.5:1 against white (WCAG AA)."""
    css = (CONSOLE / "static" / "console.css").read_text()
    variables = dict(re.findall(r"--([a-z]+): (#[0-9a-f]{6})", css))
    for name in ("fg", "muted", "link", "ok", "bad", "warn", "info"):
        assert contrast(variables[name], "#ffffff") >= 4.5, name
    for name, colour in charts.PALETTE.items():
        assert contrast(colour, "#ffffff") >= 4.5, name


def test_vendored_htmx_is_the_recorded_release() -> None:
    """The vendored htmx is byte for byte the npm tarball member vendor.json records (version and sha256)."""
    record = json.loads((CONSOLE / "vendor.json").read_text())["htmx.org"]
    data = (CONSOLE / record["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert f'version:"{record["version"]}"' in data.decode()
    assert record["tarball"].endswith(f"htmx.org-{record['version']}.tgz")


def test_operator_token_setting_is_off_when_empty_and_refused_when_short() -> None:
    """An empty operator token (a compose default) means no operator sign-in; a short one is a settings error."""
    from shared.settings import Settings, SettingsError

    assert Settings(console_operator_token="").console_operator_token is None
    assert Settings().console_operator_token is None
    with pytest.raises(SettingsError, match="32 characters"):
        Settings(console_operator_token="short")
    long = Settings(console_operator_token="x" * 32).console_operator_token
    assert long is not None and long.get_secret_value() == "x" * 32


def _render_trigger(view: object) -> str:
    from workers.console.render import Pages, query

    pages = Pages()
    return pages.env.get_template("trigger.html").render(
        base="/ui", static=lambda name: f"/ui/static/{name}", query=query, request_path="/ui/t/acme/triggers/x",
        viewer=None, tenant="acme", section="triggers", flash="", v=view, fires=[], next_cursor=None, cursor="",
        enabled=True, can_act=False, kinds=None)


def test_trigger_page_shows_the_live_schedule_and_its_drift_when_the_view_has_them() -> None:
    """A view with a live Schedule and drift shows both and the fix; a view without them renders as before."""
    from types import SimpleNamespace

    from jobforge.models import Trigger, TriggerKind
    from shared.triggers.service import TriggerView

    trigger = Trigger(tenant_id="acme", name="nightly", kind=TriggerKind.CRON, cron="0 3 * * *",
                      template_key="autopilot.jobforge.healthcheck", trigger_id="t1", created_at=T0, updated_at=T0)
    plain = _render_trigger(TriggerView(trigger=trigger, state="active", next_fires=[T0]))
    assert "Drifted" not in plain and "as Temporal has it now" not in plain
    live = SimpleNamespace(spec="0 4 * * *", timezone="UTC", jitter_seconds=0, overlap=SimpleNamespace(value="skip"),
                           catchup_window_seconds=60, paused=False, note="", next_fires=[T0],
                           recent_actions=[SimpleNamespace(scheduled_at=T0, started_at=T0, workflow_id="wf-<1>")])
    drifted = _render_trigger(SimpleNamespace(
        trigger=trigger, state="drifted", schedule_id="jobforge/acme/trigger/nightly", schedule_note="", next_fires=[],
        recent_fires=0, live=live, drift=["input: missing"], edited=["cron: 0 4 * * *"], skips="",
        fix="jobforge triggers repair nightly --tenant acme"))
    assert "Drifted" in drifted and "input: missing" in drifted and "jobforge triggers repair nightly" in drifted
    assert "0 4 * * *" in drifted and "wf-&lt;1&gt;" in drifted and "kept by repair and update" in drifted


def test_trigger_page_renders_the_services_own_views() -> None:
    """The views TriggerService builds (a drifted live Schedule; a missing one) render with the drift, the edits,
    the recent actions and the fix."""
    from jobforge.models import Trigger, TriggerKind
    from shared.triggers.schedules import LiveSchedule, ScheduleActionTaken
    from shared.triggers.service import TriggerView

    trigger = Trigger(tenant_id="acme", name="nightly", kind=TriggerKind.CRON, cron="0 3 * * *",
                      template_key="autopilot.jobforge.healthcheck", trigger_id="t1", created_at=T0, updated_at=T0)
    live = LiveSchedule(spec="every 1s", interval_seconds=1, next_fires=[T0], catchup_window_seconds=31536000,
                        recent_actions=[ScheduleActionTaken(scheduled_at=T0, started_at=T0, workflow_id="wf-1")])
    drifted = _render_trigger(TriggerView(
        trigger=trigger, state="drifted", schedule_id="jobforge/acme/trigger/nightly", live=live,
        drift=["input: missing (every fire fails: it cannot tell which trigger to fire)"],
        edited=["times: every 1s (JobForge had 0 3 * * *)"], fix="jobforge triggers repair nightly --tenant acme"))
    assert "Drifted" in drifted and "input: missing" in drifted and "every 1s" in drifted and "wf-1" in drifted
    assert "jobforge triggers repair nightly --tenant acme" in drifted and "kept by repair and update" in drifted
    missing = _render_trigger(TriggerView(
        trigger=trigger, state="schedule_missing", schedule_id="jobforge/acme/trigger/nightly",
        fix="jobforge triggers repair nightly --tenant acme  (or: jobforge triggers delete nightly --tenant acme)"))
    assert "Temporal Schedule is missing" in missing and "jobforge triggers delete nightly" in missing
    assert "Drifted" not in missing
