"""The worker across a NATS outage, on a nats-server of its own that the test kills and
restarts, with a real loopback peer: the concurrency cap holds however the jobs arrive."""

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from agent.probers.tls import SslContexts
from shared import embedded
from shared.messages import CheckResult
from shared.streams import ensure_streams
from tests.agent.faults import LimitedSmtpPeer, Link
from tests.agent.helpers import (
    job_for,
    publish_job,
    result_count,
    results,
    until,
    until_async,
    worker,
)

pytestmark = pytest.mark.breadth

CONCURRENCY = 10
JOBS = 150


class OwnNats:
    """A nats-server for one test, killed and restarted on the same port and store."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.proc, self.url = embedded.start_nats(store)
        self.port = int(self.url.rpartition(":")[2])

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        self.proc, _ = embedded.start_nats(self.store, self.port)


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[OwnNats]:
    server = OwnNats(tmp_path / "nats")
    yield server
    embedded.stop(server.proc)


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[NATS]:
    conn = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        yield conn
    finally:
        await conn.close()


@dataclass
class Run:
    results: list[CheckResult]
    in_flight: list[int]  # the worker's, sampled every few milliseconds
    waiting: list[int]
    peer: LimitedSmtpPeer


async def through_an_outage(
    own_nats: OwnNats, country: str, ssl_contexts: SslContexts, *, life: float
) -> Run:
    """JOBS jobs living `life` seconds fill JOBS while the agent is cut off and its server is
    killed and restarted; the agent gets back 3 s later and runs them all against a peer that
    serves CONCURRENCY sessions at a time, like Postfix."""
    async with (
        connected(own_nats.url) as admin,
        Link(own_nats.port) as link,
        LimitedSmtpPeer(slots=CONCURRENCY, hold=0.3) as peer,
    ):
        await ensure_streams(admin.jetstream())
        async with connected(link.url) as agent_nc:
            w = worker(agent_nc, country, ssl_contexts, concurrency=CONCURRENCY)
            run = asyncio.create_task(w.run())
            await until(lambda: w.readiness() is None)

            link.cut()
            own_nats.kill()
            await until(lambda: not agent_nc.is_connected)
            own_nats.restart()
            async with connected(own_nats.url) as publisher:
                js = publisher.jetstream()
                for _ in range(JOBS):
                    job = job_for(country, peer.port, expires_in=life)
                    await publish_job(js, job)
                await asyncio.sleep(3)  # the agent, still cut off, keeps trying to fetch
                await link.restore()

                in_flight: list[int] = []
                waiting: list[int] = []

                async def sample() -> None:
                    while True:
                        in_flight.append(w.in_flight)
                        waiting.append(w.waiting)
                        await asyncio.sleep(0.005)

                sampler = asyncio.create_task(sample())
                await until_async(lambda: result_count(js, country, JOBS), within=60)
                sampler.cancel()
                w.stop()
                await asyncio.wait_for(run, 10)
                found = await results(js, country)
    assert len({r.job_id for r in found}) == JOBS
    return Run(found, in_flight, waiting, peer)


async def test_after_a_nats_kill_the_backlog_never_runs_more_checks_than_the_concurrency(
    own_nats: OwnNats, country: str, ssl_contexts: SslContexts
) -> None:
    """The fetches the agent tried while cut off must not become checks beyond its cap when it
    gets back, and the healthy peer never gets a `down` from connections queued behind the
    agent's own overload."""
    run = await through_an_outage(own_nats, country, ssl_contexts, life=60)

    assert run.peer.max_open <= CONCURRENCY
    assert max(run.in_flight) == CONCURRENCY
    # Nor did they pile up as jobs held here, out of other agents' reach: the agent holds at
    # most capacity + lookahead (CONCURRENCY each), however many a fetch brought.
    assert max(f + w for f, w in zip(run.in_flight, run.waiting, strict=True)) <= 2 * CONCURRENCY
    assert max(run.waiting) <= CONCURRENCY
    assert {(r.status, r.error_kind) for r in run.results} == {("up", None)}


async def test_a_job_whose_life_ends_before_its_turn_ends_expired_never_down(
    own_nats: OwnNats, country: str, ssl_contexts: SslContexts
) -> None:
    """More work than the cap gets through in the jobs' life: those whose turn comes too late
    are not started (no connection to the peer) and end `expired` (missed), never `timeout`."""
    run = await through_an_outage(own_nats, country, ssl_contexts, life=5.5)

    kinds = Counter(r.error_kind for r in run.results if r.status == "down")
    assert set(kinds) == {"expired"}
    assert max(run.in_flight) <= CONCURRENCY
    up = sum(r.status == "up" for r in run.results)
    assert run.peer.connections == up
