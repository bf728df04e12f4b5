"""The workflow sandbox of JobForge's workers: Temporal's, with its code strings compiled once per process.

Temporal's sandbox enters a workflow's sandbox by ``exec`` of a short code string: to build the instance,
for every activation and for every payload it encodes or decodes (the serialization context of each
command). ``exec`` of a string compiles it each time, about 30-100 us, a few dozen times per run; the
strings are a handful of constants (and one per workflow type), so :class:`CompiledSandboxRunner` keeps
their code objects and hands those to the same ``exec``. Everything else (restrictions, passthrough
modules, the importer) is the stock runner's.
"""

from __future__ import annotations

import functools
from types import CodeType
from typing import Any

from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._runner import _Instance


@functools.lru_cache(maxsize=512)
def compiled(code: str) -> CodeType:
    """``code`` compiled as ``exec`` compiles a string (the file name ``<string>`` included)."""
    return compile(code, "<string>", "exec")


class _CompiledInstance(_Instance):
    def _run_code(self, code: str, **extra_globals: Any) -> None:
        # exec takes a code object as it takes a string
        super()._run_code(compiled(code), **extra_globals)  # type: ignore[arg-type]  # exec accepts CodeType


class CompiledSandboxRunner(SandboxedWorkflowRunner):
    """:class:`SandboxedWorkflowRunner` whose instances run precompiled code objects."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _CompiledInstance(det, self.runner_class, self.restrictions)
