"""workers/boot.py: a service process imports its modules with the garbage collector paused, then runs main()."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.boot import SERVICES, boot, imported_main

MODULE = """
import gc
import sys

COLLECTING_AT_IMPORT = gc.isenabled()
RAN = []


def main():
    RAN.append((gc.isenabled(), list(sys.argv)))
"""


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway service module on sys.path, registered in SERVICES as ``probe``."""
    name = f"boot_probe_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(SERVICES, "probe", name)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    yield name
    sys.modules.pop(name, None)


def test_the_module_imports_with_the_collector_paused_and_main_runs_with_it_on(service: str) -> None:
    """During the import the collector is off; main() runs with it on again, with the service's argv."""
    assert gc.isenabled()
    boot(["probe", "--port", "1"])
    module = sys.modules[service]
    assert module.COLLECTING_AT_IMPORT is False
    assert module.RAN == [(True, ["jobforge-probe", "--port", "1"])]
    assert gc.isenabled()


def test_a_failing_import_leaves_the_collector_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that raises while importing does not leave the collector off."""
    (tmp_path / "boot_probe_broken.py").write_text("raise RuntimeError('broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeError, match="broken"):
        imported_main("boot_probe_broken")
    assert gc.isenabled()


def test_an_unknown_service_is_a_usage_error() -> None:
    """``python -m workers.boot`` names the services it starts when given another name, or none."""
    for argv in ([], ["nope"]):
        with pytest.raises(SystemExit, match=r"usage: python -m workers.boot \{worker\|api\}"):
            boot(argv)
