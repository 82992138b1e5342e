"""The NATS users of deploy/nats against a real nats-server started with hub.conf.

A DE agent can do its own work (fetch and ack DE jobs, publish DE results with a JetStream ack,
put its heartbeat) and nothing of another country's; the subscriber can read RESULTS and EVENTS
and publish nothing; nobody gets in without a password. Denials show up as the server's
`Permissions Violation` errors (nats-py's `error_cb`) and as request timeouts.
"""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from deploy.nats_conf import (
    CONTROLLER_USER,
    SUBSCRIBER_INBOX_PREFIX,
    SUBSCRIBER_USER,
    StoredUser,
    agent_inbox_prefix,
    agent_user,
    hash_password,
    new_password,
    render_users_conf,
)
from shared import embedded
from shared.streams import (
    agents_bucket,
    ensure_streams,
    ingest_consumer_config,
    jobs_consumer_config,
    jobs_consumer_name,
)
from shared.subjects import (
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    JOBS_STREAM,
    RESULTS_STREAM,
    RESULTS_SUBJECTS,
    events_subject,
    jobs_subject,
    results_subject,
)

HUB_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "hub.conf"
DENIED_WAIT_S = 0.5  # how long a request waits before its denial counts as proven
ALLOWED_WAIT_S = 5.0
COUNTRIES = ("DE", "US")


@dataclass
class Hub:
    url: str
    passwords: dict[str, str]


@dataclass
class Client:
    nc: NATS
    errors: list[Exception] = field(default_factory=list)

    @property
    def js(self) -> JetStreamContext:
        """For what the user may do: a wait a loaded machine does not run out of."""
        return self.nc.jetstream(timeout=ALLOWED_WAIT_S)

    @property
    def denied(self) -> JetStreamContext:
        """For what the user may not do: no answer within DENIED_WAIT_S proves the denial."""
        return self.nc.jetstream(timeout=DENIED_WAIT_S)

    async def violation(self, kind: str, subject: str) -> None:
        """Wait until the server reported `Permissions Violation for <kind> to "<subject>"`."""
        pattern = re.compile(rf'permissions violation for {kind} to "{re.escape(subject)}"', re.I)
        await self.nc.flush()
        for _ in range(100):
            if any(pattern.search(str(e)) for e in self.errors):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind} violation for {subject}; errors: {self.errors}")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """nats-server with deploy/nats/hub.conf and an agents.conf holding every kind of user.

    The copy differs only in its monitoring and leaf-node ports (free ones, so tests may run
    beside a real server) and store folder (start_nats passes one)."""
    folder = tmp_path_factory.mktemp("nats-hub")
    users = [CONTROLLER_USER, SUBSCRIBER_USER, *(agent_user(cc) for cc in COUNTRIES)]
    passwords = {user: new_password() for user in users}
    stored = [StoredUser(u, hash_password(p, cost=4)) for u, p in passwords.items()]
    (folder / "agents.conf").write_text(render_users_conf(stored))
    conf = HUB_CONF.read_text()
    for fixed in ("http_port: 8222", "listen: 0.0.0.0:7422", "store_dir: /data/jetstream\n"):
        assert fixed in conf, f"hub.conf changed: update this test ({fixed!r} not found)"
    conf = conf.replace("store_dir: /data/jetstream\n", "")
    conf = conf.replace("http_port: 8222", f"http_port: {embedded.free_port()}")
    conf = conf.replace("listen: 0.0.0.0:7422", f"listen: 127.0.0.1:{embedded.free_port()}")
    (folder / "hub.conf").write_text(conf)
    proc, url = embedded.start_nats(folder / "data", config=folder / "hub.conf")
    yield Hub(url, passwords)
    embedded.stop(proc)


async def connect(hub: Hub, user: str, inbox_prefix: str = "_INBOX") -> Client:
    client = Client(nc=NATS())

    async def on_error(exc: Exception) -> None:
        client.errors.append(exc)

    await client.nc.connect(
        hub.url,
        user=user,
        password=hub.passwords[user],
        inbox_prefix=inbox_prefix,
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=2,
    )
    return client


@pytest.fixture(scope="module")
async def controller(hub: Hub) -> AsyncIterator[Client]:
    """The controller, with the streams, bucket and both countries' job consumers in place."""
    client = await connect(hub, CONTROLLER_USER)
    await ensure_streams(client.js)
    for cc in COUNTRIES:
        config = jobs_consumer_config(cc, ack_wait_s=30)
        config.name = config.durable_name
        await client.js.add_consumer(JOBS_STREAM, config)
    yield client
    assert client.errors == []
    await client.nc.close()


@pytest.fixture
async def agent_de(hub: Hub) -> AsyncIterator[Client]:
    client = await connect(hub, agent_user("DE"), agent_inbox_prefix("DE"))
    yield client
    await client.nc.close()


@pytest.fixture
async def subscriber(hub: Hub) -> AsyncIterator[Client]:
    client = await connect(hub, SUBSCRIBER_USER, SUBSCRIBER_INBOX_PREFIX)
    yield client
    await client.nc.close()


async def publish_job(controller: Client, cc: str, job_id: str) -> None:
    body = json.dumps({"v": 1, "jobId": job_id, "country": cc}).encode()
    ack = await controller.js.publish(jobs_subject(cc), body, headers={"Nats-Msg-Id": job_id})
    assert ack.stream == JOBS_STREAM


async def pending_jobs(controller: Client, cc: str) -> int:
    info = await controller.js.consumer_info(JOBS_STREAM, jobs_consumer_name(cc))
    return (info.num_pending or 0) + (info.num_ack_pending or 0)


async def test_nobody_gets_in_without_the_password(hub: Hub) -> None:
    """At the protocol level (a refused nats-py connect leaves its socket open)."""
    host, port = hub.url.removeprefix("nats://").split(":")
    for credentials in ({}, {"user": agent_user("DE"), "pass": "wrong"}):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            assert (await reader.readline()).startswith(b"INFO ")
            connect = {"verbose": False, "pedantic": False, **credentials}
            writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
            await writer.drain()
            assert b"Authorization Violation" in await reader.readline()
        finally:
            writer.close()
            await writer.wait_closed()


async def test_de_agent_does_its_own_work(controller: Client, agent_de: Client) -> None:
    await publish_job(controller, "DE", "job-de-1")
    js = agent_de.js
    # What agent.worker does at start: look up its durable (the controller made it), bind, fetch.
    info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name("DE"))
    assert info.config.filter_subject == "mon.jobs.DE"
    sub = await js.pull_subscribe_bind(jobs_consumer_name("DE"), stream=JOBS_STREAM)
    assert (await sub.consumer_info()).name == "jobs-DE"
    [msg] = await sub.fetch(1, timeout=2)
    assert json.loads(msg.data)["jobId"] == "job-de-1"

    ack = await js.publish(
        results_subject("DE", "smtp", "x"), b'{"v":1}', headers={"Nats-Msg-Id": "job-de-1"}
    )
    assert ack.stream == RESULTS_STREAM
    await msg.ack_sync(timeout=2)
    assert await pending_jobs(controller, "DE") == 0

    kv = await agents_bucket(js)
    await kv.put("DE.agent-1", b'{"agentId":"agent-1"}')
    assert (await (await agents_bucket(controller.js)).get("DE.agent-1")).value
    await kv.delete("DE.agent-1")
    assert agent_de.errors == []


async def test_de_agent_cannot_read_us_jobs(controller: Client, agent_de: Client) -> None:
    await publish_job(controller, "US", "job-us-1")
    js = agent_de.denied
    sub = await js.pull_subscribe_bind(jobs_consumer_name("US"), stream=JOBS_STREAM)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=DENIED_WAIT_S)
    await agent_de.violation("publish", "$JS.API.CONSUMER.MSG.NEXT.JOBS.jobs-US")

    with pytest.raises(nats.errors.TimeoutError):
        await js.consumer_info(JOBS_STREAM, jobs_consumer_name("US"))
    await agent_de.violation("publish", "$JS.API.CONSUMER.INFO.JOBS.jobs-US")

    us = jobs_consumer_config("US", ack_wait_s=30)
    us.name = us.durable_name
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(JOBS_STREAM, us)
    await agent_de.violation("publish", "$JS.API.CONSUMER.CREATE.JOBS.jobs-US.mon.jobs.US")

    # Nor its own consumer, in any form: a consumer's config decides where its jobs go.
    for subject in (
        "$JS.API.CONSUMER.CREATE.JOBS.jobs-DE.mon.jobs.DE",
        "$JS.API.CONSUMER.DURABLE.CREATE.JOBS.jobs-DE",
    ):
        request = {"stream_name": JOBS_STREAM, "config": {"durable_name": "jobs-DE"}}
        await agent_de.nc.publish(subject, json.dumps(request).encode())
        await agent_de.violation("publish", subject)
    info = await controller.js.consumer_info(JOBS_STREAM, "jobs-DE")
    assert info.config.filter_subject == "mon.jobs.DE"

    # No way around the consumer: no message get on JOBS, no core subscription to jobs or to
    # other inboxes.
    with pytest.raises(nats.errors.TimeoutError):
        await js.get_msg(JOBS_STREAM, seq=1)
    await agent_de.violation("publish", "$JS.API.STREAM.MSG.GET.JOBS")
    for subject in ("mon.jobs.US", "mon.jobs.>", "_INBOX.>", "_INBOX_agent_US.>"):
        await agent_de.nc.subscribe(subject)
        await agent_de.violation("subscription", subject)
    assert await pending_jobs(controller, "US") == 1


async def test_de_agent_cannot_publish_for_others(controller: Client, agent_de: Client) -> None:
    js = agent_de.denied
    with pytest.raises(nats.errors.TimeoutError):
        await js.publish(results_subject("US", "smtp", "x"), b'{"v":1}')
    await agent_de.violation("publish", "mon.results.US.smtp.x")

    for subject in ("mon.jobs.DE", "mon.events.x", "$JS.API.STREAM.DELETE.RESULTS"):
        await agent_de.nc.publish(subject, b"{}")
        await agent_de.violation("publish", subject)

    kv = await agents_bucket(js)
    with pytest.raises(nats.errors.TimeoutError):
        await kv.put("US.agent-1", b"{}")
    await agent_de.violation("publish", "$KV.agents.US.agent-1")

    with pytest.raises(NotFoundError):
        await controller.js.get_last_msg(RESULTS_STREAM, "mon.results.US.>")
    assert await pending_jobs(controller, "DE") == 0


async def stream_subjects(client: Client, stream: str, subjects: str) -> list[str]:
    """Every message subject in `stream`, read one by one with STREAM.MSG.GET (next_by_subj)."""
    found: list[str] = []
    seq = 1
    while True:
        try:
            msg = await client.js.get_msg(stream, seq=seq, subject=subjects, next=True)
        except NotFoundError:
            return found
        assert msg.subject is not None and msg.seq is not None
        found.append(msg.subject)
        seq = msg.seq + 1


async def test_subscriber_reads_results_and_events(
    hub: Hub, controller: Client, subscriber: Client
) -> None:
    agent_us = await connect(hub, agent_user("US"), agent_inbox_prefix("US"))
    await agent_us.js.publish(results_subject("US", "imap", "y"), b'{"v":1}')
    await controller.js.publish(events_subject("m-1"), b'{"v":1,"kind":"down"}')

    # History: stream info and message get.
    assert (await subscriber.js.stream_info(RESULTS_STREAM)).state.messages >= 1
    assert "mon.results.US.imap.y" in await stream_subjects(
        subscriber, RESULTS_STREAM, RESULTS_SUBJECTS
    )
    assert "mon.events.m-1" in await stream_subjects(subscriber, EVENTS_STREAM, EVENTS_SUBJECTS)
    last = await subscriber.js.get_last_msg(RESULTS_STREAM, "mon.results.US.>")
    assert last.subject == "mon.results.US.imap.y"

    await agent_us.nc.close()
    assert subscriber.errors == []
    assert agent_us.errors == []


async def registered(nc: NATS) -> None:
    """Return once the server has the client's subscriptions. nats-py (2.16) writes flush()'s
    PING straight to the socket, while a SUB may still wait in the client's buffer for its
    flusher task: one PONG does not prove the SUB arrived (here, about one fresh subscription
    in six then missed the next message). The first round trip lets the buffer go out; the
    second PING follows it."""
    await nc.flush()
    await nc.flush()


async def test_subscriber_receives_live_results_and_events(
    hub: Hub, controller: Client, subscriber: Client
) -> None:
    agent_us = await connect(hub, agent_user("US"), agent_inbox_prefix("US"))
    live_results = await subscriber.nc.subscribe(RESULTS_SUBJECTS)
    live_events = await subscriber.nc.subscribe(EVENTS_SUBJECTS)
    await registered(subscriber.nc)
    await controller.js.publish(events_subject("m-3"), b'{"v":1,"kind":"up"}')
    await agent_us.js.publish(results_subject("US", "pop3", "w"), b'{"v":1}')
    assert (await live_events.next_msg(timeout=5)).subject == "mon.events.m-3"
    assert (await live_results.next_msg(timeout=5)).subject == "mon.results.US.pop3.w"
    await agent_us.nc.close()
    assert subscriber.errors == []


async def test_subscriber_cannot_publish_or_take(controller: Client, subscriber: Client) -> None:
    for subject in ("mon.results.DE.smtp.x", "mon.events.x", "mon.jobs.DE", "$KV.agents.DE.a"):
        await subscriber.nc.publish(subject, b"{}")
        await subscriber.violation("publish", subject)

    # No consumers at all: not on JOBS, and not even an ephemeral one on RESULTS, since the
    # ephemeral create subject updates an existing consumer named in the body (`ingest`).
    with pytest.raises(nats.errors.TimeoutError):
        await subscriber.denied.subscribe(
            jobs_subject("US"), stream=JOBS_STREAM, ordered_consumer=True
        )
    await subscriber.violation("publish", "$JS.API.CONSUMER.CREATE.JOBS")
    with pytest.raises(nats.errors.TimeoutError):
        await subscriber.denied.subscribe(
            RESULTS_SUBJECTS, stream=RESULTS_STREAM, ordered_consumer=True
        )
    await subscriber.violation("publish", "$JS.API.CONSUMER.CREATE.RESULTS")
    with pytest.raises(nats.errors.TimeoutError):
        await subscriber.denied.add_consumer(RESULTS_STREAM, ingest_consumer_config())
    await subscriber.violation("publish", "$JS.API.CONSUMER.DURABLE.CREATE.RESULTS.ingest")

    sub = await subscriber.denied.pull_subscribe_bind("ingest", stream=RESULTS_STREAM)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=DENIED_WAIT_S)
    await subscriber.violation("publish", "$JS.API.CONSUMER.MSG.NEXT.RESULTS.ingest")

    with pytest.raises(nats.errors.TimeoutError):  # jobs carry monitor secrets
        await subscriber.denied.get_msg(JOBS_STREAM, seq=1)
    await subscriber.violation("publish", "$JS.API.STREAM.MSG.GET.JOBS")

    for subject in ("mon.>", "mon.jobs.>", "_INBOX.>", "_INBOX_agent_DE.>", "$KV.agents.>"):
        await subscriber.nc.subscribe(subject)
        await subscriber.violation("subscription", subject)


async def test_controller_ingests_and_watches_heartbeats(
    controller: Client, agent_de: Client
) -> None:
    await agent_de.js.publish(results_subject("DE", "pop3", "z"), b'{"v":1}')
    js = controller.js
    sub = await js.pull_subscribe(
        RESULTS_SUBJECTS, durable="ingest", stream=RESULTS_STREAM, config=ingest_consumer_config()
    )
    msgs = await sub.fetch(10, timeout=2)
    assert msgs
    for msg in msgs:
        await msg.ack_sync(timeout=2)
    kv = await agents_bucket(js)
    await kv.put("US.agent-2", b"{}")
    watcher = await kv.watchall(ignore_deletes=True)
    entry = await watcher.updates(timeout=2)  # type: ignore[no-untyped-call]
    assert entry is not None and entry.key.startswith(("DE.", "US."))
    await watcher.stop()  # type: ignore[no-untyped-call]
    ack = await js.publish(events_subject("m-2"), b"{}")
    assert ack.stream == EVENTS_STREAM
    await controller.nc.publish(results_subject("DE", "smtp", "forged"), b"{}")
    await controller.violation("publish", "mon.results.DE.smtp.forged")
    controller.errors.clear()
    assert controller.errors == []
