"""bench/verify_corpus.py's account of a run's time besides its commands, from the workflow history's phases."""

from __future__ import annotations

import pytest

from bench.verify_corpus import Phase, overhead


def test_steps_one_after_another() -> None:
    phases = [Phase("prepare", "", 0.02, 0.0, 0.05), Phase("install", "install", 0.08, 0.0, 0.3),
              Phase("run_step", "build", 0.39, 0.0, 0.15), Phase("run_step", "test", 0.55, 0.0, 0.25),
              Phase("finalize", "", 0.81, 0.0, 0.01)]
    got = overhead(phases, {"install": 0.29, "build": 0.14, "test": 0.24, "lint": 0.0}, wall=0.85)
    assert got == pytest.approx({"start": 0.02, "prepare": 0.05, "between": 0.04, "around": 0.03,
                                 "finalize": 0.01, "outside": 0.03})


def test_steps_side_by_side_leave_no_gap_where_one_runs() -> None:
    """Two steps of a stage scheduled together: the span either covers is not time between activities."""
    phases = [Phase("prepare", "", 0.0, 0.0, 0.1), Phase("run_step", "lint", 0.11, 0.0, 1.0),
              Phase("run_step", "test", 0.11, 0.01, 2.0), Phase("finalize", "", 2.13, 0.0, 0.01)]
    got = overhead(phases, {"lint": 0.99, "test": 1.98}, wall=2.2)
    assert got["between"] == pytest.approx(0.01 + 0.01)
    assert got["around"] == pytest.approx(0.01 + 0.03)
    assert got["outside"] == pytest.approx(2.2 - 2.14)


def test_no_history_no_account() -> None:
    assert overhead([], {}, wall=1.0) == {}
