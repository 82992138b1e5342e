"""Holes an audit found in the deployed NATS setup, each pinned against real nats-servers.

The hub runs deploy/nats/hub.conf and a regional leaf deploy/nats/leaf.conf, with the
agents.conf files deploy/nats_conf.py renders (the leaf `leaf-eu` carries DE only). NATS does
not check a request's reply subject: with every user in one account, an agent's pull request
with reply `mon.results.US.x` had JetStream deliver its country's jobs, secrets included, into
RESULTS and to every subscriber, and the subscriber could make the server write into any
stream. With an account per party, replies stay in the requester's account, for agents at the
hub and behind a leaf. Agents behind the leaf run their country's jobs as if on the hub, and
nothing else; nobody but the controller creates or changes a consumer; RESULTS and EVENTS are
capped in size.
"""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import asyncpg
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig, KeyValueConfig
from nats.js.errors import NotFoundError
from structlog.testing import capture_logs

from agent.heartbeat import Heartbeat
from agent.probers.tls import build_ssl_contexts
from controller.monitors.validation import COUNTRIES
from controller.runtime.pipeline import open_pipeline
from controller.settings import ControllerSettings
from deploy.nats_conf import (
    CONTROLLER_USER,
    IMPORTED_API,
    SUBSCRIBER_INBOX_PREFIX,
    SUBSCRIBER_USER,
    agent_user,
    leaf_login,
)
from shared import embedded
from shared.clock import WALL
from shared.messages import (
    AgentHeartbeat,
    Preempt,
    SmtpAuth,
    SmtpConfig,
    decode_heartbeat,
    decode_preempt,
    decode_result,
    encode,
)
from shared.publishing import Outbox, Outgoing, publish_batch
from shared.secret import Secret
from shared.streams import (
    JOBS_ACK_WAIT_S,
    JOBS_CONSUMER_IDLE_S,
    LEGACY_AGENTS_STREAM,
    MIB,
    RESULTS_LIVE_SUBJECTS,
    ensure_jobs_consumers,
    ensure_streams,
    jobs_consumer_name,
    stream_configs,
)
from shared.subjects import (
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    HEARTBEATS_SUBJECTS,
    JOBS_STREAM,
    RESULTS_STREAM,
    RESULTS_SUBJECTS,
    control_subject,
    heartbeats_subject,
    jobs_subject,
    results_subject,
)
from shared.timefmt import iso_ms, utcnow
from tests.agent.helpers import SmtpLikePeer, job_for, publish_job, worker
from tests.deploy.natsdeploy import (
    ALLOWED_WAIT_S,
    DENIED_WAIT_S,
    Client,
    Deployment,
    Server,
    agent,
    connect,
    make_pki,
    mint,
    raw_login,
    registered,
    start_hub,
    start_leaf,
)

REGION = "leaf-eu"
SECRET = SmtpConfig(auth=SmtpAuth(user="u", password=Secret("s3cret")))
# Every subject a reply could be aimed at to get something stored or seen by others.
ABUSED_REPLIES = (
    "mon.results.US.x",
    "mon.results.DE.x",
    "mon.jobs.DE",
    "mon.jobs.US",
    "mon.events.x",
    "mon.heartbeats.DE.x",
    "mon.heartbeats.US.x",
    "live.results.DE.x",
)
# A reply under `$JS.ACK` (a forged ack) the server refuses outright.
ACK_REPLY = "$JS.ACK.JOBS.jobs-DE.1.1.1.1.1"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("nats-leaf")
    names = [CONTROLLER_USER, SUBSCRIBER_USER, agent_user("DE"), agent_user("US")]
    passwords, users = mint([*names, leaf_login(REGION, "DE")])
    pki = make_pki(folder / "tls")
    found = Deployment(pki, start_hub(folder / "hub", users, pki), passwords, users)
    try:
        found.leaf = start_leaf(folder / "leaf", REGION, found)
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
async def controller(deployment: Deployment) -> AsyncIterator[Client]:
    """The controller at the hub, with the streams and DE's and US's consumers."""
    client = await connect(deployment.hub, deployment, CONTROLLER_USER)
    await ensure_streams(client.js)
    await ensure_jobs_consumers(client.js, ["DE", "US"])
    yield client
    await client.close()


def where(deployment: Deployment, at: str) -> Server:
    server = deployment.hub if at == "hub" else deployment.leaf
    assert server is not None
    return server


@dataclass
class Watch:
    """Everything a misrouted reply could reach: the streams' last sequences, the subscriber's
    live feed and the controllers' heartbeats."""

    subscriber: Client
    last_seqs: dict[str, int]
    live: list[Msg] = field(default_factory=list)
    beats: list[Msg] = field(default_factory=list)

    @classmethod
    async def start(cls, deployment: Deployment, controller: Client) -> "Watch":
        subscriber = await connect(
            deployment.hub, deployment, SUBSCRIBER_USER, SUBSCRIBER_INBOX_PREFIX
        )
        watch = cls(subscriber, await last_seqs(controller))

        async def live(msg: Msg) -> None:
            watch.live.append(msg)

        async def beat(msg: Msg) -> None:
            watch.beats.append(msg)

        await subscriber.nc.subscribe(RESULTS_SUBJECTS, cb=live)
        await subscriber.nc.subscribe(EVENTS_SUBJECTS, cb=live)
        watch._beats = await controller.nc.subscribe(HEARTBEATS_SUBJECTS, cb=beat)
        await registered(subscriber.nc)
        await registered(controller.nc)
        return watch

    async def nothing_reached(self, controller: Client) -> None:
        await asyncio.sleep(DENIED_WAIT_S)  # what a misrouted message would take to arrive
        await registered(controller.nc)
        await registered(self.subscriber.nc)
        assert await last_seqs(controller) == self.last_seqs
        assert [m.subject for m in self.live] == []
        assert [m.subject for m in self.beats] == []
        await self._beats.unsubscribe()
        await self.subscriber.close()

    _beats: Subscription = field(init=False)


async def last_seqs(controller: Client) -> dict[str, int]:
    streams = (JOBS_STREAM, RESULTS_STREAM, EVENTS_STREAM)
    return {s: (await controller.js.stream_info(s)).state.last_seq for s in streams}


async def delivered(controller: Client, cc: str, count: int) -> None:
    """Wait until `count` of the country's jobs went out and wait for an ack: JetStream
    answered the requests (to wherever their reply pointed)."""
    deadline = time.monotonic() + 5
    while True:
        info = await controller.js.consumer_info(JOBS_STREAM, jobs_consumer_name(cc))
        if info.num_ack_pending >= count:
            return
        assert time.monotonic() < deadline, f"{info.num_ack_pending} of {count} jobs delivered"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("at", ["hub", "leaf"])
async def test_a_pull_request_replying_elsewhere_stores_nothing_and_reaches_nobody(
    deployment: Deployment, controller: Client, at: str
) -> None:
    """An agent of DE pulls its jobs with reply subjects in RESULTS, JOBS, EVENTS, the live
    feed and the heartbeats, of DE and of US, and acks one with `+NXT` (the next job to a
    reply) likewise: JetStream delivers the jobs, into the agent's own account, where nothing
    forwards them. Nothing is stored, the subscriber and the controllers see nothing."""
    for _ in range(len(ABUSED_REPLIES) + 2):
        await publish_job(controller.js, job_for("DE", 9, config=SECRET))
    watch = await Watch.start(deployment, controller)
    de = await agent(where(deployment, at), deployment, "DE")
    try:
        sub = await de.js.pull_subscribe_bind(jobs_consumer_name("DE"), stream=JOBS_STREAM)
        [taken] = await sub.fetch(1, timeout=5)
        pull = "$JS.API.CONSUMER.MSG.NEXT.JOBS.jobs-DE"
        for reply in (*ABUSED_REPLIES, ACK_REPLY):
            await de.nc.publish(pull, json.dumps({"batch": 1}).encode(), reply=reply)
        assert taken.reply is not None
        await de.nc.publish(taken.reply, b"+NXT", reply="mon.results.US.nxt")
        await de.violation("publish with reply of", ACK_REPLY)
        # One job per other pull request (the `+NXT` acked the first; its next one JetStream
        # sends only where someone listens).
        await delivered(controller, "DE", len(ABUSED_REPLIES))
        await watch.nothing_reached(controller)
        assert len(de.errors) == 1  # the rest within its rights: only the replies went astray
    finally:
        await de.close()
        await controller.js.purge_stream(JOBS_STREAM, subject=jobs_subject("DE"))


@pytest.mark.parametrize("at", ["hub", "leaf"])
async def test_other_requests_of_an_agent_replying_elsewhere_store_nothing(
    deployment: Deployment, controller: Client, at: str
) -> None:
    """Consumer info, a result's PubAck and an ack's confirmation, each with reply subjects
    in the streams: they stay in the agent's account too. Its results are stored, once."""
    await publish_job(controller.js, job_for("DE", 9))
    de = await agent(where(deployment, at), deployment, "DE")
    try:
        sub = await de.js.pull_subscribe_bind(jobs_consumer_name("DE"), stream=JOBS_STREAM)
        [taken] = await sub.fetch(1, timeout=5)
        watch = await Watch.start(deployment, controller)
        info = f"$JS.API.CONSUMER.INFO.JOBS.{jobs_consumer_name('DE')}"
        for n, reply in enumerate(ABUSED_REPLIES):
            await de.nc.publish(info, b"", reply=reply)
            await de.nc.publish(results_subject("DE", "smtp", f"m{n}"), b'{"v":1}', reply=reply)
        assert taken.reply is not None
        await de.nc.publish(taken.reply, b"+ACK", reply="mon.results.US.ack")
        await asyncio.sleep(DENIED_WAIT_S)
        own = {f"mon.results.DE.smtp.m{n}" for n in range(len(ABUSED_REPLIES))}
        assert {m.subject for m in watch.live} == own  # the results themselves, live
        watch.live.clear()
        watch.last_seqs[RESULTS_STREAM] += len(own)
        await watch.nothing_reached(controller)
        assert de.errors == []
    finally:
        await de.close()


async def test_the_subscribers_reads_replying_elsewhere_store_nothing(
    deployment: Deployment, controller: Client
) -> None:
    """Message get and stream info with reply subjects in JOBS, RESULTS, EVENTS, the live
    feed and the heartbeats: the answers stay in the subscriber's account; nothing is stored
    and the controllers hear nothing."""
    us = await agent(deployment.hub, deployment, "US")
    await us.js.publish(results_subject("US", "smtp", "history"), b'{"v":1}')
    await us.close()
    watch = await Watch.start(deployment, controller)
    reader = await connect(deployment.hub, deployment, SUBSCRIBER_USER, SUBSCRIBER_INBOX_PREFIX)
    try:
        seq = watch.last_seqs[RESULTS_STREAM]
        for reply in ABUSED_REPLIES:
            for stream in (RESULTS_STREAM, EVENTS_STREAM):
                await reader.nc.publish(
                    f"$JS.API.STREAM.MSG.GET.{stream}", json.dumps({"seq": seq}).encode(), reply
                )
                await reader.nc.publish(f"$JS.API.STREAM.INFO.{stream}", b"", reply=reply)
        await asyncio.sleep(DENIED_WAIT_S)
        # The answers arrive in its own account, where its own live subscriptions see those
        # aimed at them: copies of what it may read anyway, seen by nobody else.
        assert {m.subject for m in watch.live} <= set(ABUSED_REPLIES)
        watch.live.clear()
        await watch.nothing_reached(controller)
        assert reader.errors == []
    finally:
        await reader.close()


async def test_one_countrys_heartbeats_cannot_crowd_out_anothers(
    deployment: Deployment, controller: Client
) -> None:
    """A DE agent floods heartbeats under hundreds of made-up agent ids: a controller's view
    (deploy's account for the controller, its real LiveAgents) keeps at most the cap for DE,
    and US's agent stays live and is refreshed; DE cannot beat as US at all."""
    from controller.fleet.live import LiveAgents

    view = LiveAgents(controller.nc, per_country_max=20, warmup_s=0, wall=WALL.now)
    await view.start()
    de = await agent(deployment.hub, deployment, "DE")
    us = await agent(deployment.hub, deployment, "US")
    try:
        beat = Heartbeat(
            us.nc,
            country="US",
            agent_id="US-1",
            capacity=5,
            in_flight=lambda: 0,
            started_at=utcnow(),
            clock=WALL,
        )
        await beat.beat()
        for n in range(300):
            flood = Heartbeat(
                de.nc,
                country="DE",
                agent_id=f"DE-{n}",
                capacity=1,
                in_flight=lambda: 0,
                started_at=utcnow(),
                clock=WALL,
            )
            await flood.beat()
        await de.nc.publish(heartbeats_subject("US", "US-forged"), b"{}")
        await de.violation("publish", "mon.heartbeats.US.US-forged")
        await beat.beat()
        await registered(de.nc)
        await registered(us.nc)
        await registered(controller.nc)
        agents = view.agents()
        assert [a.agent_id for a in agents if a.country == "US"] == ["US-1"]
        assert len([a for a in agents if a.country == "DE"]) == 20
        assert view.countries() == {"DE", "US"}
    finally:
        await view.stop()
        await de.close()
        await us.close()


async def test_agents_behind_a_leaf_run_their_countrys_jobs(
    deployment: Deployment, controller: Client
) -> None:
    """agent.worker as shipped, connected to the leaf as agent-DE: it binds to jobs-DE, runs
    a DE job, publishes the result (JetStream-acked, or it would not ack the job), acks the
    job, and its heartbeats reach the controller, the last one saying `stopping`."""
    assert deployment.leaf is not None
    beats: list[Msg] = []

    async def heard(msg: Msg) -> None:
        beats.append(msg)

    hb = await controller.nc.subscribe(HEARTBEATS_SUBJECTS, cb=heard)
    await registered(controller.nc)
    de = await agent(deployment.leaf, deployment, "DE")
    try:
        async with SmtpLikePeer() as peer:
            job = job_for("DE", peer.port)
            await publish_job(controller.js, job)
            w = worker(de.nc, "DE", build_ssl_contexts(), heartbeat_interval=0.1)
            await asyncio.wait_for(w.run(burst=True), 20)
        stored = await controller.js.get_last_msg(
            RESULTS_STREAM, results_subject("DE", "smtp", job.monitor_id)
        )
        result = decode_result(stored.data or b"")
        assert (result.job_id, result.status, result.agent_id) == (job.job_id, "up", w.agent_id)
        info = await controller.js.consumer_info(JOBS_STREAM, jobs_consumer_name("DE"))
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
        await registered(controller.nc)
        mine = [decode_heartbeat(m.data) for m in beats if m.subject.endswith(w.agent_id)]
        assert mine and mine[-1].stopping and not mine[0].stopping
        assert de.errors == []
    finally:
        await hb.unsubscribe()
        await de.close()


async def test_the_controllers_preempt_requests_reach_only_their_countrys_agents(
    deployment: Deployment, controller: Client
) -> None:
    """A `Preempt` the controller publishes on `mon.control.DE.<agent>` reaches a DE agent at the
    hub and one behind the leaf (the stream export from MAILPROBE, through the leaf login);
    no agent may publish there, nor listen to another country's."""
    assert deployment.leaf is not None
    at_hub = await agent(deployment.hub, deployment, "DE")
    at_leaf = await agent(deployment.leaf, deployment, "DE")
    us = await agent(deployment.hub, deployment, "US")
    try:
        heard: dict[str, list[bytes]] = {"hub": [], "leaf": []}
        for where, client in (("hub", at_hub), ("leaf", at_leaf)):
            await client.nc.subscribe(control_subject("DE", f"DE-{where}"), cb=_into(heard[where]))
            await registered(client.nc)
        await us.nc.subscribe(control_subject("DE", "DE-hub"))
        await us.violation("subscription", control_subject("DE", "DE-hub"))
        for where in heard:
            request = Preempt(country="DE", agent_id=f"DE-{where}", tenant="noisy", held=3)
            deadline = time.monotonic() + ALLOWED_WAIT_S
            while not heard[where]:  # the leaf's interest reaches the hub in a moment
                await controller.nc.publish(control_subject("DE", f"DE-{where}"), encode(request))
                await controller.nc.flush()
                assert time.monotonic() < deadline, f"no request reached the agent at the {where}"
                await asyncio.sleep(0.1)
            assert decode_preempt(heard[where][0]) == request
        await at_hub.nc.publish(control_subject("DE", "DE-leaf"), b"{}")
        await at_hub.violation("publish", control_subject("DE", "DE-leaf"))
        await asyncio.sleep(0.2)
        assert all(decode_preempt(b).agent_id == "DE-leaf" for b in heard["leaf"])
    finally:
        for client in (at_hub, at_leaf, us):
            await client.close()


def _into(found: list[bytes]) -> Callable[[Msg], Awaitable[None]]:
    async def heard(msg: Msg) -> None:
        found.append(msg.data)

    return heard


async def test_a_leaf_carries_only_its_countries(
    deployment: Deployment, controller: Client
) -> None:
    """agent-DE at the leaf is refused US work by the leaf; agent-US has no account at a leaf
    minted for DE only, so it cannot even log in there."""
    assert deployment.leaf is not None
    await publish_job(controller.js, job_for("US", 9))
    de = await agent(deployment.leaf, deployment, "DE")
    try:
        with pytest.raises(nats.errors.TimeoutError):
            await de.denied.consumer_info(JOBS_STREAM, jobs_consumer_name("US"))
        await de.violation("publish", f"{IMPORTED_API}.CONSUMER.INFO.JOBS.jobs-US")
        for subject in (results_subject("US", "smtp", "x"), jobs_subject("DE")):
            await de.nc.publish(subject, b"{}")
            await de.violation("publish", subject)
        login = {"user": agent_user("US"), "pass": deployment.passwords[agent_user("US")]}
        refused = await raw_login(deployment.leaf, deployment.pki.client(), login)
        assert b"Authorization Violation" in refused
        with pytest.raises(NotFoundError):
            await controller.js.get_last_msg(RESULTS_STREAM, "mon.results.US.smtp.x")
        info = await controller.js.consumer_info(JOBS_STREAM, jobs_consumer_name("US"))
        assert (info.num_pending, info.num_ack_pending) == (1, 0)
    finally:
        await controller.js.purge_stream(JOBS_STREAM, subject=jobs_subject("US"))
        await de.close()


@pytest.mark.parametrize("at", ["hub", "leaf"])
async def test_a_leaf_login_is_no_client_login(deployment: Deployment, at: str) -> None:
    """Its rights are an agent's, but it may only link a leaf server, not connect as a
    client (and at the leaf it does not exist)."""
    login = leaf_login(REGION, "DE")
    credentials = {"user": login, "pass": deployment.passwords[login]}
    answer = await raw_login(where(deployment, at), deployment.pki.client(), credentials)
    assert b"Authorization Violation" in answer


async def test_an_agent_waits_for_its_consumer_until_the_controller_makes_it(
    deployment: Deployment, controller: Client
) -> None:
    """The agent's own create is refused (it logs jobs_consumer_missing and retries); it
    binds once the controller has made the consumer."""
    await controller.js.delete_consumer(JOBS_STREAM, jobs_consumer_name("US"))
    us = await agent(deployment.hub, deployment, "US")
    w = worker(us.nc, "US", build_ssl_contexts(), retry_delay=0.1)
    try:
        with capture_logs() as logs:
            run = asyncio.create_task(w.run())
            await us.violation(
                "publish", f"{IMPORTED_API}.CONSUMER.CREATE.JOBS.jobs-US.mon.jobs.US"
            )
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
        await us.close()


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


async def test_ensure_streams_removes_the_agents_bucket_of_older_versions(bare: NATS) -> None:
    """Heartbeats are core messages now: the bucket older versions made (and every put an
    agent of any country could fill) is deleted at start, with a log line."""
    bare_js = bare.jetstream()
    old = await bare_js.create_key_value(KeyValueConfig(bucket="agents", ttl=30, history=1))
    await old.put("US.a", b"1")
    with capture_logs() as logs:
        await ensure_streams(bare_js)
    with pytest.raises(NotFoundError):
        await bare_js.stream_info(LEGACY_AGENTS_STREAM)
    assert "legacy_agents_bucket_removed" in [e["event"] for e in logs]
    with capture_logs() as logs:
        await ensure_streams(bare_js)
    assert logs == []


async def test_ensure_streams_gives_an_existing_results_stream_its_live_feed(bare: NATS) -> None:
    """RESULTS made by an older version gets the republish readers in other accounts follow:
    each result it stores comes once on `live.results.…`, under the same tokens."""
    bare_js = bare.jetstream()
    with contextlib.suppress(NotFoundError):
        await bare_js.delete_stream(RESULTS_STREAM)
    [old] = [c for c in stream_configs() if c.name == RESULTS_STREAM]
    old.republish = None
    await bare_js.add_stream(old)
    await ensure_streams(bare_js)
    live = await bare.subscribe(RESULTS_LIVE_SUBJECTS)
    await registered(bare)
    for _ in range(2):
        await bare_js.publish("mon.results.DE.smtp.m", b"r", headers={"Nats-Msg-Id": "j-live"})
    msg = await live.next_msg(timeout=5)
    assert (msg.subject, msg.data) == ("live.results.DE.smtp.m", b"r")
    with pytest.raises(nats.errors.TimeoutError):  # the duplicate was not stored, nor sent
        await live.next_msg(timeout=DENIED_WAIT_S)
    await live.unsubscribe()


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
    delivering to `mon.results.…` hands every job (with its secrets) to whoever subscribes
    there and into RESULTS, which keeps it under the job's own subject. The controller puts
    such a consumer back as a pull consumer at start."""
    bare_js = bare.jetstream()
    await ensure_streams(bare_js)
    await bare_js.publish(jobs_subject("FR"), b'{"password":"s3cret"}')
    hijacked = ConsumerConfig(
        name=jobs_consumer_name("FR"),
        durable_name=jobs_consumer_name("FR"),
        filter_subject=jobs_subject("FR"),
        deliver_subject="mon.results.FR.leak.x",
    )
    # RESULTS keeps the delivery under the job's own subject, which nothing else publishes
    # into it: a consumer filtered on that subject reads exactly that copy, and its fetch
    # returns once the stream has stored it (the reader may get the delivery before).
    kept = await bare_js.pull_subscribe(jobs_subject("FR"), stream=RESULTS_STREAM)
    reader = await bare.subscribe("mon.results.FR.leak.x")
    await registered(bare)
    await bare_js.add_consumer(JOBS_STREAM, hijacked)
    leaked = await reader.next_msg(timeout=5)
    assert leaked.data == b'{"password":"s3cret"}'
    [stored] = await kept.fetch(1, timeout=5)
    assert (stored.subject, stored.data) == (jobs_subject("FR"), b'{"password":"s3cret"}')
    await reader.unsubscribe()
    await kept.unsubscribe()

    assert await ensure_jobs_consumers(bare_js, ["FR"]) == 1
    config = (await bare_js.consumer_info(JOBS_STREAM, jobs_consumer_name("FR"))).config
    assert (config.deliver_subject, config.ack_wait) == (None, JOBS_ACK_WAIT_S)
    assert await ensure_jobs_consumers(bare_js, ["FR"]) == 0  # in place: nothing written


async def test_the_controller_makes_the_consumers_of_countries_in_use_and_caps_the_streams(
    bare: NATS, settings: ControllerSettings, pool: asyncpg.Pool
) -> None:
    """`serve`'s pipeline at start: RESULTS_MAX_MIB and EVENTS_MAX_MIB applied, no `jobs-CC`
    for a country without agents (each would cost a cluster a Raft group), and one written for
    a country once its first agent's heartbeat arrives, so that agent finds it."""
    js = bare.jetstream()
    capped = settings.replace(results_max_mib=64, events_max_mib=8)
    async with open_pipeline(capped, pool, bare, clock=WALL):
        assert (await js.stream_info(RESULTS_STREAM)).config.max_bytes == 64 * MIB
        assert (await js.stream_info(EVENTS_STREAM)).config.max_bytes == 8 * MIB
        names = {c.name for c in await js.consumers_info(JOBS_STREAM)}
        assert jobs_consumer_name("ZW") not in names and len(names) < len(COUNTRIES) // 10
        now = iso_ms(utcnow())
        beat = AgentHeartbeat(agent_id="zw-1", country="ZW", started_at=now, seen_at=now)
        await bare.publish(heartbeats_subject("ZW", "zw-1"), encode(beat))
        async with asyncio.timeout(10):
            while True:
                try:
                    info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name("ZW"))
                    break
                except NotFoundError:
                    await asyncio.sleep(0.1)
        config = info.config
        assert (config.filter_subject, config.ack_wait) == (jobs_subject("ZW"), JOBS_ACK_WAIT_S)
        assert config.inactive_threshold == JOBS_CONSUMER_IDLE_S
        assert await ensure_jobs_consumers(js, ["ZW"]) == 0


async def test_the_controllers_jobs_go_as_one_batch_under_the_deployed_accounts(
    controller: Client,
) -> None:
    """The controller lives in JetStream's own account: its jobs go to JOBS as fast-ingest
    batches there too."""
    jobs = [job_for("US", 9) for _ in range(7)]
    try:
        await publish_batch(
            controller.js,
            [Outgoing(jobs_subject("US"), encode(j), j.job_id) for j in jobs],
            timeout_s=ALLOWED_WAIT_S,
        )
        info = await controller.js.consumer_info(JOBS_STREAM, jobs_consumer_name("US"))
        assert info.num_pending == len(jobs)
    finally:
        await controller.js.purge_stream(JOBS_STREAM, subject=jobs_subject("US"))


@pytest.mark.parametrize("at", ["hub", "leaf"])
async def test_an_agents_results_go_as_batches_through_its_import(
    deployment: Deployment, controller: Client, at: str
) -> None:
    """An agent's results cross a service import: each message of a batch has a reply subject
    of its own, so each flow ack and the commit's PubAck is one response to one request, and
    the batch works there as at the controller. A flush published again is deduped; every
    result is stored once, and nothing is refused."""
    de = await agent(where(deployment, at), deployment, "DE")
    subject = results_subject("DE", "smtp", str(uuid.uuid4()))
    try:
        outbox = Outbox(de.js, linger_s=0.05, timeout_s=ALLOWED_WAIT_S)
        ids = [str(uuid.uuid4()) for _ in range(6)]
        with capture_logs() as logs:
            await asyncio.gather(*(outbox.publish(subject, b"{}", i) for i in ids[:3]))
            await asyncio.gather(*(outbox.publish(subject, b"{}", i) for i in ids))
        assert outbox.batches
        assert logs == []  # no batch refused, none published again one by one
        info = await controller.js.stream_info(RESULTS_STREAM, subjects_filter=subject)
        assert (info.state.subjects or {}).get(subject) == len(ids)
        assert de.errors == []
    finally:
        await de.close()
        await controller.js.purge_stream(RESULTS_STREAM, subject=subject)
