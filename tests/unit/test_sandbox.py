"""The worker's sandbox runner: Temporal's sandbox, with its code strings compiled once."""

from __future__ import annotations

import contextlib

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from workers.sandbox import CompiledSandboxRunner, compiled
from workers.worker import WORKFLOW_RUNNER


def test_a_code_string_is_compiled_once_and_runs_as_exec_runs_the_string() -> None:
    """The same string gives the same code object, which exec runs with the effect of the string itself."""
    code = "with guard:\n  answer = value * 2\n"
    assert compiled(code) is compiled(code)
    from_string: dict[str, object] = {"guard": contextlib.nullcontext(), "value": 21}
    from_code: dict[str, object] = {"guard": contextlib.nullcontext(), "value": 21}
    exec(code, from_string, from_string)
    exec(compiled(code), from_code, from_code)
    assert from_string["answer"] == from_code["answer"] == 42
    assert compiled(code).co_filename == "<string>"


def test_the_worker_runs_workflows_on_the_compiled_runner_with_the_same_restrictions() -> None:
    """WORKFLOW_RUNNER is a CompiledSandboxRunner (a SandboxedWorkflowRunner): restrictions and passthrough stay."""
    assert isinstance(WORKFLOW_RUNNER, CompiledSandboxRunner)
    assert isinstance(WORKFLOW_RUNNER, SandboxedWorkflowRunner)
    assert "shared" in WORKFLOW_RUNNER.restrictions.passthrough_modules
