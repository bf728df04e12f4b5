"""The embedded PostgreSQL of `jobforge dev`: a server that will not start says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobforge.errors import StackStartFailed
from tests.support.procs import free_port
from workers.stack import EmbeddedPostgres


def test_a_server_that_stops_while_starting_names_the_reason_from_its_own_log(stack_tmp_path: Path) -> None:
    pg = EmbeddedPostgres(stack_tmp_path / "pgdata", free_port())
    pg.start()
    pg.stop()
    with (pg.pgdata / "postgresql.conf").open("a") as conf:
        conf.write("\nshared_buffers = 'plenty'\n")
    with pytest.raises(StackStartFailed) as caught:
        pg.start()
    assert "server.log" in str(caught.value)
    assert "shared_buffers" in str(caught.value)
