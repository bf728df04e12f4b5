"""The workflow sandbox of JobForge's workers: Temporal's, with its code strings and the modules it re-imports
compiled once per process, and the serialization-context lookups made without entering the sandbox.

Temporal's sandbox enters a workflow's sandbox by ``exec`` of a short code string: to build the instance,
for every activation and for every payload it encodes or decodes (the serialization context of each
command). ``exec`` of a string compiles it each time, about 30-100 us, a few dozen times per run; the
strings are a handful of constants (and one per workflow type), so :class:`CompiledSandboxRunner` keeps
their code objects and hands those to the same ``exec``.

The sandbox re-imports a workflow's module (and any module it imports that is not passed through) for every
workflow instance, so that no module state is shared between runs: the module's code runs again in a fresh
module object. Python's import compiles the module's source for that unless it finds current bytecode in
``__pycache__``, which it does not when none is written (``PYTHONDONTWRITEBYTECODE``, a read-only install):
about 3 ms per run for a small template module, 20 ms for ``workflows.verify_pack``. While a sandbox's
importer is applied on the thread, :func:`install_module_code_cache`'s loader hook answers a source it has
compiled before (same path, same bytes, same optimisation level) with the same code object. A code object is
immutable (executing it builds new functions and classes each time), so each instance still runs the module's
code afresh; only the compilation is shared. Imports outside a sandbox compile as before.

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
import threading
from collections import OrderedDict
from importlib.machinery import SourceFileLoader
from types import CodeType
from typing import Any

from temporalio.converter import SerializationContext
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._importer import Importer
from temporalio.worker.workflow_sandbox._runner import _Instance

#: how many compiled modules the sandbox's loader hook keeps (least recently used go first)
MODULE_CODE_CACHE_SIZE = 256


@functools.lru_cache(maxsize=512)
def compiled(code: str) -> CodeType:
    """``code`` compiled as ``exec`` compiles a string (the file name ``<string>`` included)."""
    return compile(code, "<string>", "exec")


_stock_source_to_code = SourceFileLoader.source_to_code
_module_code: OrderedDict[tuple[str, bytes, int], CodeType] = OrderedDict()
_module_code_lock = threading.Lock()


def _sandbox_source_to_code(self: SourceFileLoader, data: Any, path: Any, *, _optimize: int = -1) -> CodeType:
    """``SourceFileLoader.source_to_code``: inside a sandbox's import, a source compiled before (same path,
    bytes and optimisation level) is answered with its code object; anything else compiles as it always does."""
    if Importer.current_importer() is None or not isinstance(data, bytes) or not isinstance(path, str):
        return _stock_source_to_code(self, data, path, _optimize=_optimize)
    key = (path, data, _optimize)
    with _module_code_lock:
        code = _module_code.get(key)
        if code is not None:
            _module_code.move_to_end(key)
            return code
    code = _stock_source_to_code(self, data, path, _optimize=_optimize)
    with _module_code_lock:
        _module_code[key] = code
        while len(_module_code) > MODULE_CODE_CACHE_SIZE:
            _module_code.popitem(last=False)
    return code


def install_module_code_cache() -> None:
    """Have the sandbox's re-imports reuse the code objects of sources they compiled before (idempotent)."""
    if SourceFileLoader.source_to_code is not _sandbox_source_to_code:
        setattr(SourceFileLoader, "source_to_code", _sandbox_source_to_code)  # noqa: B010  # a method replaced on the class


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
    """:class:`SandboxedWorkflowRunner` whose instances run precompiled code objects (the sandbox's code strings
    and the modules it re-imports) and answer the payload lookups without entering the sandbox."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        install_module_code_cache()
        return _CompiledInstance(det, self.runner_class, self.restrictions)
