"""The NATS accounts and users of deploy/nats against a real nats-server started with hub.conf.

Nobody gets in without TLS and a password. A DE agent can do its own work (look up and pull
jobs-DE, ack, publish DE results with a JetStream ack, heartbeat to the controllers) and
nothing of another country's; the subscriber can read RESULTS and EVENTS, live and history,
and publish nothing; the controller runs the pipeline and hears every country's heartbeats.
"""

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import nats.errors
import pytest
from nats.js.errors import NotFoundError

from deploy.nats_conf import (
    CONTROLLER_USER,
    IMPORTED_API,
    SUBSCRIBER_INBOX_PREFIX,
    SUBSCRIBER_USER,
    agent_user,
)
from shared.streams import (
    ensure_jobs_consumers,
    ensure_streams,
    ingest_consumer_config,
    jobs_consumer_config,
    jobs_consumer_name,
)
from shared.subjects import (
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    HEARTBEATS_SUBJECTS,
    JOBS_STREAM,
    RESULTS_STREAM,
    RESULTS_SUBJECTS,
    events_subject,
    heartbeats_subject,
    jobs_subject,
    results_bundle_subject,
    results_subject,
)
from tests.deploy.natsdeploy import (
    DENIED_WAIT_S,
    Client,
    Deployment,
    agent,
    connect,
    make_pki,
    mint,
    raw_login,
    registered,
    start_hub,
)

COUNTRIES = ("DE", "US")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The hub with an agents.conf holding the controller, the subscriber and two countries."""
    folder = tmp_path_factory.mktemp("nats-hub")
    passwords, users = mint(
        [CONTROLLER_USER, SUBSCRIBER_USER, *(agent_user(cc) for cc in COUNTRIES)]
    )
    pki = make_pki(folder / "tls")
    found = Deployment(pki, start_hub(folder, users, pki), passwords, users)
    yield found
    found.stop()


@pytest.fixture(scope="module")
async def controller(deployment: Deployment) -> AsyncIterator[Client]:
    """The controller, with the streams and both countries' job consumers in place."""
    client = await connect(deployment.hub, deployment, CONTROLLER_USER)
    await ensure_streams(client.js)
    await ensure_jobs_consumers(client.js, COUNTRIES)
    yield client
    assert client.errors == []
    await client.close()


@pytest.fixture
async def agent_de(deployment: Deployment) -> AsyncIterator[Client]:
    client = await agent(deployment.hub, deployment, "DE")
    yield client
    await client.close()


@pytest.fixture
async def subscriber(deployment: Deployment) -> AsyncIterator[Client]:
    client = await connect(deployment.hub, deployment, SUBSCRIBER_USER, SUBSCRIBER_INBOX_PREFIX)
    yield client
    await client.close()


async def publish_job(controller: Client, cc: str, job_id: str) -> None:
    body = json.dumps({"v": 1, "jobId": job_id, "country": cc}).encode()
    ack = await controller.js.publish(jobs_subject(cc), body, headers={"Nats-Msg-Id": job_id})
    assert ack.stream == JOBS_STREAM


async def pending_jobs(controller: Client, cc: str) -> int:
    info = await controller.js.consumer_info(JOBS_STREAM, jobs_consumer_name(cc))
    return (info.num_pending or 0) + (info.num_ack_pending or 0)


async def test_nobody_gets_in_without_tls_and_the_password(deployment: Deployment) -> None:
    """At the protocol level (a refused nats-py connect leaves its socket open)."""
    tls = deployment.pki.client()
    password = deployment.passwords[agent_user("DE")]
    good = {"user": agent_user("DE"), "pass": password}
    assert await raw_login(deployment.hub, tls, good) == b"PONG\r\n"
    for login in ({}, {"user": agent_user("DE"), "pass": "wrong"}):
        assert b"Authorization Violation" in await raw_login(deployment.hub, tls, login)
    # The right password in clear text never reaches a login: the server wants TLS first.
    assert b"PONG" not in await raw_login(deployment.hub, None, good)


async def test_de_agent_does_its_own_work(controller: Client, agent_de: Client) -> None:
    await publish_job(controller, "DE", "job-de-1")
    beats = await controller.nc.subscribe(HEARTBEATS_SUBJECTS)
    await registered(controller.nc)
    js = agent_de.js
    # What agent.worker does at start: look up its durable (the controller made it), bind, fetch.
    info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name("DE"))
    assert info.config.filter_subject == "mon.jobs.DE"
    sub = await js.pull_subscribe_bind(jobs_consumer_name("DE"), stream=JOBS_STREAM)
    [msg] = await sub.fetch(1, timeout=2)
    assert json.loads(msg.data)["jobId"] == "job-de-1"

    ack = await js.publish(
        results_subject("DE", "smtp", "x"), b'{"v":1}', headers={"Nats-Msg-Id": "job-de-1"}
    )
    assert ack.stream == RESULTS_STREAM
    await msg.ack_sync(timeout=2)
    assert await pending_jobs(controller, "DE") == 0

    await agent_de.nc.publish(heartbeats_subject("DE", "agent-1"), b'{"agentId":"agent-1"}')
    beat = await beats.next_msg(timeout=5)
    assert (beat.subject, beat.data) == ("mon.heartbeats.DE.agent-1", b'{"agentId":"agent-1"}')
    await beats.unsubscribe()
    assert agent_de.errors == []


async def test_de_agent_cannot_read_us_jobs(controller: Client, agent_de: Client) -> None:
    await publish_job(controller, "US", "job-us-1")
    js = agent_de.denied
    # The agent's `$JS.API.…` requests are mapped to the imported API of its account
    # (deploy/nats_conf.py); the server names the mapped subject.
    sub = await js.pull_subscribe_bind(jobs_consumer_name("US"), stream=JOBS_STREAM)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=DENIED_WAIT_S)
    await agent_de.violation("publish", f"{IMPORTED_API}.CONSUMER.MSG.NEXT.JOBS.jobs-US")

    with pytest.raises(nats.errors.TimeoutError):
        await js.consumer_info(JOBS_STREAM, jobs_consumer_name("US"))
    await agent_de.violation("publish", f"{IMPORTED_API}.CONSUMER.INFO.JOBS.jobs-US")

    us = jobs_consumer_config("US", ack_wait_s=30)
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(JOBS_STREAM, us)
    await agent_de.violation("publish", f"{IMPORTED_API}.CONSUMER.CREATE.JOBS.jobs-US.mon.jobs.US")

    # Nor its own consumer, in any form: a consumer's config decides where its jobs go.
    for verb in (
        "CONSUMER.CREATE.JOBS.jobs-DE.mon.jobs.DE",
        "CONSUMER.DURABLE.CREATE.JOBS.jobs-DE",
    ):
        request = {"stream_name": JOBS_STREAM, "config": {"durable_name": "jobs-DE"}}
        await agent_de.nc.publish(f"$JS.API.{verb}", json.dumps(request).encode())
        await agent_de.violation("publish", f"{IMPORTED_API}.{verb}")
    info = await controller.js.consumer_info(JOBS_STREAM, "jobs-DE")
    assert info.config.filter_subject == "mon.jobs.DE"

    # No way around the consumer: no message get on JOBS, no core subscription to jobs or to
    # other inboxes.
    with pytest.raises(nats.errors.TimeoutError):
        await js.get_msg(JOBS_STREAM, seq=1)
    await agent_de.violation("publish", f"{IMPORTED_API}.STREAM.MSG.GET.JOBS")
    for subject in ("mon.jobs.US", "mon.jobs.>", "_INBOX.>", "_INBOX_agent_US.>"):
        await agent_de.nc.subscribe(subject)
        await agent_de.violation("subscription", subject)
    assert await pending_jobs(controller, "US") == 1


async def test_de_agent_cannot_publish_for_others(controller: Client, agent_de: Client) -> None:
    js = agent_de.denied
    with pytest.raises(nats.errors.TimeoutError):
        await js.publish(results_subject("US", "smtp", "x"), b'{"v":1}')
    await agent_de.violation("publish", "mon.results.US.smtp.x")
    with pytest.raises(nats.errors.TimeoutError):
        await js.publish(results_bundle_subject("US"), b'[{"v":1}]')
    await agent_de.violation("publish", "mon.results.US.bundle")

    for subject in (
        "mon.jobs.DE",
        "mon.events.x",
        heartbeats_subject("US", "a"),
        "live.results.DE.smtp.x",
        "_INBOX_agent_DE.other",  # another DE agent's replies
    ):
        await agent_de.nc.publish(subject, b"{}")
        await agent_de.violation("publish", subject)
    await agent_de.nc.publish("$JS.API.STREAM.DELETE.RESULTS", b"")
    await agent_de.violation("publish", f"{IMPORTED_API}.STREAM.DELETE.RESULTS")

    with pytest.raises(NotFoundError):  # nothing under the subject it was refused
        await controller.js.get_last_msg(RESULTS_STREAM, "mon.results.US.smtp.x")
    assert (await controller.js.stream_info(RESULTS_STREAM)).config.name == RESULTS_STREAM


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
    deployment: Deployment, controller: Client, subscriber: Client
) -> None:
    us = await agent(deployment.hub, deployment, "US")
    await us.js.publish(results_subject("US", "imap", "y"), b'{"v":1}')
    await controller.js.publish(events_subject("m-1"), b'{"v":1,"kind":"down"}')

    # History: stream info and message get.
    assert (await subscriber.js.stream_info(RESULTS_STREAM)).state.messages >= 1
    assert "mon.results.US.imap.y" in await stream_subjects(
        subscriber, RESULTS_STREAM, RESULTS_SUBJECTS
    )
    assert "mon.events.m-1" in await stream_subjects(subscriber, EVENTS_STREAM, EVENTS_SUBJECTS)
    # Read by its own subject: other tests of the module store US results on RESULTS too.
    last = await subscriber.js.get_last_msg(RESULTS_STREAM, "mon.results.US.imap.y")
    assert (last.subject, last.data) == ("mon.results.US.imap.y", b'{"v":1}')

    await us.close()
    assert subscriber.errors == []
    assert us.errors == []


async def test_subscriber_receives_live_results_and_events(
    deployment: Deployment, controller: Client, subscriber: Client
) -> None:
    """Under the streams' subjects, once per stored result (RESULTS republishes what it
    stored): a repeat of a job's result the stream dropped as a duplicate does not come."""
    us = await agent(deployment.hub, deployment, "US")
    live_results = await subscriber.nc.subscribe(RESULTS_SUBJECTS)
    live_events = await subscriber.nc.subscribe(EVENTS_SUBJECTS)
    await registered(subscriber.nc)
    await controller.js.publish(events_subject("m-3"), b'{"v":1,"kind":"up"}')
    for _ in range(2):
        await us.js.publish(
            results_subject("US", "pop3", "w"), b'{"v":1}', headers={"Nats-Msg-Id": "job-w"}
        )
    assert (await live_events.next_msg(timeout=5)).subject == "mon.events.m-3"
    live = await live_results.next_msg(timeout=5)
    assert (live.subject, live.data) == ("mon.results.US.pop3.w", b'{"v":1}')
    with pytest.raises(nats.errors.TimeoutError):
        await live_results.next_msg(timeout=DENIED_WAIT_S)
    # A bundle of results (RESULT_BUNDLES): stored, and comes as it is, once.
    for _ in range(2):
        await us.js.publish(
            results_bundle_subject("US"), b'[{"v":1},{"v":1}]', headers={"Nats-Msg-Id": "b-1"}
        )
    live = await live_results.next_msg(timeout=5)
    assert (live.subject, live.data) == ("mon.results.US.bundle", b'[{"v":1},{"v":1}]')
    with pytest.raises(nats.errors.TimeoutError):
        await live_results.next_msg(timeout=DENIED_WAIT_S)
    await us.close()
    assert subscriber.errors == []


async def test_subscriber_cannot_publish_or_take(controller: Client, subscriber: Client) -> None:
    for subject in (
        "mon.results.DE.smtp.x",
        "mon.events.x",
        "mon.jobs.DE",
        heartbeats_subject("DE", "a"),
    ):
        await subscriber.nc.publish(subject, b"{}")
        await subscriber.violation("publish", subject)

    # No consumers at all: not on JOBS, and not even an ephemeral one on RESULTS, since the
    # ephemeral create subject updates an existing consumer named in the body (`ingest`).
    with pytest.raises(nats.errors.TimeoutError):
        await subscriber.denied.subscribe(
            jobs_subject("US"), stream=JOBS_STREAM, ordered_consumer=True
        )
    await subscriber.violation("publish", f"{IMPORTED_API}.CONSUMER.CREATE.JOBS")
    with pytest.raises(nats.errors.TimeoutError):
        await subscriber.denied.subscribe(
            RESULTS_SUBJECTS, stream=RESULTS_STREAM, ordered_consumer=True
        )
    await subscriber.violation("publish", f"{IMPORTED_API}.CONSUMER.CREATE.RESULTS")
    with pytest.raises(nats.errors.TimeoutError):
        await subscriber.denied.add_consumer(RESULTS_STREAM, ingest_consumer_config())
    await subscriber.violation("publish", f"{IMPORTED_API}.CONSUMER.DURABLE.CREATE.RESULTS.ingest")

    sub = await subscriber.denied.pull_subscribe_bind("ingest", stream=RESULTS_STREAM)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=DENIED_WAIT_S)
    await subscriber.violation("publish", f"{IMPORTED_API}.CONSUMER.MSG.NEXT.RESULTS.ingest")

    with pytest.raises(nats.errors.TimeoutError):  # jobs carry monitor secrets
        await subscriber.denied.get_msg(JOBS_STREAM, seq=1)
    await subscriber.violation("publish", f"{IMPORTED_API}.STREAM.MSG.GET.JOBS")

    for subject in ("mon.>", "mon.jobs.>", "_INBOX.>", "_INBOX_agent_DE.>", "mon.heartbeats.>"):
        await subscriber.nc.subscribe(subject)
        await subscriber.violation("subscription", subject)


async def test_controller_ingests_and_hears_every_countrys_heartbeats(
    deployment: Deployment, controller: Client, agent_de: Client
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
    beats = await controller.nc.subscribe(HEARTBEATS_SUBJECTS)
    await registered(controller.nc)
    us = await agent(deployment.hub, deployment, "US")
    for client, cc in ((agent_de, "DE"), (us, "US")):
        await client.nc.publish(heartbeats_subject(cc, f"{cc}-1"), b"{}")
        assert (await beats.next_msg(timeout=5)).subject == f"mon.heartbeats.{cc}.{cc}-1"
    await us.close()
    ack = await js.publish(events_subject("m-2"), b"{}")
    assert ack.stream == EVENTS_STREAM
    for subject in (results_subject("DE", "smtp", "forged"), "live.results.DE.smtp.forged"):
        await controller.nc.publish(subject, b"{}")
        await controller.violation("publish", subject)
    controller.errors.clear()


def test_monitoring_answers_on_loopback_only_and_clients_and_leaves_need_tls(
    deployment: Deployment,
) -> None:
    """What the running hub made of hub.conf: /varz (no login, every connection listed) on
    127.0.0.1 only, TLS required on the client and the leaf-node ports."""
    varz = httpx.get(f"{deployment.hub.monitor}/varz", timeout=5).json()
    assert (varz["http_host"], varz["tls_required"]) == ("127.0.0.1", True)
    assert varz["leaf"]["tls_required"] is True
