"""Ports for servers the stack and the tests start: outside the kernel's ephemeral range, never handed twice."""

from __future__ import annotations

import random
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.procs import free_port as claimed_port
from workers.stack import ephemeral_port_range, free_port, port_is_free


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_a_free_port_is_outside_the_ephemeral_range(seed: int) -> None:
    low, high = ephemeral_port_range()
    port = free_port(rng=random.Random(seed))
    assert not low <= port <= high
    assert port_is_free(port)


def test_a_port_taken_by_a_listener_is_not_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        assert not port_is_free(sock.getsockname()[1])


def test_claimed_ports_are_never_handed_out_twice_while_their_process_lives() -> None:
    ports = [claimed_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
