"""The CLI's tables: whole ids and template keys in a pipe or file and with ``--wide``; cut to fit a terminal."""

from __future__ import annotations

import io

import pytest
import typer.main
from rich.console import Console
from rich.table import Table

from workers import cli_common
from workers.cli import app

RUN_ID = "0195f3a2-7c1e-7b6a-9c4d-2f1e8a7b6c5d"
TEMPLATE = "autopilot.jobforge.a_rather_long_template_key.healthcheck"


def _table() -> Table:
    table = Table("run id", "template", "status", "created", "trace")
    table.add_row(RUN_ID, TEMPLATE, "succeeded", "2026-12-03T08:00:00+00:00", "4bf92f3577b34da6a3ce929d0e0e4736")
    return table


def _printed(monkeypatch: pytest.MonkeyPatch, *, terminal: bool, wide: bool) -> str:
    buffer = io.StringIO()
    monkeypatch.setattr(cli_common, "out", Console(file=buffer, width=60, force_terminal=terminal,
                                                   color_system=None))
    cli_common.print_table(_table(), wide=wide)
    return buffer.getvalue()


@pytest.mark.parametrize(("terminal", "wide"), [(False, False), (False, True), (True, True)])
def test_a_table_keeps_ids_and_keys_whole_off_a_terminal_or_with_wide(monkeypatch: pytest.MonkeyPatch,
                                                                      terminal: bool, wide: bool) -> None:
    """Printed into a pipe or file (however narrow), or with ``--wide``, each cell is whole on one line."""
    text = _printed(monkeypatch, terminal=terminal, wide=wide)
    assert RUN_ID in text and TEMPLATE in text and "…" not in text
    assert len(text.splitlines()) == 5  # top, header, rule, the row, bottom: nothing wrapped


def test_a_table_on_a_terminal_fits_its_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal without ``--wide`` the table fits the terminal's width, long cells cut short."""
    text = _printed(monkeypatch, terminal=True, wide=False)
    assert max(len(line) for line in text.splitlines()) <= 60 and RUN_ID not in text


def test_the_commands_that_print_ids_take_wide_and_json() -> None:
    """``runs list`` and ``templates`` take ``--wide`` for a terminal and ``--json`` for programs."""
    root = typer.main.get_command(app)
    for command in (root.commands["runs"].commands["list"], root.commands["templates"]):
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert {"--wide", "--json"} <= options
