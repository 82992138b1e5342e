"""shared.pulling.StandingPull on the real NATS: one request open at a time, never asking for
more than the caller can take, a backlog drained in full batches without lingering, what comes
within a linger gathered in one delivery."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from shared.pulling import StandingPull
from testkit.peers.slowpath import SlowPath


@pytest.fixture
async def stream(nats_url: str) -> AsyncIterator[tuple[NATS, JetStreamContext, str]]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    name = f"PULL{uuid.uuid4().hex[:8].upper()}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    await js.add_consumer(name, ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT))
    try:
        yield nc, js, name
    finally:
        await js.delete_stream(name)
        await nc.close()


async def _publish(js: JetStreamContext, name: str, count: int) -> None:
    acks = [await js.publish_async(f"{name.lower()}.x", b"m") for _ in range(count)]
    await asyncio.gather(*acks)


LINGER_S = 120.0  # past the test's own timeout: a take that waited it out fails the test
DELAY_S = 1.0


async def test_a_backlog_comes_in_full_batches_at_once_and_idle_takes_reuse_one_request(
    stream: tuple[NATS, JetStreamContext, str],
) -> None:
    nc, js, name = stream
    pull = StandingPull(nc, name, "c", expires_s=2)
    for _ in range(3):  # idle: the first request stays open across takes
        assert await pull.take(1000, 0.3, linger_s=0.1) == []
    assert pull.requests_sent == 1
    # Its end (the server's 408) before the backlog: a request open while the backlog is
    # published is answered with its first message, whose count of what follows is whatever
    # the stream held then, and the take would rightly linger for the rest.
    await pull.end(bound_s=5.0)
    assert pull.requests_sent == 1
    await _publish(js, name, 3000)
    sizes = []
    for _ in range(3):
        msgs = await pull.take(1000, 2.0, linger_s=LINGER_S)
        sizes.append(len(msgs))
        for msg in msgs:
            await msg.ack()
    # The consumer holds each batch whole when it is taken: it comes at once, never waiting
    # out the linger (LINGER_S, longer than the test may take): the standing request's one
    # message, then one `no_wait` request for the rest.
    assert sizes == [1000, 1000, 1000], sizes
    assert pull.requests_sent == 7
    assert await pull.close() == []


async def test_what_comes_within_the_linger_waits_in_the_stream_and_comes_at_once(
    stream: tuple[NATS, JetStreamContext, str],
) -> None:
    nc, js, name = stream
    pull = StandingPull(nc, name, "c", expires_s=10)
    waiting: list[tuple[int, int]] = []

    async def trickle() -> None:
        await _publish(js, name, 1)
        for _ in range(20):
            await asyncio.sleep(0.02)
            await _publish(js, name, 1)
        info = await js.consumer_info(name, "c")
        waiting.append((info.num_pending, info.num_ack_pending))

    publishing = asyncio.create_task(trickle())
    msgs = await pull.take(1000, 5.0, linger_s=3.0)
    await publishing
    # The first message woke the take (delivered: ack pending); the other 20 waited in the
    # stream, not delivered one by one, and came with the one request the linger's end sent.
    assert waiting == [(20, 1)]
    assert len(msgs) == 21
    assert pull.requests_sent == 2
    for msg in msgs:
        await msg.ack()
    assert await pull.close() == []


async def test_a_request_asks_for_no_more_than_the_caller_can_take(
    stream: tuple[NATS, JetStreamContext, str],
) -> None:
    nc, js, name = stream
    await _publish(js, name, 50)
    pull = StandingPull(nc, name, "c", expires_s=10)
    taken = await pull.take(10, 2.0)
    await asyncio.sleep(0.3)  # whatever else the server would deliver
    left = await pull.close()
    assert len(taken) + len(left) == 10
    info = await js.consumer_info(name, "c")
    assert (info.num_pending, info.num_ack_pending) == (40, 10)


async def test_end_waits_for_the_open_requests_own_end_through_a_late_path(
    stream: tuple[NATS, JetStreamContext, str], nats_url: str
) -> None:
    """The server times a request from when it receives it: through a path whose requests
    arrive DELAY_S late, a request outlives the take that sent it by that much, and a client
    that leaves without waiting still takes a message published just after it left (the
    server sees the interest go DELAY_S late too). `end()` waits for the request's own
    status, so nothing published after it is delivered to anyone."""
    _, js, name = stream
    host, port = nats_url.removeprefix("nats://").split(":")
    async with SlowPath(host, int(port), delay_s=DELAY_S) as path:
        far = await nats.connect(f"nats://{host}:{path.port}")
        try:
            for wait in (False, True):
                pull = StandingPull(far, name, "c", expires_s=1.0)
                assert await pull.take(1, 0.2) == []  # the request is open
                if wait:
                    await pull.end(bound_s=10.0)
                assert await pull.close() == []
                await _publish(js, name, 1)
                await asyncio.sleep(DELAY_S + 0.5)  # what the server does with it
                info = await js.consumer_info(name, "c")
                if wait:
                    assert (info.num_pending, info.num_ack_pending) == (1, 0)
                else:  # taken by the request of a client that left: waits out ack_wait
                    assert (info.num_pending, info.num_ack_pending) == (0, 1)
                    await js.delete_consumer(name, "c")
                    await js.add_consumer(
                        name, ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT)
                    )
                    await js.purge_stream(name)
        finally:
            await far.close()
