"""The API's HTTP front against anonymous clients, on `controller serve` (the `api` role) run as
a process of its own on loopback, as production starts it (tests/ops/http_front.py): each attack
is bounded in count and time, and while it runs `/health` (fresh connections from another source
address) answers with p99 under 100 ms (each probe less the time the kernel kept the prober or
the server's loop waiting for a CPU: tests/ops/test_front_watch.py checks that measure) and the
server's RSS, with the kernel's send queues of its connections, grows by less than 100 MiB
(/proc of the server). One process serves all the file's tests, with API_MAX_CONNECTIONS=100
(what the unread answers exceed; no other attack holds more than 8 connections) and its OpenAPI
document made before any attack; each attack is judged from the server's RSS and fds before the
first (Served.baseline). The TLS handshake, the open-files limit, the rate per address and
HAProxy in front are in tests/ops/test_http_front_admission.py.

- 1-byte chunks: refused (400, closed) once a body's chunks are too many for its bytes.
- A wide head sent in one piece: refused past MAX_HEAD_BYTES or MAX_HEAD_FIELDS (400).
- Answers nobody reads: cut at API_WRITE_SECONDS; connections capped per source address
  (API_MAX_CONNECTIONS_PER_ADDRESS) and per replica (API_MAX_CONNECTIONS).
- A client reading slowly but steadily gets its whole answer.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from testkit.front_attacks import (
    MIB,
    fetch,
    get,
    in_threads,
    one_byte_chunks,
    open_fds,
    queued_bytes,
    read_slowly,
    server_clock,
    unread_answers,
    wide_heads,
)
from tests.ops.http_front import ATTACKERS, WRITE_S, Serve, Served, judge

pytestmark = pytest.mark.breadth

SETTINGS = {"API_MAX_CONNECTIONS": "100"}  # every test's: one process serves them all
PER_ADDRESS = 64  # API_MAX_CONNECTIONS_PER_ADDRESS's default


@contextlib.asynccontextmanager
async def _served(serve: Serve) -> AsyncIterator[Served]:
    """The file's served API, its OpenAPI document made (a process encodes it on its first
    request: an attack's cost is what it costs after)."""
    async with serve(**SETTINGS) as served:
        assert await asyncio.to_thread(get, served.port, "/schema/openapi.json", "127.0.0.1") == 200
        yield served


async def test_one_byte_chunks_are_refused_before_they_cost_the_loop(serve: Serve) -> None:
    """Two clients sending 1.8 MB bodies of 1-byte chunks to a path no route takes, 3.5 MB/s
    in all, for 8 s: each body refused (400) and its connection closed before its end."""
    async with _served(serve) as served:
        base = served.baseline()
        with served.watch().running() as watch:
            found = await asyncio.to_thread(
                in_threads,
                lambda i: one_byte_chunks(served.port, ATTACKERS[i], 8, 1.75 * MIB, 1_800_000),
                2,
            )
        statuses = [s for got in found for s in got]  # type: ignore[attr-defined]
        print(f"1-byte chunks: answered {sorted(set(statuses))} to {len(statuses)} bodies")
        judge(watch, base, "1-byte chunks")
        # 0: closed mid-body (the 400 is lost when the server resets what it did not read);
        # none read to its end and answered by the application (404)
        assert statuses and set(statuses) <= {400, 0}, statuses


async def test_a_wide_head_in_one_piece_is_refused(serve: Serve) -> None:
    """Eight clients sending, for 6 s, heads of 11,111 fields (111 KB) each in one piece: each
    answered 400, none reaches the application."""
    async with _served(serve) as served:
        base = served.baseline()
        with served.watch().running() as watch:
            found = await asyncio.to_thread(
                in_threads, lambda i: wide_heads(served.port, ATTACKERS[i], 6, 11_111), 8
            )
        statuses = [s for got in found for s in got]  # type: ignore[attr-defined]
        print(f"wide heads: answered {sorted(set(statuses))} to {len(statuses)} heads")
        judge(watch, base, "wide heads")
        assert statuses and set(statuses) == {400}, sorted(set(statuses))


@pytest.mark.parametrize(
    ("sources", "closing"),
    [(1, False), (8, False), (1, True)],
    ids=["one_address", "eight_addresses", "one_address_closing"],
)
async def test_answers_nobody_reads_are_cut_and_their_connections_capped(
    serve: Serve, sources: int, closing: bool
) -> None:
    """400 connections (200 a second of the server's time: its waits for a CPU left out, as the
    probes leave them out) asking for the OpenAPI document (326 KB) and never reading it, from
    one source address or from eight (API_MAX_CONNECTIONS=100), or asking the server to close
    once it has answered: the server holds at most its caps' worth (one address's: the 64 of
    API_MAX_CONNECTIONS_PER_ADDRESS; eight addresses': the replica's 100), and frees them all
    API_WRITE_SECONDS later (its kernel's send queues too) while the clients still hold
    theirs."""
    async with _served(serve) as served:
        base = served.baseline()
        with served.watch().running() as watch:
            held = await asyncio.to_thread(
                unread_answers,
                served.port,
                ATTACKERS[:sources],
                400,
                "/schema/openapi.json",
                per_s=200,
                closing=closing,
                clock=server_clock(served.pid),
            )
            try:
                await asyncio.sleep(WRITE_S + 2)
                after = open_fds(served.pid)
                queued = queued_bytes(served.port)
            finally:
                for sock in held:
                    sock.close()
        judge(watch, base, f"unread answers from {sources} address(es), closing: {closing}")
        # one address meets its own cap first; eight (50 connections each) the replica's
        cap = PER_ADDRESS if sources == 1 else 100
        assert max(watch.fds) - base[1] <= cap + 10, watch.line(*base)
        assert after - base[1] <= 10, f"fds +{after - base[1]} once the clients stopped reading"
        assert queued < MIB, f"{queued} bytes still queued once the clients stopped reading"


async def test_a_client_reading_slowly_but_steadily_gets_its_whole_answer(serve: Serve) -> None:
    """The OpenAPI document read at 40 KB/s (8 s, four times API_WRITE_SECONDS): the client
    takes more than MIN_TAKEN each deadline, so its connection is kept to the answer's end."""
    async with _served(serve) as served:
        whole = len(await asyncio.to_thread(_document, served.port))
        got = await asyncio.to_thread(
            read_slowly, served.port, ATTACKERS[0], "/schema/openapi.json", 40_000, 30
        )
        print(f"read at 40 KB/s: {got} of {whole} bytes")
        assert got >= whole, (got, whole)


def _document(port: int) -> bytes:
    return fetch(port, "/schema/openapi.json")
