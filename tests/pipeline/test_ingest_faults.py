"""The ingester under a NATS fault: a nats-server of its own, killed with SIGKILL and started
again on the same port and store while the ingester runs, as in the fault campaign."""

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from controller.ingest.ingester import LANES, Ingester
from controller.jobs.rules import JobIds
from controller.runtime.pipeline import connect_nats
from shared import embedded
from shared.streams import ensure_streams
from shared.subjects import RESULTS_STREAM
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries
from tests.pipeline.test_ingest import publish, result


class Server:
    """A nats-server on a fixed port and store directory that can be killed and restarted."""

    def __init__(self, store: Path) -> None:
        self.store, self.port = store, embedded.free_port()
        self.proc, self.url = embedded.start_nats(store, self.port)

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no flush, no goodbye to the clients
        self.proc.wait()

    def restart(self) -> None:
        self.proc, _ = embedded.start_nats(self.store, self.port)


RETRYING = "fetching results failed; retrying"


async def _lanes_pulling(js: JetStreamContext, durable: str) -> bool:
    """Whether each of the ingester's lanes has a pull request waiting at the server."""
    with contextlib.suppress(NatsError):
        info = await js.consumer_info(RESULTS_STREAM, durable)
        return (info.num_waiting or 0) >= LANES
    return False


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    s = Server(tmp_path / "nats")
    yield s
    embedded.stop(s.proc)


async def stored_at(pool: asyncpg.Pool, job_ids: list[str]) -> dict[str, float]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT job_id, extract(epoch FROM stored_at) AS at FROM check_results"
            " WHERE job_id = ANY($1::text[])",
            job_ids,
        )
    return {r["job_id"]: float(r["at"]) for r in rows}


async def until_stored(pool: asyncpg.Pool, job_ids: list[str], within_s: float) -> dict[str, float]:
    deadline = time.monotonic() + within_s
    while len(found := await stored_at(pool, job_ids)) < len(job_ids):
        assert time.monotonic() < deadline, f"{len(job_ids) - len(found)} results not stored"
        await asyncio.sleep(0.05)
    return found


async def test_ingest_stays_prompt_after_a_nats_kill_9_and_no_lane_dies(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    job_ids: JobIds,
    server: Server,
) -> None:
    """Killed with SIGKILL under a running ingester, until its connection has seen it go: once
    the server is back every lane pulls again (none died), results published after the
    restart are each stored, the consumer has no more pull requests waiting than the
    ingester's lanes (none left over from the outage), and no lane failed for any other
    reason than the server being gone. How fast they are stored is bench/'s (`make bench
    ingest`); the median is printed."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    nc: NATS = await connect_nats(server.url)
    js = nc.jetstream()
    await ensure_streams(js)
    ingester = Ingester(pipe_pool, nc, js, job_ids, durable=f"ingest-kill-{uuid.uuid4().hex[:6]}")
    stop = asyncio.Event()
    with capture_logs() as logs:
        run = asyncio.create_task(ingester.run(stop))
        try:
            before = [result(job_ids, monitor, cc, at=utcnow()) for _ in range(1)]
            for res in before:
                await publish(js, res)
            await until_stored(pipe_pool, [r.job_id for r in before], 10)

            server.kill()
            async with asyncio.timeout(20):  # the ingester's connection has seen it go
                while nc.is_connected:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            server.restart()
            async with asyncio.timeout(20):  # JetStream back, every lane pulling again
                while not (nc.is_connected and await _lanes_pulling(js, ingester.durable)):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

            delays = []
            for i in range(100):
                res = result(job_ids, monitor, cc, at=utcnow())
                sent = time.time()
                await publish(js, res)
                (at,) = (await until_stored(pipe_pool, [res.job_id], 10)).values()
                delays.append(at - sent)
                if i == 50:
                    info = await js.consumer_info(RESULTS_STREAM, ingester.durable)
                    assert (info.num_waiting or 0) <= LANES
            print(f"stored after the restart: median {statistics.median(delays):.3f} s")
        finally:
            stop.set()
            await asyncio.wait_for(run, 10)
            await ingester.close()
            await nc.close()
    errors = [e for e in logs if e["event"] == RETRYING]
    assert not [e for e in errors if "AttributeError" in e.get("error", "")], errors
