"""A deployment on a single hub moves to the 3-node cluster with every message and consumer
position kept (issue 57): a real standalone nats-server with the product's R1 streams, jobs and
results in them, some delivered and acked; `python -m controller streams-move` copies them onto
a real 3-node cluster at STREAM_REPLICAS=3.

What is pinned: the same messages under the same sequence numbers with the same content and
timestamps; `jobs-CC` and `ingest` deliver on from where they were on the old server (the
ingester is not handed a result it had acked, an agent no job it had acked); a controller
started on the cluster afterwards changes nothing; a source still taking writes fails the move
with its copy removed; a target stream holding messages is refused."""

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from controller.runtime import stream_snapshots
from controller.runtime.stream_snapshots import (
    StreamMoveError,
    consumer_states,
    move_streams,
    stream_info,
)
from shared import embedded
from shared.streams import (
    INGEST_CONSUMER,
    ensure_jobs_consumers,
    ensure_streams,
    ingest_consumer_config,
    jobs_consumer_name,
)
from shared.subjects import EVENTS_STREAM, JOBS_STREAM, RESULTS_STREAM
from tests.ha.test_nats_cluster import consumer_replicas, settled

pytestmark = pytest.mark.breadth

N = 200
PAUSE_S = 30.0  # at most: the followers elect a new meta leader after 4-9 s
STREAMS = (JOBS_STREAM, RESULTS_STREAM, EVENTS_STREAM)


@pytest.fixture
def single(tmp_path: Path) -> Iterator[str]:
    """The old hub: one nats-server with JetStream, no cluster."""
    proc, url = embedded.start_nats(tmp_path / "single")
    try:
        yield url
    finally:
        embedded.stop(proc)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[str]:
    nodes, url = embedded.start_nats_cluster(tmp_path / "cluster")
    try:
        yield url
    finally:
        for node in nodes:
            node.kill()


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[tuple[NATS, JetStreamContext]]:
    nc = NATS()
    await nc.connect(
        servers=url.split(","),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # nats-py: seconds, a float works
    )
    try:
        yield nc, nc.jetstream(timeout=5)
    finally:
        await nc.close()


async def old_deployment(js: JetStreamContext) -> None:
    """R1 streams and consumers as a controller made them; N jobs (DE), results and events;
    an agent took and acked 30 jobs and holds 5 unacked, the ingester stored and acked 120
    results."""
    await ensure_streams(js, replicas=1)
    await ensure_jobs_consumers(js, ["DE", "FR"])
    await js.add_consumer(RESULTS_STREAM, ingest_consumer_config())
    for i in range(N):
        await js.publish("mon.jobs.DE", b"job %d" % i, headers={"Nats-Msg-Id": f"j{i}"})
        await js.publish(f"mon.results.DE.smtp.m{i}", b"result %d" % i)
        await js.publish(f"mon.events.m{i}", b"event %d" % i)
    jobs = await js.pull_subscribe_bind(jobs_consumer_name("DE"), JOBS_STREAM)
    for msg in await jobs.fetch(30, timeout=5):
        await msg.ack_sync()
    await jobs.fetch(5, timeout=5)  # taken, never acked: redelivered after the ack wait
    ingest = await js.pull_subscribe_bind(INGEST_CONSUMER, RESULTS_STREAM)
    for msg in await ingest.fetch(120, timeout=5):
        await msg.ack_sync()


async def contents(js: JetStreamContext, stream: str) -> list[tuple[int, str, bytes, str]]:
    """Every message: sequence, subject, data and time stored."""
    out = []
    for seq in range(1, N + 1):
        msg = await js.get_msg(stream, seq)
        out.append((msg.seq or 0, msg.subject or "", msg.data or b"", str(msg.headers)))
    return out


async def first_stored(nc: NATS, stream: str) -> str:
    info = await stream_info(nc, stream)
    assert info is not None
    return info.state.first_ts


async def test_move_from_a_single_hub_to_the_cluster_keeps_messages_and_positions(
    single: str, cluster: str
) -> None:
    async with connected(single) as (source, old):
        await old_deployment(old)
        before = {s: await contents(old, s) for s in STREAMS}
        times = {s: await first_stored(source, s) for s in STREAMS}

    # The controllers were stopped; the operator runs the move with the new settings.
    move = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "controller", "streams-move", "--from", single),
        # The controller's own environment (its DATABASE_URL is not used by the move).
        env=embedded.env_with(
            NATS_URL=cluster, STREAM_REPLICAS="3", DATABASE_URL="postgresql://u@127.0.0.1/db"
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(move.communicate(), 60)
    assert move.returncode == 0, err.decode()
    assert out.decode().splitlines() == [
        f"JOBS: {N} messages (sequences 1-{N}), consumers jobs-DE, jobs-FR, on 3 servers",
        f"RESULTS: {N} messages (sequences 1-{N}), consumers ingest, on 3 servers",
        f"EVENTS: {N} messages (sequences 1-{N}), consumers none, on 3 servers",
        "ARRIVALS: 0 messages (sequences 0-0), consumers none, on 3 servers",
        "KV_RECEIVERS: 0 messages (sequences 0-0), consumers none, on 3 servers",
    ]

    async with connected(cluster) as (target, js):
        for stream in STREAMS:
            info = await settled(js, stream, 3)
            assert (info.config.num_replicas, info.state.messages) == (3, N), stream
            assert (info.state.first_seq, info.state.last_seq) == (1, N), stream
            assert await first_stored(target, stream) == times[stream]  # JOBS ages out on time
            assert await contents(js, stream) == before[stream], stream
        assert {c.name for c in await js.consumers_info(JOBS_STREAM)} == {"jobs-DE", "jobs-FR"}
        jobs_de = await js.consumer_info(JOBS_STREAM, jobs_consumer_name("DE"))
        assert (jobs_de.delivered.stream_seq, jobs_de.ack_floor.stream_seq) == (35, 30)
        assert jobs_de.num_pending == N - 35
        ingest = await js.consumer_info(RESULTS_STREAM, INGEST_CONSUMER)
        assert (ingest.ack_floor.stream_seq, ingest.num_pending) == (120, N - 120)
        assert await consumer_replicas(js, JOBS_STREAM, jobs_consumer_name("DE"), 3) == 3
        assert await consumer_replicas(js, RESULTS_STREAM, INGEST_CONSUMER, 3) == 3

        # The ingester goes on with the first result it never had; an agent with job 35, the
        # first job never delivered. The 5 held unacked come again once their ack wait
        # (JOBS_ACK_WAIT_S from when they were taken) has passed: before it, if it has by now.
        sub = await js.pull_subscribe_bind(INGEST_CONSUMER, RESULTS_STREAM)
        got = await sub.fetch(5, timeout=10)
        assert [m.data for m in got] == [b"result %d" % i for i in range(120, 125)]
        agent = await js.pull_subscribe_bind(jobs_consumer_name("DE"), JOBS_STREAM)
        taken: list[bytes] = []
        while b"job 35" not in taken:
            assert len(taken) < 6, taken
            taken += [m.data or b"" for m in await agent.fetch(1, timeout=10)]
        assert set(taken[:-1]) <= {b"job %d" % i for i in range(30, 35)}, taken

        # A controller started on the cluster finds everything in place.
        await ensure_streams(js, replicas=3)
        assert await ensure_jobs_consumers(js, ["DE", "FR"]) == 0
        assert (await js.stream_info(RESULTS_STREAM)).state.messages == N


async def test_a_source_still_written_fails_the_move_and_leaves_no_copy(
    single: str, cluster: str, tmp_path: Path
) -> None:
    """A publisher still on the old hub: the move stops at the stream it changed, removes that
    copy, and says to stop the writers."""
    async with connected(single) as (source, old), connected(cluster) as (target, js):
        await old_deployment(old)
        writing = True

        async def writer() -> None:
            i = 0
            while writing:
                await old.publish("mon.jobs.DE", b"late %d" % i)
                i += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(writer())
        try:
            with pytest.raises(StreamMoveError, match="changed during the move"):
                await move_streams(source, target, 3, [JOBS_STREAM], tmp_path / "w")
        finally:
            writing = False
            await task
        assert JOBS_STREAM not in {s.config.name for s in await js.streams_info()}


async def test_a_target_stream_with_messages_is_refused(
    single: str, cluster: str, tmp_path: Path
) -> None:
    async with connected(single) as (source, old), connected(cluster) as (target, js):
        await old_deployment(old)
        await ensure_streams(js, replicas=3)  # a controller started on the cluster first
        await js.publish("mon.results.DE.smtp.x", b"new")
        with pytest.raises(StreamMoveError, match="already has stream RESULTS with 1 messages"):
            await move_streams(source, target, 3, [RESULTS_STREAM], tmp_path / "w")
        # An empty one (JOBS, made by that controller) is replaced by the old hub's.
        moved = await move_streams(source, target, 3, [JOBS_STREAM], tmp_path / "w")
        assert [(m.stream, m.messages, m.replicas) for m in moved] == [(JOBS_STREAM, N, 3)]
        assert not os.listdir(tmp_path / "w")  # no snapshot left behind


async def test_a_server_out_of_reach_is_one_line_and_exit_1() -> None:
    """An old hub's URL that answers nothing: the command says so in one line, at once."""
    move = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "controller", "streams-move", "--from", f"nats://127.0.0.1:{embedded.free_port()}"),
        env=embedded.env_with(
            NATS_URL=f"nats://127.0.0.1:{embedded.free_port()}",
            DATABASE_URL="postgresql://u@127.0.0.1/db",
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(move.communicate(), 20)
    assert move.returncode == 1
    assert err.decode().splitlines() == [
        "error: NATS: NoServersError: nats: no servers available for connection"
    ]


def meta_leader(nodes: list[embedded.NatsNode]) -> embedded.NatsNode:
    """The node that leads the cluster's meta group (JetStream's API), by any node's /jsz."""
    for node in nodes:
        with contextlib.suppress(OSError, ValueError, KeyError):
            leader = _named_leader(node)
            return next(n for n in nodes if n.name == leader)
    raise AssertionError("no node names a meta leader")


def _named_leader(node: embedded.NatsNode) -> str:
    """The meta leader `node`'s /jsz names ("" while there is none)."""
    url = f"http://127.0.0.1:{node.monitor_port}/jsz"
    with urllib.request.urlopen(url, timeout=2) as answer:
        return str(json.load(answer)["meta_cluster"].get("leader") or "")


async def _resumed_once_replaced(
    leader: embedded.NatsNode, others: list[embedded.NatsNode]
) -> None:
    """SIGCONT to the stopped `leader` once another node names a new meta leader (the election
    happened while it was away), PAUSE_S at the most."""
    assert leader.proc is not None
    deadline = time.monotonic() + PAUSE_S
    try:
        while time.monotonic() < deadline:
            for node in others:
                with contextlib.suppress(OSError, ValueError, KeyError):
                    named = await asyncio.to_thread(_named_leader, node)
                    if named not in ("", leader.name):
                        return
            await asyncio.sleep(0.2)
    finally:
        leader.proc.send_signal(signal.SIGCONT)


async def test_a_cluster_electing_a_new_leader_during_the_move_gets_every_stream(
    single: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loaded machine starves a node for seconds, and the cluster elects another leader:
    meanwhile JetStream's API answers `temporarily unavailable` (503, err_code 10008) or not at
    all. The move waits for the new leader instead of failing. Here the meta leader is stopped
    (SIGSTOP) as the move starts and resumed once the other nodes have elected a new one, with
    the mover connected to another node. A request unanswered is sent again after 1 s
    (RESEND_S), not 5 s, so the move goes on soon after the election."""
    monkeypatch.setattr(stream_snapshots, "RESEND_S", 1.0)
    nodes, _ = embedded.start_nats_cluster(tmp_path / "cluster")
    try:
        async with connected(single) as (source, old):
            await old_deployment(old)
            before = {s: await contents(old, s) for s in STREAMS}
        leader = meta_leader(nodes)
        other = next(n for n in nodes if n is not leader)
        assert leader.proc is not None
        async with connected(single) as (source, _), connected(other.url) as (target, js):
            leader.proc.send_signal(signal.SIGSTOP)
            others = [n for n in nodes if n is not leader]
            resume = asyncio.create_task(_resumed_once_replaced(leader, others))
            try:
                moved = await move_streams(source, target, 3, STREAMS, tmp_path / "w")
            finally:
                await resume
            assert [(m.stream, m.messages, m.replicas) for m in moved] == [
                (s, N, 3) for s in STREAMS
            ]
            for stream in STREAMS:
                await settled(js, stream, 3, within=60)
                assert await contents(js, stream) == before[stream], stream
    finally:
        for node in nodes:
            node.kill()


async def test_a_listing_answered_after_its_resend_is_still_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster answers a consumer listing once each consumer's own server has answered, or
    after 4 s without the ones that are silent (a node starved on a loaded host). A read is sent
    again when unanswered within RESEND_S: an answer to an earlier send still counts, so
    a read whose answer always takes longer than RESEND_S is answered all the same. Here
    RESEND_S is 1 s and a node holding some consumers is stopped (SIGSTOP)."""
    monkeypatch.setattr(stream_snapshots, "RESEND_S", 1.0)
    monkeypatch.setattr(stream_snapshots, "LEADER_WAIT_S", 15.0)
    nodes, _ = embedded.start_nats_cluster(tmp_path / "cluster")
    try:
        leader = meta_leader(nodes)
        async with connected(leader.url) as (nc, js):
            await js.add_stream(name="T", subjects=["t.>"], num_replicas=3)
            await settled(js, "T", 3)
            names = [f"c{i}" for i in range(8)]
            for name in names:
                await js.add_consumer("T", ConsumerConfig(durable_name=name, num_replicas=1))
            hosts = {}
            for name in names:
                info = await js.consumer_info("T", name)
                assert info.cluster is not None
                hosts[name] = info.cluster.leader
            quiet = next(n for n in nodes if n is not leader and n.name in hosts.values())
            assert quiet.proc is not None
            quiet.proc.send_signal(signal.SIGSTOP)
            try:
                states = await consumer_states(nc, "T")
            finally:
                quiet.proc.send_signal(signal.SIGCONT)
        # Every consumer of a node that runs is listed; the stopped node's are not waited for
        # (under load one of them was once listed too; why is not known).
        answered = {name for name, host in hosts.items() if host != quiet.name}
        assert answered <= set(states) <= set(names), (states, hosts, quiet.name)
    finally:
        for node in nodes:
            node.kill()
