"""The soak rig's in-flight sampler reads agents that the campaign kills at any moment: an
answer cut short, garbled or missing is "no sample", never an exception that ends the sampler."""

import random
import socket
import threading
from collections.abc import Iterator

import pytest

from testkit.campaigns.soak_rig import _in_flight

BODY = (
    b'mailprobe_agent_checks_in_flight{country="DE"} 3\n'
    b'mailprobe_agent_checks_in_flight{country="AT"} 2\n'
    b"mailprobe_agent_checks_total 40\n"
)
WHOLE = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
CUT_SHORT = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\nmailprobe_agent_checks_in"
BAD_STATUS = b"garbage\r\n\r\n"
GARBLED_VALUE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 41\r\nConnection: close\r\n\r\n"
    b'mailprobe_agent_checks_in_flight{c="DE"} x'
)
NOTHING = b""


def _below_ephemeral() -> socket.socket:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lowest = int(f.read().split()[0])
    for port in random.sample(range(max(1024, lowest - 8192), lowest), 64):
        try:
            return socket.create_server(("127.0.0.1", port))
        except OSError:
            continue
    raise RuntimeError(f"no free port in the 8,192 below {lowest}")


@pytest.fixture
def answering() -> Iterator[tuple[list[bytes], int]]:
    """A loopback server that answers each connection with the next canned reply, then closes.
    Its port is below the kernel's ephemeral range, where no other test's server or agent is
    given one (they bind port 0): the short soak, on another worker, polls the metrics ports of
    agents it killed, which a port from that range could be by then. A connection with no reply
    queued is closed unanswered."""
    replies: list[bytes] = []
    srv = _below_ephemeral()
    port = srv.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                if replies:
                    conn.sendall(replies.pop(0))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield replies, port
    srv.close()


def test_a_whole_answer_is_summed_over_countries(answering: tuple[list[bytes], int]) -> None:
    replies, port = answering
    replies.append(WHOLE)
    assert _in_flight(port) == 5


@pytest.mark.parametrize("reply", [CUT_SHORT, BAD_STATUS, GARBLED_VALUE, NOTHING])
def test_an_answer_cut_short_or_garbled_is_no_sample(
    answering: tuple[list[bytes], int], reply: bytes
) -> None:
    replies, port = answering
    replies.append(reply)
    assert _in_flight(port) is None


def test_no_listener_is_no_sample() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert _in_flight(port) is None
