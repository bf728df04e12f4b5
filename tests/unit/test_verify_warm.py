"""The verify activities probe the worker's host in the background as the worker starts, so that its first
run does not wait for those probes (about 0.3 s, a large part of a small repository's whole run)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

import activities.toolchains as toolchains
import activities.verify as verify
from activities.artifacts import ArtifactStore
from activities.verify import VerifyActivities
from shared.flags import FlagReader
from shared.settings import Settings
from shared.store import Store


def _activities(tmp_path: Path) -> VerifyActivities:
    settings = Settings(home=tmp_path / "home", verify_cache_dir=tmp_path / "cache")
    return VerifyActivities(cast(Store, None), settings, cast(FlagReader, None),
                            ArtifactStore(tmp_path / "artifacts", cast(Store, None)))


@pytest.fixture
def unprobed(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Nothing probed yet in this process; returns the commands run from here on."""
    monkeypatch.setattr(toolchains, "_versions", {})
    monkeypatch.setattr(toolchains, "_probed", {})
    monkeypatch.setattr(verify, "_sandbox_probe", {})
    ran: list[list[str]] = []
    real = subprocess.run

    def recording(argv: Any, *args: Any, **kwargs: Any) -> Any:
        ran.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording)
    return ran


async def test_warm_probes_the_host_so_a_run_runs_no_probe(tmp_path: Path, unprobed: list[list[str]]) -> None:
    activities = _activities(tmp_path)
    activities.warm()
    await activities._warmed()
    assert unprobed, "the warm-up ran no probe"
    warmed = len(unprobed)
    host = activities.toolchains.host()
    verify.probe_sandbox(activities.settings.verify_sandbox)
    assert unprobed[warmed:] == [], "a run after the warm-up probed the host again"
    assert host.python_version


def test_without_a_running_loop_nothing_is_started(tmp_path: Path, unprobed: list[list[str]]) -> None:
    activities = _activities(tmp_path)
    activities.warm()
    assert activities._warming is None and unprobed == []
