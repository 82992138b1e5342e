"""An agent holds at most capacity + lookahead jobs, however many a fetch brings.

nats-py's fetch also returns what earlier pull requests delivered to the subscription after
their own fetch had given up (on a loaded machine the client's timer fires before the server's
`expires`): here a pull request of the test's own, on the agent's subscription, leaves such jobs
there, against the real NATS server. The agent keeps its room and hands the rest back at once,
except a job on its last delivery, which a hand-back would drop."""

import json

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.job_feed import within_room
from agent.probers.tls import SslContexts
from shared.streams import JOBS_MAX_DELIVER, jobs_consumer_config, jobs_consumer_name
from shared.subjects import JOBS_STREAM
from tests.agent.helpers import job_for, publish_job, until

ROOM = 4


async def _with_leftovers(
    nc: NATS, js: JetStreamContext, country: str, leftovers: int
) -> JetStreamContext.PullSubscription:
    """A pull subscription on `jobs-CC` as the agent binds one, with `leftovers` jobs in its
    inbox that no fetch of its own asked for."""
    inbox = nc.new_inbox()
    sub = JetStreamContext.PullSubscription(
        js, await nc.subscribe(inbox), JOBS_STREAM, jobs_consumer_name(country), inbox.encode()
    )
    request = {"batch": leftovers, "expires": 5_000_000_000}
    await nc.publish(
        f"$JS.API.CONSUMER.MSG.NEXT.{JOBS_STREAM}.{jobs_consumer_name(country)}",
        json.dumps(request).encode(),
        reply=inbox,
    )
    await until(lambda: sub.pending_msgs >= leftovers)
    return sub


async def _jobs(js: JetStreamContext, country: str, count: int) -> None:
    await js.add_consumer(JOBS_STREAM, jobs_consumer_config(country))
    for _ in range(count):
        await publish_job(js, job_for(country, 25))


async def test_a_fetch_brings_more_than_it_asked_and_the_agent_keeps_only_its_room(
    nc: NATS, js: JetStreamContext, country: str, ssl_contexts: SslContexts
) -> None:
    await _jobs(js, country, 12)
    sub = await _with_leftovers(nc, js, country, 8)

    fetched = await sub.fetch(ROOM, timeout=1)
    assert len(fetched) > ROOM  # what the agent must not hold
    kept, back = within_room(fetched, ROOM)
    assert kept == fetched[:ROOM] and back == fetched[ROOM:]

    for msg in back:
        await msg.nak()
    # Handed back, they go at once to any agent of the country, with the jobs never fetched.
    another = await _with_leftovers(nc, js, country, 12 - ROOM)
    redelivered = {m.metadata.sequence.stream for m in await another.fetch(8, timeout=1)}
    assert {m.metadata.sequence.stream for m in back} <= redelivered
    assert len(redelivered | {m.metadata.sequence.stream for m in kept}) == 12


async def test_no_room_keeps_nothing_but_a_job_on_its_last_delivery(
    nc: NATS, js: JetStreamContext, country: str
) -> None:
    await _jobs(js, country, 1)
    for delivery in range(1, JOBS_MAX_DELIVER + 1):  # handed back until its last delivery
        sub = await _with_leftovers(nc, js, country, 1)
        [last] = await sub.fetch(1, timeout=1)
        await sub.unsubscribe()
        assert last.metadata.num_delivered == delivery
        if delivery < JOBS_MAX_DELIVER:
            await last.nak()
    await _jobs(js, country, 1)
    fresh = await _with_leftovers(nc, js, country, 1)
    [other] = await fresh.fetch(1, timeout=1)

    assert within_room([last, other], 0) == ([last], [other])
    assert within_room([other, last], -3) == ([last], [other])
    assert within_room([other, last], 1) == ([other, last], [])


async def test_a_bundle_counts_its_jobs_and_is_kept_whole_while_room_is_left(
    nc: NATS, js: JetStreamContext, country: str
) -> None:
    await _jobs(js, country, 3)
    sub = await _with_leftovers(nc, js, country, 3)
    fetched = await sub.fetch(3, timeout=1)
    # Messages of 3 jobs each (bundles): one starts within the room of 5 and is kept whole.
    assert within_room(fetched, 5, [3, 3, 3]) == (fetched[:2], fetched[2:])
    assert within_room(fetched, 3, [3, 3, 3]) == (fetched[:1], fetched[1:])
    assert within_room(fetched, 0, [3, 3, 3]) == ([], fetched)
    assert within_room(fetched, 7, [3, 1, 3]) == (fetched, [])
