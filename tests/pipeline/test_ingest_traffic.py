"""What the ingester costs the NATS server in messages, counted by the server itself (/varz).

Each result is its delivery to the ingester and the ack (or term) after it; the ingester's
pull requests (one standing request per lane, shared.pulling) must add next to nothing,
whether results trickle in or none come at all.
"""

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from controller.ingest.ingester import LANES, Ingester
from controller.jobs.rules import JobIds
from shared import embedded
from shared.clock import WALL
from shared.streams import ensure_streams
from shared.subjects import RESULTS_STREAM

RESULTS = 30


class Server:
    def __init__(self, url: str, monitor_port: int) -> None:
        self.url = url
        self._monitor = f"http://127.0.0.1:{monitor_port}"

    async def get(self, path: str) -> dict[str, object]:
        return await asyncio.to_thread(_get, f"{self._monitor}{path}")

    async def msgs(self) -> tuple[int, int]:
        """(messages in from clients, messages out to them) so far."""
        varz = await self.get("/varz")
        return int(str(varz["in_msgs"])), int(str(varz["out_msgs"]))


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        found: dict[str, object] = json.load(resp)
        return found


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    monitor_port = embedded.free_port()
    proc, url = embedded.start_nats(tmp_path / "nats", monitor_port=monitor_port)
    try:
        yield Server(url, monitor_port)
    finally:
        embedded.stop(proc)


async def test_the_ingesters_pull_requests_cost_next_to_nothing_idle_or_busy(
    server: Server, pipe_pool: asyncpg.Pool, job_ids: JobIds
) -> None:
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await ensure_streams(js)
    ingester = _Counting(pipe_pool, nc, js, job_ids, clock=WALL)
    stop = asyncio.Event()
    running = asyncio.create_task(ingester.run(stop))
    try:
        # the consumer made, each lane's request sent
        deadline = asyncio.get_running_loop().time() + 10
        while await _waiting(js, ingester.durable) < LANES:
            assert asyncio.get_running_loop().time() < deadline, "the lanes' requests"
            await asyncio.sleep(0.05)
        before = await server.msgs()
        await asyncio.sleep(4)
        idle = await server.msgs()
        # Idle: each lane's standing request, at most renewed once; a request per 0.5 s fetch
        # and its 408 were 3 x 8 each way.
        assert idle[0] - before[0] <= LANES and idle[1] - before[1] <= LANES, (before, idle)

        for n in range(RESULTS):  # a trickle; not results at all: each is termed
            await js.publish("mon.results.zz.smtp.x", b"{}", headers={"Nats-Msg-Id": str(n)})
            await asyncio.sleep(0.05)
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            jsz = await server.get("/jsz?accounts=true&consumers=true")
            if _settled(jsz) >= RESULTS:
                break
            assert asyncio.get_running_loop().time() < deadline, jsz
            await asyncio.sleep(0.2)
        busy = await server.msgs()
    finally:
        stop.set()
        await running
        await ingester.close()
        await nc.close()
    # Per result in: its publish and its term; out: its PubAck and its delivery; beside them
    # per batch two requests in (the standing one for its first result, the `no_wait` one
    # gathering the rest) and at most one status out (a request per fetch and per top-up,
    # with their statuses, were ~1-2 each way per result in such a trickle). What comes
    # within a batch's linger is gathered into it: fewer batches than results.
    batches = ingester.batches
    assert 0 < batches < RESULTS
    spent_in, spent_out = busy[0] - idle[0], busy[1] - idle[1]
    assert spent_in <= 2 * RESULTS + 2 * batches + LANES, (spent_in, spent_out, batches)
    assert spent_out <= 2 * RESULTS + batches + LANES, (spent_in, spent_out, batches)


class _Counting(Ingester):
    """The ingester, counting the batches it handles."""

    batches = 0

    async def handle(self, msgs: list[Msg]) -> int:
        self.batches += 1
        return await super().handle(msgs)


async def _waiting(js: JetStreamContext, durable: str) -> int:
    """The pull requests open on the consumer (0 before it is made)."""
    try:
        return (await js.consumer_info(RESULTS_STREAM, durable)).num_waiting or 0
    except NotFoundError:
        return 0


def _settled(jsz: dict[str, object]) -> int:
    """The `ingest` consumer's ack floor (every result settled up to it), from /jsz."""
    for account in jsz.get("account_details", []):  # type: ignore[attr-defined]
        for stream in account.get("stream_detail", []):
            if stream["name"] != RESULTS_STREAM:
                continue
            for consumer in stream.get("consumer_detail", []):
                if consumer["name"] == "ingest":
                    return int(consumer["ack_floor"]["stream_seq"])
    return 0
