"""shared.publishing on the real nats-server: a batch is stored whole, in order, with a reply
per flow window instead of a PubAck per message; ids dedupe inside a batch; a stream without
`allow_batched` says so before anything is stored, and the scheduler then publishes one by one;
the agents' outbox gathers results into batches and tells each caller its own outcome."""

import asyncio
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StreamConfig
from structlog.testing import capture_logs

from controller.fleet.live import LiveAgents
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.settings import ControllerSettings
from shared import embedded
from shared.clock import WALL
from shared.publishing import (
    FLOW,
    OUTSTANDING,
    RETRY_BATCHES_S,
    BatchesUnsupported,
    Outbox,
    Outgoing,
    Publisher,
    publish_batch,
    takes_batches,
)
from shared.streams import stream_configs
from shared.subjects import JOBS_STREAM, jobs_subject
from testkit.scheduling import wired_scheduler
from tests.agent.helpers import job_for


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


async def _stream(js: JetStreamContext, *, batched: bool) -> str:
    name = f"FB{uuid.uuid4().hex[:8].upper()}"
    await js.add_stream(
        StreamConfig(
            name=name,
            subjects=[f"{name.lower()}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=300,
            allow_batched=batched or None,
        )
    )
    return name


async def _stored(js: JetStreamContext, name: str) -> list[tuple[str, bytes, str]]:
    info = await js.stream_info(name)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(name, seq)
        out.append((msg.subject or "", msg.data or b"", (msg.headers or {})["Nats-Msg-Id"]))
    return out


def _messages(name: str, n: int, tag: str = "m") -> list[Outgoing]:
    return [
        Outgoing(f"{name.lower()}.{i % 3}", f"{tag}{i}".encode(), f"{tag}-{i}") for i in range(n)
    ]


async def _watch_replies(nats_url: str) -> tuple[NATS, list[str]]:
    """Every reply the server sends to a batch's inbox (a second client sees them too)."""
    seen: list[str] = []

    async def cb(msg: Msg) -> None:
        if msg.subject.endswith(".$FI"):
            seen.append(msg.subject)

    watcher = await nats.connect(nats_url)
    await watcher.subscribe("_INBOX.>", cb=cb)
    await watcher.flush()
    return watcher, seen


async def test_the_server_of_this_product_takes_batches(js: JetStreamContext) -> None:
    assert takes_batches(js)


async def test_a_batch_is_stored_whole_in_order_with_a_reply_per_flow_window(
    js: JetStreamContext, nats_url: str
) -> None:
    name = await _stream(js, batched=True)
    n = FLOW * OUTSTANDING * 3 + 7  # publishing has to wait for flow acks on the way
    watcher, replies = await _watch_replies(nats_url)
    sent = _messages(name, n)
    last = await publish_batch(js, sent, timeout_s=10)
    await watcher.flush()
    await watcher.close()
    stored = await _stored(js, name)
    assert stored == [(m.subject, m.payload, m.msg_id) for m in sent]
    assert last == (await js.stream_info(name)).state.last_seq
    # The start's reply, one per flow window, the commit's PubAck: not one per message.
    assert 2 <= len(replies) <= n // FLOW + 3, len(replies)


async def test_ids_already_stored_are_dropped_inside_a_batch_and_still_counted(
    js: JetStreamContext,
) -> None:
    name = await _stream(js, batched=True)
    first = _messages(name, 5)
    await publish_batch(js, first, timeout_s=10)
    again = first[2:] + _messages(name, 3, tag="new")  # a claim published again, and more
    await publish_batch(js, again, timeout_s=10)
    ids = [m_id for _, _, m_id in await _stored(js, name)]
    assert ids == [m.msg_id for m in first] + ["new-0", "new-1", "new-2"]


async def test_a_single_message_is_a_batch_that_commits_at_once(js: JetStreamContext) -> None:
    name = await _stream(js, batched=True)
    [one] = _messages(name, 1)
    seq = await publish_batch(js, [one], timeout_s=10)
    assert await _stored(js, name) == [(one.subject, one.payload, one.msg_id)]
    assert seq == 1


@pytest.mark.parametrize("n", [1, 4])
async def test_a_stream_without_batches_refuses_before_storing_anything(
    js: JetStreamContext, n: int
) -> None:
    name = await _stream(js, batched=False)
    with pytest.raises(BatchesUnsupported, match="disabled"):
        await publish_batch(js, _messages(name, n), timeout_s=10)
    assert (await js.stream_info(name)).state.messages == 0


async def test_the_scheduler_publishes_one_by_one_when_jobs_takes_no_batches(
    tmp_path: Path, pipe_pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """A JOBS stream an older controller wrote (no `allow_batched`): every job still lands,
    once, and the scheduler stops trying batches."""
    proc, url = embedded.start_nats(tmp_path / "nats")
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        [jobs_config] = [c for c in stream_configs() if c.name == JOBS_STREAM]
        assert not jobs_config.allow_batched
        await js.add_stream(jobs_config)
        scheduler = wired_scheduler(
            pipe_pool,
            js,
            LiveAgents(nc, wall=WALL.now),
            SecretBox(settings.secrets.secrets_key or ""),
            CountryKeys(None),
        )
        jobs = [job_for(cc, 25) for cc in ("DE", "US", "DE")]
        await scheduler.publisher.publish(jobs)
        await scheduler.publisher.publish(jobs[1:])  # again: dedupe by id, one by one too
        assert not scheduler.publisher._publisher.batches
        info = await js.stream_info(JOBS_STREAM)
        assert info.state.messages == 3
        subjects = {(await js.get_msg(JOBS_STREAM, s)).subject for s in (1, 2, 3)}
        assert subjects == {jobs_subject("DE"), jobs_subject("US")}
    finally:
        await nc.close()
        embedded.stop(proc)


async def test_an_outbox_sends_what_comes_within_its_linger_as_one_batch(
    js: JetStreamContext, nats_url: str
) -> None:
    """Thirty callers within the linger: one batch, a few replies, each caller told its
    message is stored; one caller alone is published by itself."""
    name = await _stream(js, batched=True)
    outbox = Outbox(js, linger_s=0.05, timeout_s=10)
    watcher, replies = await _watch_replies(nats_url)
    sent = _messages(name, 30)
    await asyncio.gather(*(outbox.publish(m.subject, m.payload, m.msg_id) for m in sent))
    await watcher.flush()
    assert len(replies) == 2  # the start's flow ack and the commit's PubAck
    assert await _stored(js, name) == [(m.subject, m.payload, m.msg_id) for m in sent]
    [alone] = _messages(name, 1, tag="alone")
    await outbox.publish(alone.subject, alone.payload, alone.msg_id)
    await watcher.flush()
    await watcher.close()
    assert len(replies) == 2  # a plain PubAck, on nats-py's own inbox
    assert (await _stored(js, name))[-1] == (alone.subject, alone.payload, alone.msg_id)


async def test_an_outbox_on_a_stream_without_batches_publishes_one_by_one(
    js: JetStreamContext,
) -> None:
    name = await _stream(js, batched=False)
    outbox = Outbox(js, linger_s=0.05, timeout_s=10)
    sent = _messages(name, 10)
    await asyncio.gather(*(outbox.publish(m.subject, m.payload, m.msg_id) for m in sent))
    assert not outbox.batches
    assert sorted(await _stored(js, name)) == sorted((m.subject, m.payload, m.msg_id) for m in sent)


@pytest.mark.parametrize("batched", [True, False])
async def test_an_outbox_tells_each_caller_its_own_failure(
    js: JetStreamContext, batched: bool
) -> None:
    """A message to a subject no stream holds fails for its caller alone (no responders);
    the others of the same flush are stored. In a batch it is a gap the server ends the batch
    at, and the flush is published again one by one."""
    name = await _stream(js, batched=batched)
    outbox = Outbox(js, linger_s=0.05, timeout_s=5)
    good = _messages(name, 4)
    outcomes = await asyncio.gather(
        *(outbox.publish(m.subject, m.payload, m.msg_id) for m in good[:2]),
        outbox.publish("nowhere.at.all", b"x", "lost-1"),
        *(outbox.publish(m.subject, m.payload, m.msg_id) for m in good[2:]),
        return_exceptions=True,
    )
    assert outcomes[:2] + outcomes[3:] == [None] * 4
    assert isinstance(outcomes[2], Exception)
    assert sorted(await _stored(js, name)) == sorted((m.subject, m.payload, m.msg_id) for m in good)
    assert outbox.batches is batched


async def test_a_flood_of_open_batches_holds_no_one_elses_messages_back(
    js: JetStreamContext, nats_url: str
) -> None:
    """Someone allowed to publish on a stream (say, one country's agent on RESULTS) opens as
    many batches as the stream holds in flight and never commits them: the server refuses
    further batches there (429) until they are abandoned. Everyone else's messages are still
    stored, one by one, at once; and another stream's batches (the scheduler's on JOBS) are
    not touched."""
    flooded = await _stream(js, batched=True)
    other = await _stream(js, batched=True)
    rogue = await nats.connect(nats_url)
    try:
        inbox = rogue.new_inbox()
        refused = asyncio.Event()

        async def answered(msg: Msg) -> None:
            if b"too many inflight" in msg.data:
                refused.set()

        await rogue.subscribe(f"{inbox}.>", cb=answered)
        opened = 0
        while not refused.is_set():
            for _ in range(100):
                opened += 1
                await rogue.publish(
                    f"{flooded.lower()}.x",
                    b"",
                    reply=f"{inbox}.rogue{opened}.100.fail.1.0.$FI",
                    headers={"Nats-Msg-Id": f"rogue-{opened}"},
                )
            await rogue.flush()
            await asyncio.sleep(0.05)
            assert opened < 100_000
        publisher = Publisher(js, timeout_s=5)
        sent = _messages(flooded, 5, tag="mine")
        with capture_logs() as logs:
            assert await publisher.publish(sent) == [None] * 5
        assert [e["event"] for e in logs] == ["batch refused: published again one by one"]
        assert publisher.batches  # refused for now, not for good
        stored = {m_id for _, _, m_id in await _stored(js, flooded)}
        assert {m.msg_id for m in sent} <= stored
        jobs = _messages(other, 5, tag="job")
        await publish_batch(js, jobs, timeout_s=5)
        assert len(await _stored(js, other)) == 5
    finally:
        await rogue.close()


async def test_a_stream_that_took_no_batches_is_asked_again_later(js: JetStreamContext) -> None:
    """A rolling upgrade: an older controller wrote the stream's config without batches, a
    newer one turns them on. A publisher refused once publishes one by one, and asks again
    after RETRY_BATCHES_S."""
    name = await _stream(js, batched=False)
    now = [0.0]
    publisher = Publisher(js, timeout_s=5, clock=lambda: now[0])
    assert await publisher.publish(_messages(name, 3, tag="a")) == [None] * 3
    assert not publisher.batches
    config = (await js.stream_info(name)).config
    config.allow_batched = True
    await js.update_stream(config)
    now[0] += RETRY_BATCHES_S - 1
    assert not publisher.batches
    now[0] += 1
    assert publisher.batches
    with capture_logs() as logs:
        assert await publisher.publish(_messages(name, 3, tag="b")) == [None] * 3
    # As a batch: a refusal, a plain PubAck or a batch ended early each says so in the log and
    # goes one by one.
    assert logs == [] and publisher.batches
    assert len(await _stored(js, name)) == 6


async def test_a_publishers_batches_share_one_reply_subscription(tmp_path: Path) -> None:
    """Batches published at once through one Publisher are each stored whole, each told its
    own outcome, and their replies come through one subscription of the publisher's: the
    server counts one subscription more after eight batches than before (one made and removed
    per batch is a SUB and an UNSUB for the server, each clearing its subject-interest cache).
    A reply to a batch no longer waited for is dropped."""
    monitor = embedded.free_port()
    proc, url = embedded.start_nats(tmp_path / "nats", monitor_port=monitor)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        name = await _stream(js, batched=True)
        publisher = Publisher(js, timeout_s=10)
        before = await asyncio.to_thread(_subscriptions, monitor)
        groups = [_messages(name, 5, tag=f"g{i}-") for i in range(8)]
        with capture_logs() as logs:
            outcomes = await asyncio.gather(*(publisher.publish(g) for g in groups))
        assert logs == []  # each went as a batch: none refused, none published one by one
        assert outcomes == [[None] * 5] * 8
        assert await asyncio.to_thread(_subscriptions, monitor) == before + 1
        stored = await _stored(js, name)
        assert sorted(stored) == sorted((m.subject, m.payload, m.msg_id) for g in groups for m in g)
        # A late reply to a batch that is over reaches no one.
        inbox = publisher._inbox
        await nc.publish(f"{inbox.prefix}.gone.100.fail.1.0.$FI", b'{"type":"ack","seq":1}')
        await nc.flush()
        assert await publisher.publish(_messages(name, 3, tag="after")) == [None] * 3
    finally:
        await nc.close()
        embedded.stop(proc)


def _subscriptions(monitor_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/varz", timeout=5) as resp:
        return int(json.load(resp)["subscriptions"])
