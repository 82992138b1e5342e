"""The HTTP front's rules as tables: a head's bounds (whole or in pieces, a request's or a chunked
body's trailer), a chunked body's framing, the connection caps, and the rate limiters' checks
kept on the loop."""

from collections.abc import Callable

import h11
import pytest
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.utils.predicates import is_async_callable

from controller.settings.notices import ReportsSettings
from controller.settings.web import AccessSettings
from controller.web.api.auth import flood_guard
from controller.web.api.reports import post_guard
from controller.web.connection_caps import (
    FD_RESERVE,
    Admit,
    ConnectionCaps,
    giving_way,
    replica_cap,
)
from controller.web.h11_bounds import (
    FREE_CHUNKS,
    MAX_HEAD_BYTES,
    MAX_HEAD_FIELDS,
    MIN_MEAN_CHUNK,
    BoundedConnection,
    chunks_refused,
)

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
CHUNKED = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def _fields(n: int, name: bytes = b"X") -> bytes:
    return b"".join(b"%s-%d: v\r\n" % (name, i) for i in range(n))


def _parse(data: bytes, pieces: int) -> tuple[list[str], str | None]:
    """The events a server connection takes from `data` sent in `pieces`, answering each
    request at once, and the refusal that stopped it (None: none)."""
    conn = BoundedConnection(h11.SERVER, MAX_HEAD_BYTES)
    size = len(data) // pieces + 1
    seen: list[str] = []
    try:
        for at in range(0, len(data), size):
            conn.receive_data(data[at : at + size])
            while (event := conn.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                seen.append(type(event).__name__)
                if isinstance(event, h11.EndOfMessage):
                    conn.send(h11.Response(status_code=204, headers=[]))
                    conn.send(h11.EndOfMessage())
                    conn.start_next_cycle()
    except h11.RemoteProtocolError as refused:
        return seen, str(refused)
    return seen, None


HEAD = b"GET / HTTP/1.1\r\nHost: a\r\n"
TOO_MANY = f"a head of more than {MAX_HEAD_FIELDS} header fields"
TOO_BIG = f"a head of more than {MAX_HEAD_BYTES} bytes"


@pytest.mark.parametrize("pieces", [1, 7, 1000], ids=["whole", "in_7", "in_1000"])
@pytest.mark.parametrize(
    ("data", "refused"),
    [
        (GET * 3, None),
        (HEAD + _fields(MAX_HEAD_FIELDS - 1) + b"\r\n", None),  # Host and 99 more
        (HEAD + _fields(MAX_HEAD_FIELDS) + b"\r\n", TOO_MANY),
        (HEAD + _fields(11_111) + b"\r\n", TOO_MANY),
        (HEAD + b"X: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", TOO_BIG),
        (HEAD + b"X: " + b"a" * (MAX_HEAD_BYTES - 100) + b"\r\n\r\n" + GET, None),
        # a chunked body's trailer, in the piece of its last chunk or after it
        (CHUNKED + b"4\r\nabcd\r\n0\r\n" + _fields(5000, b"T") + b"\r\n", TOO_MANY),
        (CHUNKED + b"4\r\nabcd\r\n0\r\nT: v\r\n\r\n" + GET, None),
        (CHUNKED + b"4\r\nabcd\r\n0\r\n\r\n" + HEAD + b"X: " + b"a" * 30_000 + b"\r\n\r\n", None),
    ],
    ids=[
        "three_gets",
        "fields_at_bound",
        "fields_past_bound",
        "11111_fields",
        "one_long_field",
        "long_head_then_pipelined",
        "wide_trailer",
        "trailer_then_pipelined",
        "empty_trailer_then_long_head",
    ],
)
def test_a_head_is_bounded_however_it_arrives(
    data: bytes, refused: str | None, pieces: int
) -> None:
    seen, got = _parse(data, pieces)
    assert got == refused, seen


@pytest.mark.parametrize(
    ("chunks", "body", "refused"),
    [
        (FREE_CHUNKS, FREE_CHUNKS, False),  # any chunks up to the free ones
        (FREE_CHUNKS + 1, FREE_CHUNKS + 1, True),  # 1-byte chunks past them
        (FREE_CHUNKS + 1, (FREE_CHUNKS + 1) * MIN_MEAN_CHUNK, False),
        (10_000, 10_000 * MIN_MEAN_CHUNK - 1, True),
        (10_000, 10_000 * 1024, False),
    ],
)
def test_a_body_of_too_many_chunks_for_its_bytes_is_refused(
    chunks: int, body: int, refused: bool
) -> None:
    assert chunks_refused(chunks, body) is refused


def test_one_byte_chunks_are_refused_after_the_free_ones() -> None:
    seen, refused = _parse(CHUNKED + b"1\r\na\r\n" * 1000 + b"0\r\n\r\n", 1)
    assert seen.count("Data") == FREE_CHUNKS  # the one past them refused
    assert refused == f"a body of {FREE_CHUNKS + 1} chunks in {FREE_CHUNKS + 1} bytes"


def test_kilobyte_chunks_pass_in_any_pieces() -> None:
    body = (b"400\r\n" + b"a" * 1024 + b"\r\n") * 300 + b"0\r\n\r\n"
    for pieces in (1, 777):
        seen, refused = _parse(CHUNKED + body + GET, pieces)
        assert refused is None and seen[-2:] == ["Request", "EndOfMessage"]


@pytest.mark.parametrize(
    ("wanted", "nofile", "cap"),
    [
        (1000, 1_048_576, 1000),
        (1000, 1024, 1024 - FD_RESERVE),
        (1000, 256, 256 - FD_RESERVE),
        (1000, 100, 1),
    ],
)
def test_the_replica_cap_leaves_the_process_its_files(wanted: int, nofile: int, cap: int) -> None:
    assert replica_cap(wanted, nofile) == cap


def test_connections_are_capped_per_address_and_per_replica() -> None:
    caps = ConnectionCaps(replica=5, per_address=2, trusted=["10.0.0.0/8"])
    assert [caps.admit("192.0.2.1") for _ in range(3)] == [Admit.YES, Admit.YES, Admit.ADDRESS_FULL]
    # a trusted proxy carries many clients: the replica's cap only
    assert [caps.admit("10.1.2.3") for _ in range(4)] == [Admit.YES] * 3 + [Admit.REPLICA_FULL]
    caps.release("192.0.2.1")
    assert caps.admit("192.0.2.1") is Admit.YES
    assert caps.admit("198.51.100.7") is Admit.REPLICA_FULL
    caps.release("10.1.2.3")
    assert (caps.admit("198.51.100.7"), caps.total) == (Admit.YES, 5)


def test_an_ipv6_client_is_capped_by_its_64() -> None:
    """One subscriber's /64 holds one address's connections, however many of its addresses it
    connects from; another /64 has its own."""
    caps = ConnectionCaps(replica=100, per_address=2, trusted=[])
    same = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"]
    assert [caps.admit(a) for a in same] == [Admit.YES, Admit.YES, Admit.ADDRESS_FULL]
    assert caps.admit("2001:db8:1:3::1") is Admit.YES
    caps.release("2001:db8:1:2::2")
    assert caps.admit("2001:db8:1:2::9") is Admit.YES


@pytest.mark.parametrize(
    ("waiting", "gives_way"),
    [
        ([("attacker-a", 8), ("lone", 1), ("attacker-b", 8)], "attacker-a"),
        ([("lone", 1), ("attacker-b", 8)], "attacker-b"),  # the lone client waited longest
        ([("first", 1), ("second", 1)], "first"),  # ties: the longest waiting
        ([("lone", 1)], "lone"),
        ([], None),
    ],
)
def test_the_connection_giving_way_is_from_the_address_holding_most(
    waiting: list[tuple[str, int]], gives_way: str | None
) -> None:
    held = dict(waiting)
    assert giving_way([name for name, _ in waiting], held.__getitem__) == gives_way


@pytest.mark.parametrize(
    "guard",
    [lambda: flood_guard(AccessSettings()), lambda: post_guard(ReportsSettings())],
    ids=["logins", "reports"],
)
def test_the_rate_limiters_decide_on_the_loop(guard: Callable[[], RateLimitConfig]) -> None:
    """Each rate limiter sees every request of the API: its check is a coroutine function,
    never a plain one, which Litestar runs in a worker thread (a hop through the thread pool
    per request, and the loop waiting on thread starts in a burst)."""
    check = guard().check_throttle_handler
    assert check is not None and is_async_callable(check)
