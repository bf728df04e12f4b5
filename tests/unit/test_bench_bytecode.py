"""bench/bytecode.py: what counts as a module with up-to-date bytecode."""

from __future__ import annotations

import os
import py_compile
from pathlib import Path

from bench.bytecode import PACKAGES, Bytecode, bytecode, up_to_date


def test_a_compiled_module_counts_until_its_source_changes(tmp_path: Path) -> None:
    """A module compiled as compileall does counts; after an edit (new mtime and size) its stale .pyc does not."""
    source = tmp_path / "mod.py"
    source.write_text("X = 1\n")
    assert not up_to_date(source)
    py_compile.compile(str(source), doraise=True)
    assert up_to_date(source)
    stat = source.stat()
    source.write_text("X = 22\n")
    os.utime(source, (stat.st_atime, stat.st_mtime + 5))
    assert not up_to_date(source)


def test_every_module_of_the_packages_is_counted(tmp_path: Path) -> None:
    """The count covers each .py under the project's packages, compiled or not, and skips __pycache__."""
    for package in PACKAGES:
        (tmp_path / package / "__pycache__").mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "__pycache__" / "junk.py").write_text("")
    py_compile.compile(str(tmp_path / PACKAGES[0] / "__init__.py"), doraise=True)
    assert bytecode(tmp_path) == Bytecode(1, len(PACKAGES))
