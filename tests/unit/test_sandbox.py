"""The worker's sandbox runner: Temporal's sandbox, with its code strings and re-imported modules compiled once."""

from __future__ import annotations

import contextlib
import sys
import uuid
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox._importer import Importer
from temporalio.worker.workflow_sandbox._restrictions import RestrictionContext

from workers.sandbox import CompiledSandboxRunner, compiled, install_module_code_cache
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


def _sandbox_import(name: str) -> ModuleType:
    """``name`` imported as the sandbox imports a workflow's module for a new instance: by a fresh importer
    of the default restrictions, into its own ``sys.modules``."""
    importer = Importer(SandboxRestrictions.default, RestrictionContext(), workflow_module_name=name)
    namespace: dict[str, Any] = {}
    with importer.applied():
        exec(f"import {name} as module", namespace, namespace)
    module: ModuleType = namespace["module"]
    return module


def test_a_re_imported_module_runs_afresh_from_code_compiled_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each sandbox import runs the module's code again (new module, new state, new functions) from one code
    object; a changed source is compiled anew, and imports outside a sandbox compile as before."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"sandbox_probe_{uuid.uuid4().hex}"
    source = tmp_path / f"{name}.py"
    source.write_text("state: list[int] = []\n\ndef answer() -> int:\n    return 42\n")
    install_module_code_cache()

    first, second = _sandbox_import(name), _sandbox_import(name)
    assert first is not second and first.state is not second.state and first.answer is not second.answer
    first.state.append(1)
    assert second.state == []
    assert first.answer.__code__ is second.answer.__code__
    assert second.answer() == 42

    source.write_text("state: list[int] = []\n\ndef answer() -> int:\n    return 43\n")
    third = _sandbox_import(name)
    assert third.answer() == 43 and third.answer.__code__ is not first.answer.__code__

    loader = SourceFileLoader(name, str(source))
    data = source.read_bytes()
    assert loader.source_to_code(data, str(source)) is not loader.source_to_code(data, str(source))
