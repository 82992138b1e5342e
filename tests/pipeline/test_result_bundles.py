"""Results bundles (`RESULT_BUNDLES`) through real NATS and PostgreSQL: an agent's results
that finish together arrive as one RESULTS message; the ingester stores each, checks each
alone, and settles the message once for all of them."""

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import httpx
import msgspec
import nats
import pytest
from nats.aio.msg import Msg
from structlog.testing import capture_logs

from controller.ingest.store import CheckedResult
from controller.jobs.rules import JobIds
from shared.messages import CheckResult, bundle_parts, encode, encode_bundle
from shared.publishing import Outbox
from shared.streams import RESULTS_LIVE_SUBJECTS
from shared.subjects import RESULTS_STREAM, results_bundle_subject, results_subject
from shared.timefmt import utcnow
from tests.agent.helpers import until
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline
from tests.pipeline.test_ingest import REFUSED, publish, refusing, result, rows


async def publish_bundle(pipeline: WiredPipeline, cc: str, parts: list[bytes]) -> None:
    await pipeline.js.publish(results_bundle_subject(cc), encode_bundle(parts))


async def settled(pipeline: WiredPipeline) -> None:
    """Nothing of the consumer's waits for an ack or came again."""
    info = await pipeline.js.consumer_info(RESULTS_STREAM, pipeline.ingester.durable)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0 and info.num_pending == 0


async def test_a_bundles_results_are_stored_and_its_message_acked_once(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitors = [await create(api, org) for _ in range(3)]
    sent = [result(job_ids, m, cc, "up" if i else "down") for i, m in enumerate(monitors)]
    # One of them twice (an agent's bundle may say anything): stored once.
    await publish_bundle(pipeline, cc, [encode(res) for res in [*sent, sent[1]]])
    assert await pipeline.ingester.burst() == 3
    for monitor, res in zip(monitors, sent, strict=True):
        [row] = await rows(pipe_pool, monitor["publicId"])
        assert (row["job_id"], row["status"]) == (res.job_id, res.status)
    await settled(pipeline)
    # The same results again, alone and in another bundle: nothing more is stored.
    await publish(pipeline.js, sent[0])
    await publish_bundle(pipeline, cc, [encode(res) for res in reversed(sent)])
    assert await pipeline.ingester.burst() == 0
    await settled(pipeline)


async def test_a_bad_result_in_a_bundle_is_moved_aside_alone(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """An agent of `mine` may publish bundles only under `mon.results.<mine>.bundle` (NATS):
    a result there that claims another country, a job id no round of its country had, a part
    that is no result: each is moved aside with its place in the bundle, the rest stored, the
    message acked."""
    mine, theirs = countries.take(2)
    monitor, other = await create(api, org), await create(api, org)
    at = utcnow()
    genuine = [result(job_ids, monitor, mine, at=at), result(job_ids, other, mine, at=at)]
    forged = result(job_ids, monitor, theirs, "down", at)  # a valid id of their round
    made_up = result(job_ids, monitor, mine, "down", at, job_id=str(uuid.uuid4()))
    parts = [encode(forged), encode(genuine[0]), b'{"v": 1, "jobId": 5}', encode(made_up)]
    await publish_bundle(pipeline, mine, [*parts, b"[]", encode(genuine[1])])
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 2
    moved = {e["part"]: e["error"] for e in logs if e["event"] == "malformed result moved aside"}
    assert sorted(moved) == [0, 2, 3, 4]
    assert f"of country '{theirs}'" in moved[0]
    assert "not the id of a round sent to its country" in moved[3]
    assert [(r["country"], r["status"]) for r in await rows(pipe_pool, monitor["publicId"])] == [
        (mine, "up")
    ]
    assert len(await rows(pipe_pool, other["publicId"])) == 1
    await settled(pipeline)


async def test_a_bundle_that_is_no_array_or_holds_nothing_good_is_termed(
    api: httpx.AsyncClient,
    org: Tenant,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    mine, theirs = countries.take(2)
    monitor = await create(api, org)
    subject = results_bundle_subject(mine)
    await pipeline.js.publish(subject, encode(result(job_ids, monitor, mine)))  # one, not a list
    await pipeline.js.publish(subject, b"[{not json")
    await publish_bundle(pipeline, mine, [encode(result(job_ids, monitor, theirs))])
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 0
    errors = [e["error"] for e in logs if e["event"] == "malformed result moved aside"]
    assert len(errors) == 3 and "must be a JSON array" in errors[0]
    info = await pipeline.js.consumer_info(RESULTS_STREAM, pipeline.ingester.durable)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_a_result_postgresql_refuses_leaves_the_rest_of_its_bundle_stored(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org)
    good = [result(job_ids, monitor, cc, at=utcnow() - timedelta(seconds=i)) for i in range(3)]
    refused = result(job_ids, monitor, cc, at=utcnow() + timedelta(seconds=1), message=REFUSED)
    await publish_bundle(pipeline, cc, [encode(good[0]), encode(refused), encode(good[1])])
    await publish(pipeline.js, good[2])
    async with refusing(pipe_pool):
        with capture_logs() as logs:
            assert await pipeline.ingester.burst() == 3
    [moved] = [e for e in logs if e["event"] == "malformed result moved aside"]
    assert "PostgreSQL refused it" in moved["error"] and moved["job_id"] == refused.job_id
    stored = {r["job_id"] for r in await rows(pipe_pool, monitor["publicId"])}
    assert stored == {res.job_id for res in good}
    await settled(pipeline)


async def test_a_handful_of_bundles_is_stored_a_batch_at_a_time(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transaction holds at most the ingester's batch of results, whatever the messages
    carry: here batches of 4 over bundles of 3 (on the session's ingester, its batch set back
    after)."""
    (cc,) = countries.take()
    monitors = [await create(api, org) for _ in range(9)]
    sent = [result(job_ids, m, cc) for m in monitors]
    for first in range(0, 9, 3):
        await publish_bundle(pipeline, cc, [encode(res) for res in sent[first : first + 3]])
    stores: list[int] = []
    store = pipeline.ingester._store

    async def counted(batch: list[CheckedResult]) -> int:
        stores.append(len(batch))
        return await store(batch)

    monkeypatch.setattr(pipeline.ingester, "_store", counted)
    monkeypatch.setattr(pipeline.ingester, "_batch", 4)
    assert await pipeline.ingester.burst() == 9
    assert max(stores) <= 4 and sum(stores) == 9
    for monitor in monitors:
        assert len(await rows(pipe_pool, monitor["publicId"])) == 1
    await settled(pipeline)


async def test_an_outbox_sends_what_may_go_in_a_bundle_together_as_one_message(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
    nats_url: str,
) -> None:
    """The agent's outbox on the real stream: the results whose jobs allow bundles go as one
    message, which live subscribers see as it was stored, another alone on its own subject;
    the ingester stores each."""
    (cc,) = countries.take()
    monitors = [await create(api, org) for _ in range(6)]
    sent = [result(job_ids, m, cc) for m in monitors]
    watcher = await nats.connect(nats_url)
    live: list[Msg] = []

    async def seen(msg: Msg) -> None:
        live.append(msg)

    await watcher.subscribe(RESULTS_LIVE_SUBJECTS.replace(">", f"{cc}.>"), cb=seen)
    await watcher.flush()
    outbox = Outbox(
        pipeline.js, linger_s=0.05, timeout_s=5, bundle_subject=results_bundle_subject(cc)
    )
    await asyncio.gather(
        *(
            outbox.publish(
                results_subject(cc, res.monitor_type, str(res.monitor_id)),
                encode(res),
                res.job_id,
                bundle=n > 0,
            )
            for n, res in enumerate(sent)
        )
    )
    await until(lambda: len(live) >= 2)
    await asyncio.sleep(0.2)  # nothing else comes
    await watcher.close()
    alone = results_subject(cc, "smtp", str(sent[0].monitor_id))
    assert sorted(msg.subject for msg in live) == sorted(
        [f"live.{alone[len('mon.') :]}", f"live.results.{cc}.bundle"]
    )
    [bundle] = [msg for msg in live if msg.subject.endswith(".bundle")]
    parts = bundle_parts(bundle.data) or []
    assert [msgspec.json.decode(part, type=CheckResult) for part in parts] == sent[1:]
    assert await pipeline.ingester.burst() == 6
    for monitor in monitors:
        assert len(await rows(pipe_pool, monitor["publicId"])) == 1
    await settled(pipeline)
