"""An ingester that dies holding results hands them to another within the consumer's short ack
wait; one that is only slow keeps what it holds with `in_progress`, so nothing is delivered
twice; and the consumer an older version made with the long ack wait is updated in place."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from controller.ingest.ingester import Ingester
from controller.jobs.rules import JobIds
from shared.clock import WALL
from shared.streams import INGEST_ACK_WAIT_S, ingest_consumer_config
from shared.subjects import RESULTS_STREAM, results_subject
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries
from tests.pipeline.test_ingest import publish, result, rows

# Short enough that a test waits a few seconds, long enough for a loaded machine's loop.
ACK_WAIT_S = 1.5


@pytest.fixture
async def other_nc(nats_url: str) -> AsyncIterator[NATS]:
    """A second controller's connection."""
    conn = await nats.connect(nats_url)
    yield conn
    if not conn.is_closed:
        await conn.close()


def ingester(
    pool: asyncpg.Pool, nc: NATS, js: JetStreamContext, job_ids: JobIds, durable: str, subject: str
) -> Ingester:
    return Ingester(
        pool, nc, js, job_ids, durable=durable, subject=subject, ack_wait_s=ACK_WAIT_S, clock=WALL
    )


async def test_a_dead_ingesters_results_are_stored_by_another_once(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    nc: NATS,
    js: JetStreamContext,
    other_nc: NATS,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org)
    subject = results_subject(cc, "smtp", monitor["publicId"])
    durable = f"ingest-handover-{uuid.uuid4().hex[:8]}"
    doomed = ingester(pipe_pool, other_nc, other_nc.jetstream(), job_ids, durable, subject)
    survivor = ingester(pipe_pool, nc, js, job_ids, durable, subject)
    await publish(js, result(job_ids, monitor, cc))
    assert len(await doomed.fetch(2.0)) == 1
    await other_nc.close()  # gone with the result unsettled, as a killed process

    stored = 0
    async with asyncio.timeout(10 * ACK_WAIT_S):  # not 30 s, the ack wait of old
        while not stored:
            stored = await survivor.burst(0.5)
    assert stored == 1
    assert len(await rows(pipe_pool, monitor["publicId"])) == 1
    info = await js.consumer_info(RESULTS_STREAM, durable)
    assert info.delivered.consumer_seq == 2  # to the dead one, then to the survivor
    assert (info.num_ack_pending, info.config.ack_wait) == (0, ACK_WAIT_S)
    await survivor.close()


async def test_a_batch_held_past_the_ack_wait_is_kept_in_progress_and_delivered_once(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipe_database_url: str,
    nc: NATS,
    js: JetStreamContext,
    other_nc: NATS,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """The commit takes twice the ack wait (a trigger sleeps) while another ingester pulls
    from the same consumer: the result is delivered once."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    subject = results_subject(cc, "smtp", pid)
    durable = f"ingest-held-{uuid.uuid4().hex[:8]}"
    first = ingester(pipe_pool, nc, js, job_ids, durable, subject)
    second = ingester(pipe_pool, other_nc, other_nc.jetstream(), job_ids, durable, subject)
    admin = await asyncpg.connect(pipe_database_url)
    stop = asyncio.Event()
    try:
        await admin.execute(
            "CREATE FUNCTION held_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.monitor_public_id = '{pid}' THEN PERFORM pg_sleep({2 * ACK_WAIT_S});"
            " END IF; RETURN NEW; END $$;"
            " CREATE TRIGGER held_insert BEFORE INSERT ON result_details"
            " FOR EACH ROW EXECUTE FUNCTION held_insert()"
        )
        await first.burst(0.1)  # the consumer exists before the result does
        await publish(js, result(job_ids, monitor, cc))
        running = asyncio.gather(first.run(stop), second.run(stop))
        async with asyncio.timeout(30):
            while True:
                if await rows(pipe_pool, pid):
                    break
                await asyncio.sleep(0.1)
        stop.set()
        await running
    finally:
        await admin.execute(
            "DROP TRIGGER IF EXISTS held_insert ON result_details;"
            " DROP FUNCTION IF EXISTS held_insert()"
        )
        await admin.close()
        await first.close()
        await second.close()
    info = await js.consumer_info(RESULTS_STREAM, durable)
    assert info.delivered.consumer_seq == 1  # delivered once: never to the other
    assert info.num_ack_pending == 0
    assert len(await rows(pipe_pool, pid)) == 1


async def test_the_consumer_an_older_version_made_gets_the_short_ack_wait_in_place(
    pipe_pool: asyncpg.Pool, js: JetStreamContext, job_ids: JobIds, nc: NATS
) -> None:
    durable = f"ingest-old-{uuid.uuid4().hex[:8]}"
    old = ingest_consumer_config()
    old.durable_name, old.ack_wait = durable, 30
    old.filter_subject = results_subject("ZZ", "smtp", str(uuid.uuid4()))
    await js.add_consumer(RESULTS_STREAM, old)
    new = Ingester(
        pipe_pool, nc, js, job_ids, durable=durable, subject=old.filter_subject, clock=WALL
    )
    assert await new.burst(0.1) == 0
    info = await js.consumer_info(RESULTS_STREAM, durable)
    assert info.config.ack_wait == INGEST_ACK_WAIT_S < 30
    await new.close()
    await js.delete_consumer(RESULTS_STREAM, durable)
