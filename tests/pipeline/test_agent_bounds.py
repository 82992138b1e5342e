"""A country's agent is bounded by its jobs (issue 78), on real PostgreSQL and NATS: a taken
over agent answers a real round of its country with blocklist answers about a name its job
never asked (another organization's address, "listed" with the attacker's TXT) dated 2099.
The ingester takes only what the job asked (its asks sealed with it: `asksSeal`), and dates the
result within the job's window, so the name is neither listed nor kept fresh (never asked
again) by it; a seal that does not open, or none while ACCEPT_UNSEALED_SIDE_FACTS is off,
keeps no side facts at all. The results themselves are kept."""

import asyncio
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from controller.ingest.ingester import Ingester
from controller.ingest.job_window import LATE
from controller.jobs.rules import JobIds
from controller.settings import FleetSettings
from controller.sidechecks.blocklists import store as lists_db
from controller.sidechecks.blocklists.rules import BlockList, Fresh
from shared.clock import WALL
from shared.messages import Preempt, SmtpCheckJob, encode
from shared.sidechecks import SideChecks
from shared.sidechecks.blocklists import BlocklistAnswer, BlocklistAsk, BlocklistZone, Reputation
from shared.subjects import control_subject, results_subject
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline
from tests.pipeline.test_ingest import result

ZONE = "bl.bounds.test"
TESTS = ["127.0.0.2", "127.0.0.1"]
ASKED = "192.0.2.10"  # the attacker's own monitor's address, which its round asks
VICTIM = "203.0.113.7"  # another organization's mail server: never asked by this round
ASK = BlocklistAsk(zones=[BlocklistZone(zone=ZONE, tests=TESTS)], ips=[ASKED])
FUTURE = "2099-01-01T00:00:00.000Z"


def forged(ids: JobIds, monitor: dict[str, Any], cc: str, at: datetime) -> dict[str, Any]:
    """The taken-over agent's result of the round at `at`: its job's asks and seal echoed
    as sent, and answers about the victim's address beside the asked one, dated 2099."""
    listed = ["127.0.0.2"]
    facts = Reputation(
        names={ASKED: "listed", VICTIM: "listed"},
        answers=[
            BlocklistAnswer(zone=ZONE, name="127.0.0.2", a=listed),
            BlocklistAnswer(zone=ZONE, name="127.0.0.1", a=[]),
            BlocklistAnswer(zone=ZONE, name=ASKED, a=[]),
            BlocklistAnswer(zone=ZONE, name=VICTIM, a=listed, txt="attacker says listed"),
        ],
    )
    res = result(ids, monitor, cc, at=at, side_checks={"blocklists": facts})
    payload: dict[str, Any] = json.loads(encode(res))
    asks = {"blocklists": msgspec.to_builtins(ASK)}
    payload |= {
        "finishedAt": FUTURE,
        "asks": asks,
        "asksSeal": ids.asks.seal(payload["jobId"], asks),
    }
    return payload


async def _publish(js: JetStreamContext, payload: dict[str, Any]) -> None:
    subject = results_subject(payload["country"], payload["monitorType"], payload["monitorId"])
    await js.publish(subject, json.dumps(payload).encode())


async def _answers(pool: asyncpg.Pool, cc: str) -> dict[str, datetime]:
    rows = await pool.fetch(
        "SELECT name, answered_at FROM blocklist_answers WHERE zone = $1 AND country = $2",
        ZONE,
        cc,
    )
    return {r["name"]: r["answered_at"] for r in rows}


async def test_a_taken_over_agent_writes_no_answer_about_an_unasked_name_nor_dates_one_ahead(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org)
    at = utcnow()
    payload = forged(job_ids, monitor, cc, at)
    clamped = (
        REGISTRY.get_sample_value("mailprobe_results_clamped_total", {"field": "finishedAt"}) or 0.0
    )
    await _publish(pipeline.js, payload)
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 1
    answers = await _answers(pipe_pool, cc)
    assert VICTIM not in answers  # nothing about another organization's address
    assert ASKED in answers and "127.0.0.2" in answers
    assert all(when <= at + LATE for when in answers.values())  # not 2099
    async with pipe_pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT finished_at FROM check_results WHERE job_id = $1", payload["jobId"]
        )
        fresh = await lists_db.fresh(conn, at, [BlockList(ZONE, "ip", "Bounds")])
    assert at <= stored <= at + LATE
    assert VICTIM not in fresh.get(cc, Fresh()).on.get(
        ZONE, ()
    )  # still asked by the victim's rounds
    assert (
        REGISTRY.get_sample_value("mailprobe_results_clamped_total", {"field": "finishedAt"})
        == clamped + 1
    )
    events = {e["event"] for e in logs}
    assert "result times outside its job's window: clamped" in events
    assert "side facts about what its job did not ask: cut" in events


async def test_asks_the_job_did_not_make_do_not_open_its_seal(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """The agent rewrites the echoed asks to name the victim's address: the seal no longer
    opens, and none of the result's side facts is taken."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    payload = forged(job_ids, monitor, cc, utcnow())
    payload["asks"]["blocklists"]["ips"] = [ASKED, VICTIM]
    await _publish(pipeline.js, payload)
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 1
    assert await _answers(pipe_pool, cc) == {}
    [line] = [e for e in logs if e["event"].startswith("side facts dropped")]
    assert (line["reason"], line["side_checks"]) == ("unsealed", ["blocklists"])
    status = await pipe_pool.fetchval(
        "SELECT status FROM check_results WHERE job_id = $1", payload["jobId"]
    )
    assert status == "up"  # the result itself is kept


def test_unsealed_side_facts_are_refused_by_default() -> None:
    """ACCEPT_UNSEALED_SIDE_FACTS is off unless an operator turns it on (while older agents
    drain): the serving pipeline's ingester is built from it."""
    assert msgspec.convert({}, FleetSettings).accept_unsealed_side_facts is False


async def test_by_default_a_result_that_echoes_no_seal_keeps_no_side_facts(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    nc: NATS,
    js: JetStreamContext,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """An ingester as `serve` builds it by default: a result without its job's sealed asks
    (an older agent, or one hiding its job) keeps its status but none of its side facts; the
    drop is logged with its reason (`unsealed`) and counted, never silent."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    payload = forged(job_ids, monitor, cc, utcnow())
    del payload["asks"], payload["asksSeal"]  # as an older agent, or one hiding its job
    strict = Ingester(
        pipe_pool,
        nc,
        js,
        job_ids,
        durable=f"ingest-strict-{uuid.uuid4().hex[:8]}",
        subject=results_subject(cc, "smtp", monitor["publicId"]),
        clock=WALL,
    )
    labels = {"side_check": "blocklists", "reason": "unsealed"}
    before = REGISTRY.get_sample_value("mailprobe_side_check_facts_dropped_total", labels) or 0.0
    try:
        await _publish(js, payload)
        with capture_logs() as logs:
            assert await strict.burst() == 1
    finally:
        await strict.close()
    assert await _answers(pipe_pool, cc) == {}
    after = REGISTRY.get_sample_value("mailprobe_side_check_facts_dropped_total", labels)
    assert after == before + 1
    [line] = [e for e in logs if e["event"].startswith("side facts dropped")]
    assert (line["reason"], line["side_checks"]) == ("unsealed", ["blocklists"])
    assert line["log_level"] == "warning" and line["job_id"] == payload["jobId"]
    status = await pipe_pool.fetchval(
        "SELECT status FROM check_results WHERE job_id = $1", payload["jobId"]
    )
    assert status == "up"  # the result itself is kept


def test_the_window_is_the_jobs_life() -> None:
    """JOBS keeps a job 15 minutes, a check runs at most TIMEOUT_MAX (300 s) and the side
    checks' grace; a minute either way for the agent's clock."""
    assert timedelta(minutes=20) < LATE <= timedelta(minutes=25)


async def test_a_carried_preemptions_job_goes_out_sealed(
    nc: NATS, pipeline: WiredPipeline, countries: Countries, job_ids: JobIds
) -> None:
    """A job a preemption carries to an agent (never through JOBS) is sealed as a published
    one: its agent's side facts are held to its asks too."""
    (cc,) = countries.take()
    asks: SideChecks = {"reverse_dns": {}}
    job = SmtpCheckJob(
        job_id=str(uuid.uuid4()), monitor_id=str(uuid.uuid4()), hostname="mx.test",
        country=cc, scheduled_at=FUTURE, expires_at=FUTURE, side_checks=asks,
    )  # fmt: skip
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def heard(msg: Msg) -> None:
        await got.put(msg.data)

    sub = await nc.subscribe(control_subject(cc, "a1"), cb=heard)
    try:
        request = Preempt(country=cc, agent_id="a1", tenant="t", job=job)
        await pipeline.scheduler.publisher.preempt([request])
        sent = msgspec.json.decode(await asyncio.wait_for(got.get(), 5), type=Preempt)
    finally:
        await sub.unsubscribe()
    assert sent.job is not None and sent.job.asks_seal
    assert job_ids.asks.opens(job.job_id, asks, sent.job.asks_seal)
