"""The workflow sandbox of JobForge's workers: Temporal's, with its code strings compiled once per process
and the serialization-context lookups made without entering the sandbox.

Temporal's sandbox enters a workflow's sandbox by ``exec`` of a short code string: to build the instance,
for every activation and for every payload it encodes or decodes (the serialization context of each
command). ``exec`` of a string compiles it each time, about 30-100 us, a few dozen times per run; the
strings are a handful of constants (and one per workflow type), so :class:`CompiledSandboxRunner` keeps
their code objects and hands those to the same ``exec``.

The payload lookups (:meth:`_CompiledInstance.get_serialization_context`,
:meth:`_CompiledInstance.get_external_store_context`) are about twenty per run, and entering the sandbox
(its importer's thread-local overrides of ``sys.modules`` and the builtins) costs ten times what they
compute: they read the instance's info and its pending commands and build a small context object, in
Temporal's own code (``temporalio`` is always passed through, so the sandboxed instance is of the host's
classes) and run no workflow code. They are asked of that instance directly. Everything else
(restrictions, passthrough modules, the importer, activations) is the stock runner's.
"""

from __future__ import annotations

import functools
from types import CodeType
from typing import Any

from temporalio.converter import SerializationContext
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

    def get_serialization_context(self, command_info: Any) -> SerializationContext | None:
        context: SerializationContext | None = self.globals_and_locals[
            "__temporal_in_sandbox"].get_serialization_context(command_info)  # type: ignore[attr-defined]
        return context

    def get_external_store_context(self, command_info: Any) -> Any:
        return self.globals_and_locals["__temporal_in_sandbox"].get_external_store_context(  # type: ignore[attr-defined]
            command_info)


class CompiledSandboxRunner(SandboxedWorkflowRunner):
    """:class:`SandboxedWorkflowRunner` whose instances run precompiled code objects and answer the payload
    lookups without entering the sandbox."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _CompiledInstance(det, self.runner_class, self.restrictions)
