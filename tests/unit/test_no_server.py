"""The pure tier refuses the network (tests/unit/conftest.py): what keeps it fast and needing
no server."""

import asyncio
import re
import socket

import pytest

from tests.unit.conftest import NO_SERVER


@pytest.mark.parametrize("call", ["bind", "connect", "connect_ex"])
def test_a_socket_to_a_host_fails_the_test(call: str) -> None:
    with socket.socket() as s, pytest.raises(AssertionError, match=re.escape(NO_SERVER)):
        getattr(s, call)(("127.0.0.1", 0))


async def test_an_event_loop_and_a_unix_socket_still_work() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.send(b"x")
        assert right.recv(1) == b"x"
    assert await asyncio.sleep(0, "done") == "done"
