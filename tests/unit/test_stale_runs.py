"""The decision for a run left queued: the terminal status its closed (or missing) workflow gives it."""

from __future__ import annotations

from temporalio.client import WorkflowExecutionStatus

from jobforge.models import RunStatus
from shared.stale_runs import verdict


def test_an_open_workflow_leaves_the_record_queued() -> None:
    """Running (admission is still to come) or an unknown state: no decision."""
    assert verdict(WorkflowExecutionStatus.RUNNING.name) is None
    assert verdict(None) is None


def test_every_closed_state_gives_a_final_status_with_a_reason() -> None:
    """Every closed Temporal state maps to a final run status; terminated and cancelled runs are cancelled,
    timed-out ones timed out, and a workflow Temporal does not know is failed."""
    for status in WorkflowExecutionStatus:
        decided = verdict(status.name)
        if status is WorkflowExecutionStatus.RUNNING:
            continue
        assert decided is not None and decided[0].is_final and decided[1], status
    assert verdict("TERMINATED") == (RunStatus.CANCELLED, "its workflow was terminated in Temporal before admission")
    timed_out = verdict("TIMED_OUT")
    assert timed_out is not None and timed_out[0] is RunStatus.TIMED_OUT
    gone = verdict(None, found=False)
    assert gone is not None and gone[0] is RunStatus.FAILED and "not in Temporal" in gone[1]
