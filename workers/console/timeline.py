"""Where the verify pack's steps sit in time (pure): from a run's history, or from its live progress.

A finished run's history has, for each step activity, when it was scheduled, when its last attempt
started and when it closed; parallel steps (lint and typecheck) overlap. A running run answers the
``progress`` query with each step's start and, once done, its duration.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from workers.console.charts import Span

#: the verify pack's step activities (``activities/verify.py``)
STEP_ACTIVITIES = frozenset({"verify.install", "verify.run_step"})
_CLOSED = {"ACTIVITY_TASK_COMPLETED": "", "ACTIVITY_TASK_FAILED": "failed", "ACTIVITY_TASK_TIMED_OUT": "timed_out",
           "ACTIVITY_TASK_CANCELED": "cancelled"}


def _attrs(event: Mapping[str, Any]) -> Mapping[str, Any]:
    for key, value in event.items():
        if key.endswith("EventAttributes") and isinstance(value, dict):
            return value
    return {}


def _payload(container: Any) -> Any:
    """The first ``json/plain`` payload of ``{"payloads": [...]}`` as a value (None when not JSON)."""
    payloads = (container or {}).get("payloads") or [] if isinstance(container, dict) else []
    if not payloads or not isinstance(payloads[0], dict):
        return None
    payload = payloads[0]
    try:
        encoding = base64.b64decode((payload.get("metadata") or {}).get("encoding", ""))
        if encoding != b"json/plain":
            return None
        return orjson.loads(base64.b64decode(payload.get("data", "")))
    except (binascii.Error, orjson.JSONDecodeError, TypeError, AttributeError):
        return None


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _kind(event: Mapping[str, Any]) -> str:
    kind = str(event.get("eventType", ""))
    return kind.removeprefix("EVENT_TYPE_")


def spans_from_history(events: Iterable[Mapping[str, Any]]) -> list[Span]:
    """The verify steps of a run's history events, in the order they were scheduled."""
    scheduled: dict[str, tuple[str, datetime]] = {}
    started: dict[str, datetime] = {}
    closed: dict[str, tuple[datetime, str]] = {}
    order: list[str] = []
    for event in events:
        kind, attrs, at = _kind(event), _attrs(event), _time(event.get("eventTime"))
        if at is None:
            continue
        if kind == "ACTIVITY_TASK_SCHEDULED":
            if (attrs.get("activityType") or {}).get("name") not in STEP_ACTIVITIES:
                continue
            request = _payload(attrs.get("input"))
            step = request.get("step") if isinstance(request, dict) else None
            if isinstance(step, str):
                ident = str(event.get("eventId"))
                scheduled[ident] = (step, at)
                order.append(ident)
        elif kind == "ACTIVITY_TASK_STARTED":
            started[str(attrs.get("scheduledEventId"))] = at
        elif kind in _CLOSED:
            ident = str(attrs.get("scheduledEventId"))
            status = _CLOSED[kind]
            if not status:
                result = _payload(attrs.get("result"))
                if isinstance(result, dict) and isinstance(result.get("result"), dict):
                    result = result["result"]  # install answers {"result": StepResult, ...}
                status = str(result.get("status", "passed")) if isinstance(result, dict) else "passed"
            closed[ident] = (at, status)
    if not order:
        return []
    origin = min(scheduled[i][1] for i in order)
    spans = []
    for ident in order:
        step, at = scheduled[ident]
        begin = started.get(ident, at)
        end, status = closed.get(ident, (begin, "running"))
        spans.append(Span(step, (begin - origin).total_seconds(), max((end - begin).total_seconds(), 0.0), status,
                          open=ident not in closed))
    return spans


def spans_from_progress(steps: Sequence[Mapping[str, Any]], now: datetime) -> list[Span]:
    """The steps of a ``progress`` answer that have started (running ones end at ``now``)."""
    begun = [(s, _time(s.get("started_at"))) for s in steps]
    times = [at for _, at in begun if at is not None]
    if not times:
        return []
    origin = min(times)
    spans = []
    for step, at in begun:
        if at is None:
            continue
        duration = step.get("duration_seconds")
        status = str(step.get("status", "running"))
        running = duration is None
        spans.append(Span(str(step.get("name")), (at - origin).total_seconds(),
                          max((now - at).total_seconds(), 0.0) if duration is None else float(duration),
                          status, open=running))
    return spans
