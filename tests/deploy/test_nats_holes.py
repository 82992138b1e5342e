"""Holes an audit found in the deployed NATS setup, each pinned against real nats-servers.

The hub runs deploy/nats/hub.conf and a regional leaf deploy/nats/leaf.conf, both with an
agents.conf rendered by deploy/nats_conf.py (the leaf logs in with a `leaf-eu` user carrying DE
only). Agents behind the leaf run their country's jobs as if on the hub, and nothing else; no
agent can wipe the `agents` bucket or create or change a consumer (the controller makes them);
RESULTS and EVENTS are capped in size.
"""

import asyncio
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, KeyValueConfig
from nats.js.errors import (
    APIError,
    NoStreamResponseError,
    NotFoundError,
    ServiceUnavailableError,
)
from structlog.testing import capture_logs

from agent.heartbeat import Heartbeat, heartbeat_key
from agent.probers.tls import build_ssl_contexts
from controller.api.validation import COUNTRIES
from controller.pipeline import open_pipeline
from deploy.nats_conf import (
    CONTROLLER_USER,
    SUBSCRIBER_USER,
    StoredUser,
    agent_inbox_prefix,
    agent_user,
    hash_password,
    new_password,
    render_users_conf,
)
from shared import embedded
from shared.settings import ControllerSettings
from shared.streams import (
    JOBS_ACK_WAIT_S,
    MIB,
    agents_bucket,
    ensure_jobs_consumers,
    ensure_streams,
    jobs_consumer_name,
)
from shared.subjects import (
    AGENTS_BUCKET,
    EVENTS_STREAM,
    JOBS_STREAM,
    RESULTS_STREAM,
    jobs_subject,
    results_subject,
)
from shared.timefmt import utcnow
from tests.agent.helpers import SmtpLikePeer, job_for, publish_job, results, worker
from tests.deploy.test_nats_permissions import DENIED_WAIT_S, Client, Hub, connect

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "nats"
LEAF_USER = "leaf-eu"
# A request the hub does not let through from a leaf: no answer, or no responder at all.
NOT_THROUGH = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
)


@dataclass
class Topology:
    hub: Hub
    leaf: Hub  # the same users, logging in at the leaf


def _hub_conf(folder: Path, leaf_port: int) -> Path:
    """hub.conf with free monitoring and leaf ports and no fixed store folder."""
    conf = (DEPLOY / "hub.conf").read_text()
    for fixed in ("http_port: 8222", "listen: 0.0.0.0:7422", "store_dir: /data/jetstream\n"):
        assert fixed in conf, f"hub.conf changed: update this test ({fixed!r} not found)"
    conf = conf.replace("store_dir: /data/jetstream\n", "")
    conf = conf.replace("http_port: 8222", f"http_port: {embedded.free_port()}")
    conf = conf.replace("listen: 0.0.0.0:7422", f"listen: 127.0.0.1:{leaf_port}")
    (folder / "hub.conf").write_text(conf)
    return folder / "hub.conf"


def _start_leaf(folder: Path, hub_leaf_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """leaf.conf as shipped but for its ports, with the environment it documents."""
    conf = (DEPLOY / "leaf.conf").read_text()
    port = embedded.free_port()
    for fixed in ("listen: 0.0.0.0:4222", "http_port: 8222"):
        assert fixed in conf, f"leaf.conf changed: update this test ({fixed!r} not found)"
    conf = conf.replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{port}")
    conf = conf.replace("http_port: 8222", f"http_port: {embedded.free_port()}")
    (folder / "leaf.conf").write_text(conf)
    env = {**os.environ, "NATS_SERVER_NAME": "leaf-eu-1", "NATS_HUB_LEAF_URL": hub_leaf_url}
    with open(folder / "leaf.log", "wb") as log:
        proc = subprocess.Popen(
            [embedded.nats_server_binary(), "-c", str(folder / "leaf.conf")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, f"nats://127.0.0.1:{port}"


def _wait_for_leaf_link(hub_conf: Path) -> None:
    monitor = hub_conf.read_text().split("http_port: ")[1].split("\n")[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{monitor}/leafz", timeout=1).json()["leafnodes"]:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the leaf did not connect to the hub within 10 s")


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    folder = tmp_path_factory.mktemp("nats-leaf")
    users = [CONTROLLER_USER, SUBSCRIBER_USER, agent_user("DE"), agent_user("US"), LEAF_USER]
    passwords = {user: new_password() for user in users}
    stored = [
        StoredUser(u, hash_password(p, cost=4), countries=("DE",) if u == LEAF_USER else ())
        for u, p in passwords.items()
    ]
    (folder / "agents.conf").write_text(render_users_conf(stored))
    leaf_port = embedded.free_port()
    hub_conf = _hub_conf(folder, leaf_port)
    hub, hub_url = embedded.start_nats(folder / "data", config=hub_conf)
    leaf, leaf_url = None, ""
    try:
        link = f"nats-leaf://{LEAF_USER}:{passwords[LEAF_USER]}@127.0.0.1:{leaf_port}"
        leaf, leaf_url = _start_leaf(folder, link)
        _wait_for_leaf_link(hub_conf)
        yield Topology(Hub(hub_url, passwords), Hub(leaf_url, passwords))
    finally:
        if leaf is not None:
            embedded.stop(leaf)
        embedded.stop(hub)


@pytest.fixture(scope="module")
async def controller(topology: Topology) -> AsyncIterator[Client]:
    """The controller at the hub, with the streams, bucket and DE's and US's consumers."""
    client = await connect(topology.hub, CONTROLLER_USER)
    await ensure_streams(client.js)
    await ensure_jobs_consumers(client.js, ["DE", "US"])
    yield client
    await client.nc.close()


async def agent(at: Hub, cc: str) -> Client:
    return await connect(at, agent_user(cc), agent_inbox_prefix(cc))


async def test_a_rollup_put_cannot_empty_the_agents_bucket(
    topology: Topology, controller: Client
) -> None:
    """`Nats-Rollup: all` on an agent's own key would purge every country's heartbeats."""
    bucket = await agents_bucket(controller.js)
    await bucket.put("US.agent-us", b'{"agentId":"agent-us"}')
    de = await agent(topology.hub, "DE")
    try:
        for rollup in ("all", "sub"):
            with pytest.raises(APIError):
                await de.js.publish(
                    f"$KV.{AGENTS_BUCKET}.DE.x", b"", headers={"Nats-Rollup": rollup}
                )
        assert (await bucket.get("US.agent-us")).value == b'{"agentId":"agent-us"}'
        own = await agents_bucket(de.js)
        await own.put("DE.agent-de", b"{}")
        assert (await bucket.get("DE.agent-de")).value == b"{}"
        await own.delete("DE.agent-de")
        with pytest.raises(NotFoundError):
            await bucket.get("DE.agent-de")
        assert de.errors == []
    finally:
        await de.nc.close()


async def test_agents_behind_a_leaf_run_their_countrys_jobs(
    topology: Topology, controller: Client
) -> None:
    """agent.worker as shipped, connected to the leaf as agent-DE: it binds to jobs-DE, runs
    a DE job, publishes the result (JetStream-acked, or it would not ack the job), acks the
    job and heartbeats (put, then delete at its stop)."""
    de = await agent(topology.leaf, "DE")
    try:
        async with SmtpLikePeer() as peer:
            job = job_for("DE", peer.port)
            await publish_job(controller.js, job)
            w = worker(de.nc, "DE", build_ssl_contexts(), heartbeat_interval=0.1)
            await asyncio.wait_for(w.run(burst=True), 20)
        [result] = await results(controller.js, "DE")
        assert (result.job_id, result.status, result.agent_id) == (job.job_id, "up", w.agent_id)
        info = await controller.js.consumer_info(JOBS_STREAM, jobs_consumer_name("DE"))
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
        marker = await controller.js.get_msg(
            f"KV_{AGENTS_BUCKET}",
            subject=f"$KV.{AGENTS_BUCKET}.{heartbeat_key('DE', w.agent_id)}",
        )
        assert marker.headers is not None and marker.headers["KV-Operation"] == "DEL"

        beat = Heartbeat(
            de.js,
            country="DE",
            agent_id="DE-leaf-beat",
            capacity=1,
            in_flight=lambda: 0,
            started_at=utcnow(),
        )
        await beat.beat()
        seen = await (await agents_bucket(controller.js)).get(beat.key)
        assert seen.value is not None and json.loads(seen.value)["agentId"] == "DE-leaf-beat"
        await beat.remove()
        await de.nc.flush()
        assert de.errors == []
    finally:
        await de.nc.close()


async def test_a_leaf_carries_only_its_countries(topology: Topology, controller: Client) -> None:
    """agent-DE at the leaf is refused US work by the leaf; agent-US, whose own user allows US
    work, gets nothing through a leaf minted for DE only: the hub drops it."""
    await publish_job(controller.js, job_for("US", 9))
    de = await agent(topology.leaf, "DE")
    us = await agent(topology.leaf, "US")
    try:
        with pytest.raises(nats.errors.TimeoutError):
            await de.denied.consumer_info(JOBS_STREAM, jobs_consumer_name("US"))
        await de.violation("publish", "$JS.hub.API.CONSUMER.INFO.JOBS.jobs-US")
        for subject in (results_subject("US", "smtp", "x"), jobs_subject("DE")):
            await de.nc.publish(subject, b"{}")
            await de.violation("publish", subject)

        sub = await us.denied.pull_subscribe_bind(jobs_consumer_name("US"), stream=JOBS_STREAM)
        with pytest.raises(NOT_THROUGH):
            await sub.fetch(1, timeout=DENIED_WAIT_S)
        with pytest.raises(NOT_THROUGH):
            await us.denied.consumer_info(JOBS_STREAM, jobs_consumer_name("US"))
        with pytest.raises(NOT_THROUGH):
            await us.denied.publish(results_subject("US", "smtp", "via-leaf"), b"{}")
        with pytest.raises(NOT_THROUGH):
            await us.denied.publish(f"$KV.{AGENTS_BUCKET}.US.via-leaf", b"{}")
        assert us.errors == []  # its own user allows all this: the hub refused it

        with pytest.raises(NotFoundError):
            await controller.js.get_last_msg(RESULTS_STREAM, "mon.results.US.smtp.via-leaf")
        info = await controller.js.consumer_info(JOBS_STREAM, jobs_consumer_name("US"))
        assert (info.num_pending, info.num_ack_pending) == (1, 0)
    finally:
        await controller.js.purge_stream(JOBS_STREAM, subject=jobs_subject("US"))
        await de.nc.close()
        await us.nc.close()


@pytest.mark.parametrize("at", ["hub", "leaf"])
async def test_a_leaf_user_is_no_client_login(topology: Topology, at: str) -> None:
    """Its rights span countries; it may only link a leaf server, not connect as a client."""
    url = getattr(topology, at).url
    host, port = url.removeprefix("nats://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        assert (await reader.readline()).startswith(b"INFO ")
        login = {"verbose": False, "user": LEAF_USER, "pass": topology.hub.passwords[LEAF_USER]}
        writer.write(b"CONNECT " + json.dumps(login).encode() + b"\r\nPING\r\n")
        await writer.drain()
        assert b"Authorization Violation" in await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_an_agent_waits_for_its_consumer_until_the_controller_makes_it(
    topology: Topology, controller: Client
) -> None:
    """The agent's own create is refused (it logs jobs_consumer_missing and retries); it
    binds once the controller has made the consumer."""
    await controller.js.delete_consumer(JOBS_STREAM, jobs_consumer_name("US"))
    us = await agent(topology.hub, "US")
    w = worker(us.nc, "US", build_ssl_contexts(), retry_delay=0.1)
    try:
        with capture_logs() as logs:
            run = asyncio.create_task(w.run())
            await us.violation("publish", "$JS.API.CONSUMER.CREATE.JOBS.jobs-US.mon.jobs.US")
            assert w.readiness() == "the jobs consumer is not bound yet"
            await ensure_jobs_consumers(controller.js, ["US"])
            deadline = time.monotonic() + 15
            while w.readiness() is not None:
                assert time.monotonic() < deadline, "the agent did not bind"
                await asyncio.sleep(0.05)
            w.stop()
            await run
        assert "jobs_consumer_missing" in [e["event"] for e in logs]
    finally:
        w.stop()
        await us.nc.close()


@pytest.fixture(scope="module")
async def bare(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NATS]:
    """A NATS server of this module's own, without users, for what changes streams."""
    proc, url = embedded.start_nats(tmp_path_factory.mktemp("nats-bare"))
    nc = await nats.connect(url)
    try:
        yield nc
    finally:
        await nc.close()
        embedded.stop(proc)


async def test_ensure_streams_turns_off_rollups_of_an_existing_bucket(bare: NATS) -> None:
    """A bucket made by an older version (nats-py's defaults, rollups on) is fixed at start,
    keeping its entries."""
    bare_js = bare.jetstream()
    old = await bare_js.create_key_value(KeyValueConfig(bucket=AGENTS_BUCKET, ttl=30, history=1))
    await old.put("US.a", b"1")
    assert (await bare_js.stream_info(f"KV_{AGENTS_BUCKET}")).config.allow_rollup_hdrs
    kv = await ensure_streams(bare_js)
    assert not (await bare_js.stream_info(f"KV_{AGENTS_BUCKET}")).config.allow_rollup_hdrs
    with pytest.raises(APIError):
        await bare_js.publish(f"$KV.{AGENTS_BUCKET}.DE.x", b"", headers={"Nats-Rollup": "all"})
    assert (await kv.get("US.a")).value == b"1"


async def test_results_and_events_drop_their_oldest_past_their_size_cap(bare: NATS) -> None:
    bare_js = bare.jetstream()
    await ensure_streams(bare_js, results_max_bytes=16 * 1024, events_max_bytes=8 * 1024)
    for stream, subject in (
        (RESULTS_STREAM, "mon.results.DE.smtp.m"),
        (EVENTS_STREAM, "mon.events.m"),
    ):
        for _ in range(60):
            ack = await bare_js.publish(subject, b"x" * 500)
        info = await bare_js.stream_info(stream)
        assert (info.config.discard, info.state.last_seq) == ("old", ack.seq)
        assert info.state.bytes <= (info.config.max_bytes or 0) < 60 * 500, stream
        assert info.state.first_seq > 1, stream


async def test_a_push_consumer_delivering_into_results_leaks_jobs(bare: NATS) -> None:
    """Why agents lost the right to create their consumer: one turned into a push consumer
    delivering to `mon.results.…` hands every job (with its secrets) to RESULTS and to live
    readers. The controller puts such a consumer back as a pull consumer at start."""
    bare_js = bare.jetstream()
    await ensure_streams(bare_js)
    await bare_js.publish(jobs_subject("FR"), b'{"password":"s3cret"}')
    hijacked = ConsumerConfig(
        name=jobs_consumer_name("FR"),
        durable_name=jobs_consumer_name("FR"),
        filter_subject=jobs_subject("FR"),
        deliver_subject="mon.results.FR.leak.x",
    )
    await bare_js.add_consumer(JOBS_STREAM, hijacked)
    reader = await bare.subscribe("mon.results.FR.leak.x")
    leaked = await reader.next_msg(timeout=5)
    assert leaked.data == b'{"password":"s3cret"}'
    last = (await bare_js.stream_info(RESULTS_STREAM)).state.last_seq
    stored = await bare_js.get_msg(RESULTS_STREAM, seq=last)  # kept under the job's subject
    assert stored.data == b'{"password":"s3cret"}'
    await reader.unsubscribe()

    assert await ensure_jobs_consumers(bare_js, ["FR"]) == 1
    config = (await bare_js.consumer_info(JOBS_STREAM, jobs_consumer_name("FR"))).config
    assert (config.deliver_subject, config.ack_wait) == (None, JOBS_ACK_WAIT_S)
    assert await ensure_jobs_consumers(bare_js, ["FR"]) == 0  # in place: nothing written


async def test_the_controller_makes_every_countrys_consumer_and_caps_the_streams(
    bare: NATS, settings: ControllerSettings, pool: asyncpg.Pool
) -> None:
    """`serve`'s pipeline at start: RESULTS_MAX_MIB and EVENTS_MAX_MIB applied, and a
    `jobs-CC` for every ISO country, so a new country's agents find theirs at once."""
    js = bare.jetstream()
    capped = msgspec.structs.replace(settings, results_max_mib=64, events_max_mib=8)
    async with open_pipeline(capped, pool, bare):
        assert (await js.stream_info(RESULTS_STREAM)).config.max_bytes == 64 * MIB
        assert (await js.stream_info(EVENTS_STREAM)).config.max_bytes == 8 * MIB
        info = await js.stream_info(JOBS_STREAM)
        assert info.state.consumer_count >= len(COUNTRIES)
        for cc in ("DE", "BR", "ZW"):
            config = (await js.consumer_info(JOBS_STREAM, jobs_consumer_name(cc))).config
            assert (config.filter_subject, config.ack_wait) == (jobs_subject(cc), JOBS_ACK_WAIT_S)
        assert await ensure_jobs_consumers(js, sorted(COUNTRIES)) == 0
