"""What an agent costs the NATS server in messages, counted by the server itself (/varz).

A check is three messages from the agent's side (its job delivered, the job's ack, its result
published, with the result's PubAck back): the pull requests that bring the jobs must add next
to nothing, whether jobs trickle in or none come at all (shared.pulling).
"""

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from agent.probers.tls import SslContexts
from shared import embedded
from shared.streams import ensure_jobs_consumers, ensure_streams
from tests.agent.helpers import SmtpLikePeer, job_for, publish_job, result_count, worker
from tests.countries import AGENT, handout

_COUNTRY = next(handout(AGENT))
JOBS = 40


class Server:
    def __init__(self, url: str, monitor_port: int) -> None:
        self.url = url
        self._varz = f"http://127.0.0.1:{monitor_port}/varz"

    async def msgs(self) -> tuple[int, int]:
        """(messages in from clients, messages out to them) so far."""
        body = await asyncio.to_thread(_get, self._varz)
        return int(body["in_msgs"]), int(body["out_msgs"])


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


async def test_an_agents_pull_requests_cost_next_to_nothing_idle_or_busy(
    server: Server, ssl_contexts: SslContexts
) -> None:
    nc: NATS = await nats.connect(server.url)
    js = nc.jetstream()
    await ensure_streams(js)
    await ensure_jobs_consumers(js, [_COUNTRY])
    w = worker(nc, _COUNTRY, ssl_contexts, fetch_timeout=1.0)
    running = asyncio.create_task(w.run())
    try:
        async with SmtpLikePeer() as peer:
            await asyncio.sleep(1)  # bound and pulling
            before = await server.msgs()
            await asyncio.sleep(4)
            idle = await server.msgs()
            # Idle: the standing request, at most renewed once; a request per fetch (1 s) and
            # its 408 were 4+4.
            assert idle[0] - before[0] <= 1 and idle[1] - before[1] <= 1, (before, idle)

            for _ in range(JOBS):  # a trickle: each job comes alone
                await publish_job(js, job_for(_COUNTRY, peer.port))
                await asyncio.sleep(0.05)
            deadline = asyncio.get_running_loop().time() + 20
            while peer.connections < JOBS or w.in_flight or w.waiting:  # no NATS traffic
                assert asyncio.get_running_loop().time() < deadline, "checks missing"
                await asyncio.sleep(0.05)
            await nc.flush()
            busy = await server.msgs()
            assert await result_count(js, _COUNTRY, JOBS)
    finally:
        w.stop()
        await running
        await nc.close()
    # Per check in: the job's publish, its ack, the result's publish; out: the job's PubAck,
    # its delivery, the result's PubAck; beside them a few requests in all (a request per
    # fetch was ~1 in and ~1 out per check in such a trickle).
    spent_in, spent_out = busy[0] - idle[0], busy[1] - idle[1]
    assert spent_in <= 3 * JOBS + 3, (spent_in, spent_out)
    assert spent_out <= 3 * JOBS + 3, (spent_in, spent_out)
