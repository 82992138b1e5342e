"""The pure tier: tests that need no server, run first (`make test`) and in seconds. Every test
here is refused the network: a socket that binds or connects anywhere but a Unix socket fails
the test, so a test that starts or reaches a server belongs in a folder of its own area
(tests/probers, tests/pipeline, ...), not here. Child processes (a CLI's own checks) may run."""

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

NO_SERVER = "a unit test needs no server: put it beside its area's tests (tests/probers, ...)"


Call = Callable[[socket.socket, Any], Any]


def _refuse(original: Call) -> Call:
    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX:
            return original(self, address)
        raise AssertionError(f"{NO_SERVER}; it used {address!r}")

    return guarded


@pytest.fixture(autouse=True)
def _no_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, _refuse(getattr(socket.socket, name)))
    yield
