"""Lose any one NATS node and lose nothing (issue 57): a real 3-node nats-server cluster on
loopback (routes, JetStream on each node, a store each), streams made by the product's own code.

What is pinned: the controller moves an existing deployment's R1 streams to `STREAM_REPLICAS=3`
at its start with every message and consumer kept; with R3 streams, a kill -9 of the node that
leads RESULTS stops neither publishing nor consuming, every acknowledged message is delivered,
and the product's ingester stores each result published in PostgreSQL exactly once."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamInfo
from nats.js.errors import APIError

from controller.ingest.ingester import Ingester
from controller.jobs.rules import JobIds
from controller.runtime.pipeline import connect_nats, open_pipeline
from controller.settings import ControllerSettings
from shared import embedded
from shared.clock import WALL
from shared.messages import encode
from shared.streams import (
    INGEST_CONSUMER,
    ensure_jobs_consumers,
    ensure_streams,
    ingest_consumer_config,
    jobs_consumer_name,
)
from shared.subjects import EVENTS_STREAM, JOBS_STREAM, RESULTS_STREAM, results_subject
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.test_ingest import result

STREAMS = (JOBS_STREAM, RESULTS_STREAM, EVENTS_STREAM)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[list[embedded.NatsNode], str]]:
    """Three nodes, new for each test (a test kills one)."""
    nodes, url = embedded.start_nats_cluster(tmp_path / "nats")
    try:
        yield nodes, url
    finally:
        for node in nodes:
            node.kill()


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[tuple[NATS, JetStreamContext]]:
    nc = await connect_nats(url)  # the controller's own: every node's URL, reconnects forever
    try:
        yield nc, nc.jetstream(timeout=2)
    finally:
        await nc.close()


async def settled(
    js: JetStreamContext, stream: str, replicas: int, within: float = 20
) -> StreamInfo:
    """The stream's info once it has a leader and `replicas - 1` current followers."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        with contextlib.suppress(NatsError, TimeoutError):
            info = await js.stream_info(stream)
            peers = info.cluster.replicas or [] if info.cluster else []
            if (
                info.cluster
                and info.cluster.leader
                and len(peers) == replicas - 1
                and all(p.current and not p.offline for p in peers)
            ):
                return info
        assert asyncio.get_running_loop().time() < deadline, f"{stream} not R{replicas} in time"
        await asyncio.sleep(0.2)


async def consumer_replicas(
    js: JetStreamContext, stream: str, name: str, replicas: int, within: float = 20
) -> int:
    """How many servers hold the consumer: `replicas` once that many do with every follower
    current (a consumer scaled up lists its followers one at a time), else what it has when
    `within` seconds have passed."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        info = await js.consumer_info(stream, name)
        peers = (info.cluster.replicas or []) if info.cluster else []
        if 1 + len(peers) == replicas and all(p.current for p in peers):
            return replicas
        if asyncio.get_running_loop().time() > deadline:
            return 1 + len(peers)
        await asyncio.sleep(0.2)


async def test_controller_start_moves_r1_streams_to_r3_keeping_every_message(
    cluster: tuple[list[embedded.NatsNode], str],
    settings: ControllerSettings,
    pool: asyncpg.Pool,
) -> None:
    """An existing deployment (streams and consumers made at R1, messages in each, some jobs
    delivered and acked) upgrades: the controller starts with STREAM_REPLICAS=3 and every
    stream is R3 with all its messages, `jobs-CC` and `ingest` R3 with their state."""
    _, url = cluster
    async with client(url) as (_, js):
        await ensure_streams(js, replicas=1)
        await ensure_jobs_consumers(js, ["DE"])
        await js.add_consumer(RESULTS_STREAM, ingest_consumer_config())
        for i in range(50):
            await js.publish("mon.jobs.DE", b"job %d" % i, headers={"Nats-Msg-Id": f"j{i}"})
            await js.publish(f"mon.results.DE.smtp.m{i}", b"result %d" % i)
            await js.publish(f"mon.events.m{i}", b"event %d" % i)
        jobs = await js.pull_subscribe_bind(jobs_consumer_name("DE"), JOBS_STREAM)
        for msg in await jobs.fetch(10, timeout=5):
            await msg.ack_sync()
        for stream in STREAMS:
            assert (await js.stream_info(stream)).config.num_replicas == 1

    upgraded = settings.replace(nats_url=url, stream_replicas=3)
    async with open_pipeline(upgraded, pool, clock=WALL) as pipeline:
        js = pipeline.js
        for stream in STREAMS:
            info = await settled(js, stream, 3)
            assert (info.config.num_replicas, info.state.messages) == (3, 50), stream
            assert (info.state.first_seq, info.state.last_seq) == (1, 50), stream
        assert await consumer_replicas(js, JOBS_STREAM, jobs_consumer_name("DE"), 3) == 3
        assert await consumer_replicas(js, RESULTS_STREAM, INGEST_CONSUMER, 3) == 3
        jobs_de = await js.consumer_info(JOBS_STREAM, jobs_consumer_name("DE"))
        assert (jobs_de.delivered.stream_seq, jobs_de.num_pending) == (10, 40)
        ingest = await js.consumer_info(RESULTS_STREAM, INGEST_CONSUMER)
        assert ingest.num_pending == 50
        got = await js.get_msg(RESULTS_STREAM, 50)
        assert got.data == b"result 49"


async def publish_until_acked(
    js: JetStreamContext, subject: str, msg_id: str, data: bytes | None = None
) -> None:
    """As the agents do with a result: the same message id again until JetStream acks it (a
    retry after a lost ack is dropped as a duplicate). `data`: the id itself unless given."""
    while True:
        try:
            await js.publish(subject, data or msg_id.encode(), headers={"Nats-Msg-Id": msg_id})
            return
        except (NatsError, TimeoutError, APIError):
            await asyncio.sleep(0.1)


async def consume(js: JetStreamContext, seen: set[str], want: int, stop: asyncio.Event) -> None:
    """Pull from `ingest` and ack, through leader changes, until `want` distinct ids."""
    sub = None
    while len(seen) < want and not stop.is_set():
        try:
            if sub is None:
                sub = await js.pull_subscribe_bind(INGEST_CONSUMER, RESULTS_STREAM)
            for msg in await sub.fetch(100, timeout=1):
                seen.add(msg.data.decode())
                await msg.ack()
        except TimeoutError:
            continue
        except (NatsError, APIError):
            await asyncio.sleep(0.2)


async def test_killing_the_stream_leader_loses_no_message(
    cluster: tuple[list[embedded.NatsNode], str],
) -> None:
    """R3 streams made by `ensure_streams`; results published and consumed all along; the
    node leading RESULTS is killed (SIGKILL) a third of the way in. A new leader takes over,
    publishing and consuming go on, and every result published is consumed."""
    nodes, url = cluster
    total, kill_at = 600, 200
    async with client(url) as (_, js):
        await ensure_streams(js, replicas=3)
        # A message on its way to the consumer when its server died comes again after the
        # ack wait (the ingester's: 30 s); shorter here, for the test's minute.
        await js.add_consumer(RESULTS_STREAM, replace(ingest_consumer_config(), ack_wait=5))
        placed = (await settled(js, RESULTS_STREAM, 3)).cluster
        assert placed is not None
        leader = placed.leader
        seen: set[str] = set()
        stop = asyncio.Event()
        consumer = asyncio.create_task(consume(js, seen, total, stop))
        try:
            for i in range(total):
                if i == kill_at:
                    next(n for n in nodes if n.name == leader).kill()
                await publish_until_acked(js, f"mon.results.DE.smtp.m{i % 7}", f"r{i}")
            # A new leader within seconds, then the ack wait at most: every result comes in
            # (how soon is the HA campaign's figure, `make soak`).
            async with asyncio.timeout(30):
                await consumer
        finally:
            stop.set()
            await consumer
        info = await js.stream_info(RESULTS_STREAM)
        assert info.cluster is not None and info.cluster.leader not in (None, leader)
        assert info.state.messages == total
        assert seen == {f"r{i}" for i in range(total)}


async def stored_per_job(pool: asyncpg.Pool, public_id: str) -> dict[str, int]:
    """How many rows `check_results` holds of each job of the monitor."""
    rows = await pool.fetch(
        "SELECT job_id, count(*) AS n FROM check_results"
        " WHERE monitor_public_id = $1::uuid GROUP BY job_id",
        public_id,
    )
    return {r["job_id"]: int(r["n"]) for r in rows}


async def test_the_ingester_stores_each_result_once_through_a_stream_leader_kill(
    cluster: tuple[list[embedded.NatsNode], str],
    pool: asyncpg.Pool,
    http: httpx.AsyncClient,
    tenant: Tenant,
    job_ids: JobIds,
) -> None:
    """The product's ingester on the cluster's R3 RESULTS: results published as the agents
    publish them (their job id as the message id, again until acked), the node leading
    RESULTS killed (SIGKILL) a third of the way in. Once the ingest consumer has nothing
    pending or unacked, `check_results` holds exactly one row of every result published."""
    nodes, url = cluster
    total, kill_at = 150, 50
    monitor = await create(http, tenant)
    start = utcnow()
    sent = [result(job_ids, monitor, "DE", at=start + timedelta(seconds=i)) for i in range(total)]
    async with client(url) as (nc, js):
        await ensure_streams(js, replicas=3)
        placed = (await settled(js, RESULTS_STREAM, 3)).cluster
        assert placed is not None
        leader = placed.leader
        # A message on its way to the ingester when its server died comes again after the ack
        # wait; shorter than the product's, for the test's seconds.
        ingester = Ingester(pool, nc, js, job_ids, durable="ingest-ha", ack_wait_s=5, clock=WALL)
        stop = asyncio.Event()
        run = asyncio.create_task(ingester.run(stop))
        try:
            for i, res in enumerate(sent):
                if i == kill_at:
                    next(n for n in nodes if n.name == leader).kill()
                subject = results_subject(res.country, res.monitor_type, res.monitor_id)
                await publish_until_acked(js, subject, res.job_id, encode(res))
            # Every result stored and nothing left that could be stored again, or 30 s (a
            # new leader within seconds, then the ack wait at most): the rows are judged then.
            deadline = asyncio.get_running_loop().time() + 30
            while asyncio.get_running_loop().time() < deadline:
                with contextlib.suppress(NatsError, TimeoutError):
                    info = await js.consumer_info(RESULTS_STREAM, ingester.durable)
                    if (info.num_pending, info.num_ack_pending) == (0, 0) and len(
                        await stored_per_job(pool, monitor["publicId"])
                    ) == total:
                        break
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await asyncio.wait_for(run, 10)
            await ingester.close()
        info = await js.stream_info(RESULTS_STREAM)
        assert info.cluster is not None and info.cluster.leader not in (None, leader)
    assert await stored_per_job(pool, monitor["publicId"]) == {r.job_id: 1 for r in sent}


def test_a_port_another_process_listens_on_is_not_taken_for_the_servers(tmp_path: Path) -> None:
    """A server is ready when its own log says it listens, not when its port answers: another
    process listening on the port it was given answers too, until this one exits."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(embedded.PortTaken):
            embedded.start_nats(tmp_path / "nats", other.getsockname()[1])


def test_a_node_given_a_taken_port_starts_again_on_free_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port `free_port` found free that another process binds first (a test worker's server)
    makes the node exit at start (`PortTaken`): a port given is not drawn again, and a
    cluster's ports are drawn anew, on fresh stores."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        with pytest.raises(embedded.PortTaken):
            embedded.start_nats(tmp_path / "alone", taken)
        drawn = iter([taken])
        free = embedded.free_port
        monkeypatch.setattr(embedded, "free_port", lambda host="127.0.0.1": next(drawn, free(host)))
        nodes, url = embedded.start_nats_cluster(tmp_path / "nats")
    try:
        assert taken not in {n.port for n in nodes} and len(url.split(",")) == 3, url
    finally:
        for node in nodes:
            node.kill()
