"""Bundles (controller.scheduling.bundles): one JOBS message carrying several jobs, each run and
settled on its own, the message settled once for them all (agent.bundles).

Against the real NATS server and loopback peers: what the consumer holds, redelivers or
forgets is the server's word, not the agent's."""

import asyncio

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agent.bundles import Part, jobs_of
from agent.probers.tls import SslContexts
from agent.selfcheck import SelfChecks
from agent.selfcheck_rules import HAND_OVER_TRIES
from shared.clock import WALL
from shared.messages import CheckJob, encode, encode_bundle
from shared.streams import jobs_consumer_config, jobs_consumer_name
from shared.subjects import JOBS_STREAM, jobs_subject
from tests.agent.helpers import (
    SmtpLikePeer,
    capture,
    job_for,
    jobs_left,
    result_count,
    results,
    unacked,
    until,
    until_async,
    worker,
)


async def publish_bundle(
    js: JetStreamContext, jobs: list[CheckJob], data: bytes | None = None
) -> None:
    """As the scheduler does (bundles.outgoing): one message on `mon.jobs.CC`."""
    await js.publish(
        jobs_subject(jobs[0].country),
        encode_bundle([encode(job) for job in jobs]) if data is None else data,
        headers={"Nats-Msg-Id": f"{jobs[0].job_id}+{len(jobs)}"},
    )


async def test_every_job_of_a_bundle_is_run_and_the_bundle_is_acked_once(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    async with SmtpLikePeer() as peer:
        jobs = [job_for(country, peer.port) for _ in range(7)]
        await publish_bundle(js, jobs)
        with capture() as logs:
            await asyncio.wait_for(worker(nc, country, ssl_contexts).run(burst=True), 10)
    found = await results(js, country)
    assert sorted(r.job_id for r in found) == sorted(j.job_id for j in jobs)
    assert {r.status for r in found} == {"up"}
    assert peer.connections == 7
    assert [e["outcome"] for e in logs if e["event"] == "check"] == ["acked"] * 7
    assert await unacked(js, country) == (0, 0)
    assert await jobs_left(js, country) == 0


async def test_a_bad_job_in_a_bundle_is_termed_alone_and_the_others_run(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    async with SmtpLikePeer() as peer:
        good = [job_for(country, peer.port) for _ in range(2)]
        data = encode_bundle([encode(good[0]), b'{"monitorType": "fax"}', encode(good[1])])
        await publish_bundle(js, good, data)
        with capture() as logs:
            await asyncio.wait_for(worker(nc, country, ssl_contexts).run(burst=True), 10)
    assert sorted(r.job_id for r in await results(js, country)) == sorted(j.job_id for j in good)
    assert [e["event"] for e in logs if e["event"] == "job_malformed"] == ["job_malformed"]
    assert await unacked(js, country) == (0, 0)  # acked: none of it comes back


async def test_a_message_that_is_not_a_json_array_of_jobs_is_termed_with_a_log_line(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    for data in (b"[", b"[]", b"[1, 2"):
        await publish_bundle(js, [job_for(country, 25)], data)
    with capture() as logs:
        await asyncio.wait_for(worker(nc, country, ssl_contexts).run(burst=True), 10)
    assert len([e for e in logs if e["event"] == "job_malformed"]) == 3
    assert await results(js, country) == []
    assert await unacked(js, country) == (0, 0)


async def _one_bundle(js: JetStreamContext, country: str, size: int) -> list[Part]:
    """The parts of a bundle of `size` jobs, fetched as an agent of `country` would."""
    await js.add_consumer(JOBS_STREAM, jobs_consumer_config(country, ack_wait_s=2.0))
    await publish_bundle(js, [job_for(country, 25) for _ in range(size)])
    sub = await js.pull_subscribe_bind(jobs_consumer_name(country), stream=JOBS_STREAM)
    [msg] = await sub.fetch(1, timeout=2)
    parts = jobs_of(msg, clock=WALL)
    assert all(isinstance(p, Part) for p in parts) and len(parts) == size
    return [p for p in parts if isinstance(p, Part)]


async def test_a_bundle_is_settled_only_when_its_last_job_is(
    js: JetStreamContext, country: str
) -> None:
    parts = await _one_bundle(js, country, 3)
    await parts[0].ack()
    await parts[1].term()
    await parts[1].ack()  # settling twice counts once
    assert await unacked(js, country) == (0, 1)
    await parts[2].ack()
    await until_async(lambda: _settled(js, country))


async def test_a_bundle_with_a_job_handed_back_comes_back_whole_once_all_are_settled(
    js: JetStreamContext, country: str
) -> None:
    parts = await _one_bundle(js, country, 3)
    await parts[0].nak()
    await parts[1].ack()
    sub = await js.pull_subscribe_bind(jobs_consumer_name(country), stream=JOBS_STREAM)
    assert await _fetched(sub, 0.5) == []  # not yet: a job of it is still running
    await parts[2].ack()
    [again] = await _fetched(sub, 2)
    assert again.metadata.num_delivered == 2 and len(jobs_of(again, clock=WALL)) == 3


async def test_a_bundle_whose_every_job_was_termed_is_termed(
    js: JetStreamContext, country: str
) -> None:
    parts = await _one_bundle(js, country, 2)
    for part in parts:
        await part.term()
    await until_async(lambda: _settled(js, country))
    sub = await js.pull_subscribe_bind(jobs_consumer_name(country), stream=JOBS_STREAM)
    assert await _fetched(sub, 2.5) == []  # past ack_wait: never redelivered


async def test_a_bundle_held_in_progress_is_not_redelivered_past_its_ack_wait(
    js: JetStreamContext, country: str
) -> None:
    parts = await _one_bundle(js, country, 2)
    sub = await js.pull_subscribe_bind(jobs_consumer_name(country), stream=JOBS_STREAM)
    for _ in range(3):  # 3.6 s, past the 2 s ack_wait
        await asyncio.sleep(1.2)
        for part in parts:
            await part.in_progress()
    assert await _fetched(sub, 0.1) == []
    for part in parts:
        await part.ack()
    await until_async(lambda: _settled(js, country))


async def test_a_bundle_with_a_job_for_a_blocked_port_goes_back_whole_before_any_job_runs(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """The blocked agent runs none of the bundle (its other jobs need not run twice) and hands
    it back whole; the healthy agent runs all of it."""
    async with SmtpLikePeer() as blocked_peer, SmtpLikePeer() as other_peer:
        checks = SelfChecks(
            country, [("127.0.0.2", blocked_peer.port)], None, timeout=1.0, clock=WALL
        )
        blocked = worker(nc, country, ssl_contexts, self_checks=checks)
        healthy = worker(nc, country, ssl_contexts)
        jobs = [job_for(country, other_peer.port) for _ in range(3)]
        jobs.append(job_for(country, blocked_peer.port))
        with capture() as logs:
            first = asyncio.create_task(blocked.run())
            try:
                await until(lambda: checks.blocked == [blocked_peer.port], within=5)
                await publish_bundle(js, jobs)
                await until(lambda: any(e["event"] == "bundle_handed_back" for e in logs))
            finally:
                blocked.stop()
                await first
            second = asyncio.create_task(healthy.run())
            try:
                await until_async(lambda: result_count(js, country, 4), within=15)
            finally:
                healthy.stop()
                await second
    found = await results(js, country)
    assert sorted(r.job_id for r in found) == sorted(j.job_id for j in jobs)
    assert {r.agent_id for r in found} == {healthy.agent_id}
    assert other_peer.connections == 3 and blocked_peer.connections == 1
    handed = [e for e in logs if e["event"] == "bundle_handed_back"]
    assert all(e["agent_id"] == blocked.agent_id for e in handed)
    assert all(sorted(e["job_ids"]) == sorted(j.job_id for j in jobs) for e in handed)
    assert all(e["blocked_ports"] == [blocked_peer.port] for e in handed)
    assert len(handed) < HAND_OVER_TRIES
    assert await jobs_left(js, country) == 0


async def _settled(js: JetStreamContext, country: str) -> bool:
    return await unacked(js, country) == (0, 0)


async def _fetched(sub: JetStreamContext.PullSubscription, within: float) -> list[Msg]:
    try:
        return list(await sub.fetch(1, timeout=within))
    except TimeoutError:
        return []
