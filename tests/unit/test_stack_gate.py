"""The stack gate: a worker or API launched by ``jobforge dev`` waits on stdin until the stack is ready."""

from __future__ import annotations

import io

import pytest

from jobforge.errors import StackStartFailed
from workers.runtime import wait_for_stack
from workers.stack import STACK_GATE


def test_a_process_started_any_other_way_does_not_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without JOBFORGE_STACK_GATE the call returns at once, reading nothing from stdin."""
    monkeypatch.delenv(STACK_GATE, raising=False)
    stdin = io.StringIO("ready\n")
    monkeypatch.setattr("sys.stdin", stdin)
    wait_for_stack("jobforge-worker")
    assert stdin.tell() == 0


def test_the_gate_opens_on_a_line_and_a_closed_stdin_is_a_stack_that_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the gate a line on stdin lets the process go on; stdin closed before any line (the stack
    stopped while starting) refuses with StackStartFailed naming the process."""
    monkeypatch.setenv(STACK_GATE, "stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO("ready\n"))
    wait_for_stack("jobforge-worker")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(StackStartFailed, match="jobforge-api: the dev stack stopped"):
        wait_for_stack("jobforge-api")
