"""JOBS on the real nats-server: limits retention (a job outlives its ack, by age), what that
asks of the consumers, and a JOBS made as a work queue by an older version, kept as it is."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, RetentionPolicy
from structlog.testing import capture_logs

from shared import embedded
from shared.streams import (
    JOBS_MAX_AGE_S,
    ensure_jobs_consumers,
    ensure_streams,
    jobs_consumer_config,
    jobs_consumer_name,
    stream_configs,
)
from shared.subjects import JOBS_STREAM, jobs_subject
from tests.agent.helpers import job_for, jobs_left, publish_job


@pytest.fixture
async def nc(tmp_path: Path) -> AsyncIterator[NATS]:
    """A server of its own: these tests make JOBS themselves."""
    proc, url = embedded.start_nats(tmp_path / "nats")
    client = await nats.connect(url)
    yield client
    await client.close()
    embedded.stop(proc)


async def _job_ids(msgs: list[Msg]) -> list[str]:
    return [m.headers["Nats-Msg-Id"] for m in msgs if m.headers]


async def test_jobs_are_kept_by_age_and_an_acked_job_is_never_delivered_again(nc: NATS) -> None:
    js = nc.jetstream()
    await ensure_streams(js)
    config = (await js.stream_info(JOBS_STREAM)).config
    assert (config.retention, config.max_age) == (RetentionPolicy.LIMITS, JOBS_MAX_AGE_S)
    await ensure_jobs_consumers(js, ["DE"])
    jobs = [job_for("DE", 10) for _ in range(3)]
    for job in jobs:
        await publish_job(js, job)

    sub = await js.pull_subscribe_bind(jobs_consumer_name("DE"), stream=JOBS_STREAM)
    first = await sub.fetch(2, timeout=2)
    assert await _job_ids(first) == [j.job_id for j in jobs[:2]]
    for msg in first:
        await msg.ack_sync()
    assert await jobs_left(js, "DE") == 1
    # The acked jobs are still stored, and the consumer goes on after them.
    assert (await js.stream_info(JOBS_STREAM)).state.messages == 3
    rest = await sub.fetch(5, timeout=1)
    assert await _job_ids(rest) == [jobs[2].job_id]
    await rest[0].ack_sync()
    assert await jobs_left(js, "DE") == 0
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=0.5)


async def test_a_replaced_consumer_delivers_no_job_the_old_one_delivered(nc: NATS) -> None:
    """A push consumer under jobs-CC's name (say, made by hand) cannot become a pull one in
    place: it is deleted and made anew, from the first job it never delivered. The jobs it
    delivered are being run (or were taken by whoever read them): none runs twice."""
    js = nc.jetstream()
    await ensure_streams(js)
    jobs = [job_for("DE", 10) for _ in range(4)]
    for job in jobs:
        await publish_job(js, job)
    inbox = nc.new_inbox()
    took: asyncio.Queue[Msg] = asyncio.Queue()

    async def taken(msg: Msg) -> None:
        await took.put(msg)

    push = await nc.subscribe(inbox, cb=taken)
    await js.add_consumer(
        JOBS_STREAM,
        ConsumerConfig(
            name=jobs_consumer_name("DE"),
            durable_name=jobs_consumer_name("DE"),
            filter_subject=jobs_subject("DE"),
            deliver_subject=inbox,
            max_ack_pending=2,
        ),
    )
    delivered = [await asyncio.wait_for(took.get(), 5) for _ in range(2)]
    await push.unsubscribe()
    assert await _job_ids(delivered) == [j.job_id for j in jobs[:2]]

    with capture_logs() as logs:
        assert await ensure_jobs_consumers(js, ["DE"]) == 1
    assert [e["consumer"] for e in logs if e["event"] == "jobs_consumer_replaced"] == ["jobs-DE"]
    info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name("DE"))
    assert info.config.deliver_subject is None
    sub = await js.pull_subscribe_bind(jobs_consumer_name("DE"), stream=JOBS_STREAM)
    rest = await sub.fetch(10, timeout=1)
    assert await _job_ids(rest) == [j.job_id for j in jobs[2:]]
    # In place now: a later start writes nothing, and a changed ack wait is an update.
    assert await ensure_jobs_consumers(js, ["DE"]) == 0
    assert await ensure_jobs_consumers(js, ["DE"], ack_wait_s=45) == 1
    info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name("DE"))
    assert (info.config.ack_wait, info.num_ack_pending) == (45, 2)


async def test_a_work_queue_jobs_of_an_older_version_is_kept_and_still_updated(
    nc: NATS,
) -> None:
    """JetStream changes no stream's retention to or from a work queue: the controller keeps
    the one JOBS has, says so, and updates the rest of its config; jobs flow as before."""
    js = nc.jetstream()
    [jobs_config, *_] = stream_configs()
    older = jobs_config.__class__(
        name=JOBS_STREAM,
        subjects=jobs_config.subjects,
        retention=RetentionPolicy.WORK_QUEUE,
        max_age=60,
        duplicate_window=60,
    )
    await js.add_stream(older)
    with capture_logs() as logs:
        await ensure_streams(js)
    [kept] = [e for e in logs if e["event"] == "stream_retention_kept"]
    assert (kept["stream"], kept["retention"], kept["wanted"]) == ("JOBS", "workqueue", "limits")
    config = (await js.stream_info(JOBS_STREAM)).config
    assert config.retention == RetentionPolicy.WORK_QUEUE
    assert (config.max_age, config.duplicate_window) == (
        JOBS_MAX_AGE_S,
        jobs_config.duplicate_window,
    )

    await js.add_consumer(JOBS_STREAM, jobs_consumer_config("DE"))
    job = job_for("DE", 10)
    await publish_job(js, job)
    sub = await js.pull_subscribe_bind(jobs_consumer_name("DE"), stream=JOBS_STREAM)
    [msg] = await sub.fetch(1, timeout=2)
    await msg.ack_sync()
    assert (await js.stream_info(JOBS_STREAM)).state.messages == 0  # a work queue still
