"""The agent's worker against the real NATS server and loopback mail peers, no mocks."""

import asyncio
from importlib.metadata import version
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.probers.tls import SslContexts
from shared import embedded
from shared.messages import CheckResult, bundle_parts, decode_heartbeat, decode_result, encode
from shared.streams import ensure_streams, jobs_consumer_name, stream_configs
from shared.subjects import (
    JOBS_STREAM,
    RESULTS_STREAM,
    heartbeats_subject,
    jobs_subject,
    results_bundle_subject,
    results_country_filter,
    results_subject,
)
from tests.agent.helpers import (
    SmtpLikePeer,
    capture,
    consumer_exists,
    job_for,
    jobs_left,
    publish_job,
    pulling,
    result_count,
    results,
    unacked,
    until,
    until_async,
    worker,
)
from tests.probers.test_run_check import free_port

CHECK_FIELDS = {"job_id", "monitor_id", "country", "agent_id", "type", "status", "error_kind", "ms"}


async def test_burst_runs_each_job_once_publishes_its_result_then_acks(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    async with SmtpLikePeer() as peer:
        up = job_for(country, peer.port)
        refused = job_for(country, free_port())
        for job in (up, refused):
            await publish_job(js, job)
        w = worker(nc, country, ssl_contexts)
        with capture() as logs:
            await w.run(burst=True)

    found = {r.job_id: r for r in await results(js, country)}
    assert set(found) == {up.job_id, refused.job_id}
    ok, down = found[up.job_id], found[refused.job_id]
    assert (ok.status, ok.error_kind, ok.banner) == ("up", None, "peer.test ESMTP")
    assert (down.status, down.error_kind) == ("down", "refused")
    for job, result in ((up, ok), (refused, down)):
        assert (result.monitor_id, result.monitor_type) == (job.monitor_id, "smtp")
        assert (result.country, result.agent_id) == (country, w.agent_id)
        assert result.scheduled_at == job.scheduled_at
        assert result.response_time_ms is not None
    stored = await js.get_msg(
        RESULTS_STREAM, subject=results_subject(country, "smtp", up.monitor_id)
    )
    assert stored.headers is not None and stored.headers["Nats-Msg-Id"] == up.job_id
    assert await jobs_left(js, country) == 0
    assert await unacked(js, country) == (0, 0)

    checks = [e for e in logs if e["event"] == "check"]
    assert sorted(e["job_id"] for e in checks) == sorted([up.job_id, refused.job_id])
    for entry in checks:
        assert entry.keys() >= CHECK_FIELDS
        assert (entry["country"], entry["agent_id"], entry["outcome"]) == (
            country,
            w.agent_id,
            "acked",
        )


async def test_malformed_jobs_are_termed_with_a_log_line_and_work_goes_on(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    bad_subject_job = job_for(country, 25, monitor_id="not.a.token")
    raw = [b"not json at all", b'{"v": 1, "monitorType": "ftp"}', encode(bad_subject_job)]
    async with SmtpLikePeer() as peer:
        for data in raw:
            await js.publish(jobs_subject(country), data)
        good = job_for(country, peer.port)
        await publish_job(js, good)
        with capture() as logs:
            await worker(nc, country, ssl_contexts).run(burst=True)

    malformed = [e for e in logs if e["event"] == "job_malformed"]
    assert sorted(e["size"] for e in malformed) == sorted(len(d) for d in raw)
    assert all(e["error"] and e["log_level"] == "error" for e in malformed)
    assert [r.job_id for r in await results(js, country)] == [good.job_id]
    assert await unacked(js, country) == (0, 0)  # termed: never redelivered


async def test_a_job_for_another_country_on_our_subject_is_termed(
    js: JetStreamContext, nc: NATS, country: str, other_country: str, ssl_contexts: SslContexts
) -> None:
    stray = job_for(other_country, 25)
    await publish_job(js, stray, subject=jobs_subject(country))
    with capture() as logs:
        await worker(nc, country, ssl_contexts).run(burst=True)
    [entry] = [e for e in logs if e["event"] == "job_wrong_country"]
    assert (entry["job_id"], entry["job_country"]) == (stray.job_id, other_country)
    assert await results(js, country) == [] and await results(js, other_country) == []
    assert await unacked(js, country) == (0, 0)


async def test_a_worker_never_takes_another_countrys_jobs(
    js: JetStreamContext, nc: NATS, country: str, other_country: str, ssl_contexts: SslContexts
) -> None:
    theirs = job_for(other_country, 25)
    await publish_job(js, theirs)
    try:
        await worker(nc, country, ssl_contexts).run(burst=True)
        assert await jobs_left(js, other_country) == 1
        assert await results(js, other_country) == [] and await results(js, country) == []
    finally:
        await js.purge_stream(JOBS_STREAM, subject=jobs_subject(other_country))


async def test_two_workers_share_the_work_with_one_result_per_job(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    async with SmtpLikePeer(delay=0.1) as peer:
        jobs = [job_for(country, peer.port) for _ in range(8)]
        for job in jobs:
            await publish_job(js, job)
        a = worker(nc, country, ssl_contexts, concurrency=2)
        b = worker(nc, country, ssl_contexts, concurrency=2)
        await asyncio.gather(a.run(burst=True), b.run(burst=True))

    found = await results(js, country)
    assert sorted(r.job_id for r in found) == sorted(j.job_id for j in jobs)
    assert {r.agent_id for r in found} == {a.agent_id, b.agent_id}
    assert all(r.status == "up" for r in found)
    assert await jobs_left(js, country) == 0


async def test_an_expired_job_is_not_run_and_its_result_says_expired(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    async with SmtpLikePeer() as peer:
        await publish_job(js, job_for(country, peer.port, expires_in=-1))
        await worker(nc, country, ssl_contexts).run(burst=True)
    assert peer.connections == 0
    [result] = await results(js, country)
    assert (result.status, result.error_kind) == ("down", "expired")
    assert await jobs_left(js, country) == 0


async def test_the_concurrency_cap_bounds_checks_in_flight(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    async with SmtpLikePeer(delay=0.1) as peer:
        for _ in range(6):
            await publish_job(js, job_for(country, peer.port))
        w = worker(nc, country, ssl_contexts, concurrency=2)
        seen: set[int] = set()
        run = asyncio.create_task(w.run(burst=True))
        while not run.done():
            seen.add(w.in_flight)
            await asyncio.sleep(0.01)
        await run
    assert max(seen) == 2
    assert len(await results(js, country)) == 6


async def test_heartbeat_goes_out_while_running_and_says_stopping_at_the_end(
    nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    w = worker(nc, country, ssl_contexts, concurrency=7, heartbeat_interval=0.2)
    beats = await nc.subscribe(heartbeats_subject(country, w.agent_id))
    await nc.flush()
    await nc.flush()
    run = asyncio.create_task(w.run())
    try:
        beat = decode_heartbeat((await beats.next_msg(timeout=3)).data)
        assert (beat.agent_id, beat.country, beat.capacity, beat.in_flight) == (
            w.agent_id,
            country,
            7,
            0,
        )
        assert beat.version == version("mailprobe")  # pyproject's, as installed
        assert beat.started_at <= beat.seen_at and not beat.stopping
    finally:
        w.stop()
        await run
    last = beat
    while not last.stopping:
        last = decode_heartbeat((await beats.next_msg(timeout=3)).data)
    with pytest.raises(nats.errors.TimeoutError):  # nothing after the last one
        await beats.next_msg(timeout=0.5)


async def test_stop_lets_in_flight_checks_finish_and_ack(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    async with SmtpLikePeer(delay=0.3) as peer:
        job = job_for(country, peer.port)
        await publish_job(js, job)
        w = worker(nc, country, ssl_contexts)
        run = asyncio.create_task(w.run())
        await until(lambda: w.in_flight == 1)
        w.stop()
        await asyncio.wait_for(run, 3)
    [result] = await results(js, country)
    assert (result.job_id, result.status) == (job.job_id, "up")
    assert await unacked(js, country) == (0, 0)
    assert await jobs_left(js, country) == 0


async def test_a_check_outliving_the_grace_period_is_handed_back_at_once(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """The check would take 60 s (its timeout 30 s): the worker stops after its 0.1 s grace,
    and the job is back for another agent at once, nak'd, not left for the 30 s ack wait."""
    async with SmtpLikePeer(first_delay=60) as peer:
        job = job_for(country, peer.port, timeout=30.0)
        await publish_job(js, job)
        first = worker(nc, country, ssl_contexts, shutdown_grace=0.1)
        run = asyncio.create_task(first.run())
        await until(lambda: first.in_flight == 1)
        first.stop()
        await asyncio.wait_for(run, 20)  # not the check's 30 s
        second = worker(nc, country, ssl_contexts)
        # Without the nak the job would come back after the 30 s ack wait, not within this.
        await asyncio.wait_for(second.run(burst=True), 15)
    [result] = await results(js, country)
    assert (result.agent_id, result.status) == (second.agent_id, "up")
    assert await jobs_left(js, country) == 0


async def test_a_worker_killed_mid_check_leaves_the_job_to_another_after_ack_wait(
    js: JetStreamContext, nc: NATS, nats_url: str, country: str, ssl_contexts: SslContexts
) -> None:
    doomed_conn = await nats.connect(nats_url)
    async with SmtpLikePeer(first_delay=10) as peer:
        job = job_for(country, peer.port, timeout=5.0)
        await publish_job(js, job)
        doomed = worker(doomed_conn, country, ssl_contexts, ack_wait=1.0)
        run = asyncio.create_task(doomed.run())
        await until(lambda: doomed.in_flight == 1)
        run.cancel()  # the process dies: no result, no ack, no nak
        with pytest.raises(asyncio.CancelledError):
            await run
        await doomed_conn.close()
        assert await results(js, country) == []

        survivor = worker(nc, country, ssl_contexts, ack_wait=1.0)
        with capture() as logs:
            # ack_wait (1 s) plus the check; generous for a loaded machine
            await asyncio.wait_for(survivor.run(burst=True), 10)
    [result] = await results(js, country)
    assert (result.job_id, result.agent_id, result.status) == (job.job_id, survivor.agent_id, "up")
    [check] = [e for e in logs if e["event"] == "check"]
    assert check["attempt"] == 2
    assert await jobs_left(js, country) == 0


async def test_stop_before_run_returns_at_once(
    nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    w = worker(nc, country, ssl_contexts)
    w.stop()
    await asyncio.wait_for(w.run(), 1)


def test_a_bad_country_is_refused(nc: NATS, ssl_contexts: SslContexts) -> None:
    with pytest.raises(ValueError, match="alpha-2"):
        worker(nc, "de", ssl_contexts)


async def test_a_deleted_consumer_is_recreated_and_work_goes_on(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    w = worker(nc, country, ssl_contexts, retry_delay=0.05)
    run = asyncio.create_task(w.run())
    try:
        await until_async(lambda: consumer_exists(js, country))
        await js.delete_consumer(JOBS_STREAM, jobs_consumer_name(country))
        async with SmtpLikePeer() as peer:
            job = job_for(country, peer.port)
            await publish_job(js, job)
            await until_async(lambda: result_count(js, country, 1))
    finally:
        w.stop()
        await run
    assert [r.job_id for r in await results(js, country)] == [job.job_id]


async def test_a_result_that_cannot_be_stored_is_nakd_and_redone_later(
    bare_nats: str, ssl_contexts: SslContexts
) -> None:
    nc = await nats.connect(bare_nats)
    js = nc.jetstream()
    try:
        await js.add_stream(stream_configs()[0])  # JOBS only: RESULTS is not there yet
        async with SmtpLikePeer() as peer:
            job = job_for("FR", peer.port)
            await publish_job(js, job)
            w = worker(nc, "FR", ssl_contexts, nak_delay=0.3, publish_timeout=0.5)
            with capture() as logs:
                run = asyncio.create_task(w.run())
                try:
                    await until(lambda: any(e["event"] == "check" for e in logs))
                    await ensure_streams(js)
                    await until_async(lambda: result_count(js, "FR", 1))
                finally:
                    w.stop()
                    await run
        checks = [(e["attempt"], e["outcome"]) for e in logs if e["event"] == "check"]
        assert checks == [(1, "nak"), (2, "acked")]
        [failure] = [e for e in logs if e["event"] == "result_publish_failed"]
        assert failure["job_id"] == job.job_id
        assert await jobs_left(js, "FR") == 0
    finally:
        await nc.close()


async def test_fetch_failures_back_off_exponentially_and_a_success_resets_the_wait(
    bare_nats: str, ssl_contexts: SslContexts
) -> None:
    nc = await nats.connect(bare_nats)
    js = nc.jetstream()
    w = worker(nc, "FR", ssl_contexts, retry_delay=0.05, retry_delay_max=0.4)
    try:
        await ensure_streams(js)
        with capture() as logs:

            def failures() -> list[float]:
                return [e["retry_in_s"] for e in logs if e["event"] == "fetch_failed"]

            run = asyncio.create_task(w.run())
            try:
                await until(lambda: w.readiness() is None)
                await js.delete_stream(JOBS_STREAM)  # every fetch fails until it is back
                await until(lambda: len(failures()) >= 6, within=5)
                await ensure_streams(js)
                async with SmtpLikePeer() as peer:
                    await publish_job(js, job_for("FR", peer.port))
                    await until_async(lambda: result_count(js, "FR", 1))
                count = len(failures())
                await js.delete_consumer(JOBS_STREAM, jobs_consumer_name("FR"))
                await until(lambda: len(failures()) > count)
            finally:
                w.stop()
                await run
        waits = failures()
        for k, wait in enumerate(waits[:6]):
            step = min(0.4, 0.05 * 2**k)
            assert step / 2 - 0.001 <= wait <= step + 0.001, (k, waits)
        assert waits[count] <= 0.05  # the fetch that worked in between reset it
    finally:
        await nc.close()


async def test_an_agent_whose_connection_closed_for_good_stops(
    nats_url: str, streams: None, country: str, ssl_contexts: SslContexts
) -> None:
    """nats-py closes a connection for good once it gives up reconnecting (or its owner closes
    it): the agent stops instead of waiting on it for ever."""
    conn = await nats.connect(nats_url)
    agent = worker(conn, country, ssl_contexts, fetch_timeout=0.5)
    with capture() as logs:
        running = asyncio.create_task(agent.run())
        await pulling(conn.jetstream(), country)  # bound, its request open
        await conn.close()
        await asyncio.wait_for(running, 10)
    assert any(line["event"] == "nats_connection_closed" for line in logs)


async def test_results_of_jobs_that_allow_it_go_in_bundles_the_others_alone(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """A job says `resultBundles` (the controller's RESULT_BUNDLES): results of such jobs that
    finish together are published as a JSON array on `mon.results.CC.bundle`; a job without
    it (an older controller's) gets its result alone on its own subject. Every job's result
    once, every job acked after it."""
    async with SmtpLikePeer() as peer:
        bundled = [job_for(country, peer.port, result_bundles=True) for _ in range(6)]
        alone = [job_for(country, peer.port) for _ in range(2)]
        for job in bundled + alone:
            await publish_job(js, job)
        w = worker(nc, country, ssl_contexts)
        await w.run(burst=True)

    sub = await js.pull_subscribe(results_country_filter(country), stream=RESULTS_STREAM)
    msgs = await sub.fetch(len(bundled) + len(alone), timeout=2)
    await sub.unsubscribe()
    singles: list[CheckResult] = []
    in_bundles: list[CheckResult] = []
    for msg in msgs:
        if (parts := bundle_parts(msg.data)) is None:
            singles.append(one := decode_result(msg.data))
            assert msg.subject == results_subject(country, "smtp", one.monitor_id)
        else:
            assert msg.subject == results_bundle_subject(country)
            in_bundles += [decode_result(part) for part in parts]
    assert len(msgs) < len(bundled) + len(alone)  # some went together
    assert {r.job_id for r in singles} >= {job.job_id for job in alone}
    assert sorted(r.job_id for r in singles + in_bundles) == sorted(
        job.job_id for job in bundled + alone
    )
    assert {r.job_id for r in in_bundles} <= {job.job_id for job in bundled}
    assert {(r.status, r.agent_id) for r in singles + in_bundles} == {("up", w.agent_id)}
    assert await unacked(js, country) == (0, 0)


async def test_bundles_stay_within_half_the_servers_max_payload(
    tmp_path: Path, country: str, ssl_contexts: SslContexts
) -> None:
    """A server that takes messages of at most 8 KiB (`max_payload`): the results of twenty
    jobs that allow bundles go in bundles of at most 4 KiB, and every one is stored."""
    config = tmp_path / "nats.conf"
    config.write_text("max_payload: 8192\n")
    proc, url = embedded.start_nats(tmp_path / "nats", config=config)
    conn = await nats.connect(url)
    try:
        js = conn.jetstream()
        await ensure_streams(js)
        async with SmtpLikePeer() as peer:
            jobs = [job_for(country, peer.port, result_bundles=True) for _ in range(20)]
            for job in jobs:
                await publish_job(js, job)
            await worker(conn, country, ssl_contexts).run(burst=True)
        sub = await js.pull_subscribe(results_country_filter(country), stream=RESULTS_STREAM)
        msgs = await sub.fetch(len(jobs), timeout=2)
        found = [
            decode_result(part) for msg in msgs for part in bundle_parts(msg.data) or [msg.data]
        ]
        assert sorted(r.job_id for r in found) == sorted(job.job_id for job in jobs)
        assert sum(len(m.data) for m in msgs) > 8192  # more than one message could carry
        assert all(len(m.data) <= 4096 for m in msgs) and len(msgs) < len(jobs)
        assert await unacked(js, country) == (0, 0)
    finally:
        await conn.close()
        embedded.stop(proc)
