"""The counting of ``bench/run_cost.py``: PostgreSQL log lines per phase and client, history events by type."""

from __future__ import annotations

from pathlib import Path

from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    HistoryEvent,
    MarkerRecordedEventAttributes,
    WorkflowExecutionStartedEventAttributes,
)

from bench.run_cost import MARK, PrivatePostgres, history_counts, payload_bytes


def test_statements_are_counted_per_phase_and_client_between_marks(tmp_path: Path) -> None:
    """Each logged message is a round trip of its client in the phase the last mark opened; BEGIN/COMMIT
    are round trips but not statements; the marks, the bench's own polling and other lines are left out."""
    pg = PrivatePostgres(tmp_path)
    pg.log.write_text("\n".join([
        "worker|1|LOG:  statement: SELECT 'before any mark'",
        f"mark|2|LOG:  statement: SELECT '{MARK}:C'",
        "worker|1|LOG:  statement: BEGIN",
        "worker|1|LOG:  execute <unnamed>: INSERT INTO runs (run_id) VALUES ($1)",
        "worker|1|DETAIL:  parameters: $1 = 'r1'",
        "worker|1|LOG:  execute <unnamed>: ",
        "\tINSERT INTO rate_limits AS r (bucket, tat)",
        "worker|1|LOG:  statement: COMMIT",
        "bench-poll|3|LOG:  execute <unnamed>: SELECT count(*) FROM runs",
        f"mark|2|LOG:  statement: SELECT '{MARK}:JobForge'",
        "submitter|4|LOG:  execute _pg3_0: INSERT INTO events (event_id) VALUES ($1)",
    ]) + "\n")
    counts = pg.counts()
    worker = counts["C"]["worker"]
    assert (worker["round_trips"], worker["statements"], worker["INSERT"]) == (4, 2, 2)
    assert worker["sql:INSERT INTO rate_limits AS r (bucket, tat)"] == 1
    assert set(counts["C"]) == {"worker"}
    assert counts["JobForge"]["submitter"]["statements"] == 1


def test_history_counts_events_by_type_markers_by_name_and_payload_bytes() -> None:
    """Payload bytes are those of the Payload messages inside the events; markers are also counted by name."""
    arg = Payload(metadata={"encoding": b"json/plain"}, data=b'{"tenant_id": "acme"}')
    started = HistoryEvent(event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
                           workflow_execution_started_event_attributes=WorkflowExecutionStartedEventAttributes(
                               input=Payloads(payloads=[arg])))
    marker = HistoryEvent(event_type=EventType.EVENT_TYPE_MARKER_RECORDED,
                          marker_recorded_event_attributes=MarkerRecordedEventAttributes(
                              marker_name="core_local_activity", details={"data": Payloads(payloads=[arg, arg])}))
    counts = history_counts([started, marker])
    assert payload_bytes(started) == arg.ByteSize()
    assert counts["payload_bytes"] == 3 * arg.ByteSize()
    assert (counts["events"], counts["MARKER_RECORDED"], counts["marker:core_local_activity"]) == (2, 1, 1)
    assert counts["history_bytes"] == started.ByteSize() + marker.ByteSize()
