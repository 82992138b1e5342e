"""Compact result storage (issue 24): a routine result is a narrow row pointing at the last full
one, a changed or failed one is stored whole, the hourly rollups hold what the raw rows say, and
uptime outlives the raw rows' retention."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from controller.alerting import state_store as alert_state
from controller.ingest import retention
from controller.ingest import store as results
from controller.jobs.result_kinds import ResultRow
from controller.jobs.rules import JobIds
from shared.clock import WALL
from shared.messages import CheckResult, Phases, TlsInfo, encode
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline
from tests.pipeline.test_ingest import publish, result

TLS = TlsInfo(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", cert_days_left=80)


def routine(ids: JobIds, monitor: dict[str, Any], cc: str, at: datetime, n: int) -> CheckResult:
    """An `up` result whose facts are always the same and whose timings are not."""
    return result(
        ids,
        monitor,
        cc,
        "up",
        at,
        agent_id=f"agent-{cc}-{n % 2}",
        banner="220 mx ESMTP",
        response_time_ms=30.125 + n,
        address="192.0.2.1",
        phases=Phases(dns_ms=1.5, connect_ms=2.25 + n, tls_ms=7.001, greeting_ms=3.0 + n / 8),
        tls=TLS,
        capabilities=["PIPELINING", "SIZE 1000"],
    )


async def stored(pool: asyncpg.Pool, public_id: str) -> list[asyncpg.Record]:
    """The monitor's raw rows, oldest first: compact ones have a `detail_ms`."""
    async with pool.acquire() as conn:
        found: list[asyncpg.Record] = await conn.fetch(
            "SELECT r.scheduled_at, r.detail_ms, result_status(r.status) AS status"
            " FROM result_rows r JOIN monitors m ON m.id = r.monitor_id"
            " WHERE m.public_id = $1::uuid ORDER BY r.scheduled_at",
            public_id,
        )
    return found


async def listed(api: httpx.AsyncClient, org: Tenant, pid: str) -> list[dict[str, Any]]:
    r = await api.get(f"/api/smtp-monitors/{pid}/results?perPage=200", headers=org.auth())
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items[::-1]


# The side checks' facts before `sideChecks` (issue 65), which the API keeps as they were.
OLDER_SIDE_FACTS = {"mailDns": None, "reverseDns": None, "relay": None}


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# What the agent sends that the API does not answer: its logins and the side checks' asks it
# echoes with their seal (the controller's alone), a round trip's ARC chain, not stored yet, and
# the side checks' errors, which the controller counts and logs but does not store.
_UNANSWERED = frozenset({"logins", "asks", "asksSeal", "sideCheckErrors"})


def wire(res: CheckResult) -> dict[str, Any]:
    sent = {k: v for k, v in msgspec.to_builtins(res).items() if k not in _UNANSWERED}
    return sent | OLDER_SIDE_FACTS


async def test_a_routine_result_is_stored_compact_and_answered_as_sent(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    first = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    sent = [routine(job_ids, monitor, cc, first + timedelta(minutes=n), n) for n in range(4)]
    for res in sent:
        await publish(pipeline.js, res)
    assert await pipeline.ingester.burst() == 4
    rows = await stored(pipe_pool, pid)
    if rows[0]["scheduled_at"].date() == rows[-1]["scheduled_at"].date():
        # The first is stored whole, the rest point at it.
        assert [r["detail_ms"] for r in rows] == [None, 60_000, 120_000, 180_000]
    async with pipe_pool.acquire() as conn:
        details = await conn.fetchval(
            "SELECT count(*) FROM result_details d JOIN monitors m ON m.id = d.monitor_id"
            " WHERE m.public_id = $1::uuid",
            pid,
        )
    assert details == sum(r["detail_ms"] is None for r in rows)
    # Every result answers what the agent sent: own times, phases, agent and job id.
    items = await listed(api, org, pid)
    assert [{k: v for k, v in i.items() if k != "storedAt"} for i in items] == [
        wire(r) for r in sent
    ]
    # A redelivery stores nothing and moves no count.
    await publish(pipeline.js, sent[2])
    assert await pipeline.ingester.burst() == 0
    r = await api.get(f"/api/smtp-monitors/{pid}/uptime", headers=org.auth())
    assert r.json()["windows"][0]["overall"]["up"] == 4


async def test_a_changed_or_failed_result_is_stored_whole(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """A new banner, a failure, and the first `up` after a failure (even with the facts of the
    `up` before it) are full rows; what follows each of them the same is compact again."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    at = utcnow().replace(hour=0, minute=30, second=0, microsecond=0)
    if at > utcnow() - timedelta(minutes=10):
        at -= timedelta(days=1)  # all in one UTC day, in the past
    same = [routine(job_ids, monitor, cc, at + timedelta(minutes=n), n) for n in range(7)]
    sent = [
        same[0],
        same[1],
        msgspec.structs.replace(same[2], banner="220 mx ESMTP upgraded"),
        result(job_ids, monitor, cc, "down", at + timedelta(minutes=3)),
        same[4],
        same[5],
        msgspec.structs.replace(same[6], tls=TlsInfo(version="TLSv1.2")),
    ]
    for res in sent:
        await publish(pipeline.js, res)
        assert await pipeline.ingester.burst() == 1
    rows = await stored(pipe_pool, pid)
    assert [r["detail_ms"] is None for r in rows] == [True, False, True, True, True, False, True]
    assert [r["status"] for r in rows] == ["up", "up", "up", "down", "up", "up", "up"]
    items = await listed(api, org, pid)
    assert [{k: v for k, v in i.items() if k != "storedAt"} for i in items] == [
        wire(r) for r in sent
    ]


async def test_a_redelivered_result_can_head_a_run_of_new_ones(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """A redelivery of a result stored whole, then a new result with its facts (which are no
    longer the latest full row's): the new one reads back whole. In one batch it is stored in
    full; when the ingester's standing pull hands them over in two takes, the redelivery is
    the latest full row the new one is compared with, and the new one is stored compact
    against it. Either way the API answers the same."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    at = utcnow().replace(hour=0, minute=30, second=0, microsecond=0)
    if at > utcnow() - timedelta(minutes=10):
        at -= timedelta(days=1)
    same = [routine(job_ids, monitor, cc, at + timedelta(minutes=n), n) for n in range(4)]
    changed = msgspec.structs.replace(same[2], banner="220 other")
    for res in (same[0], same[1], changed):
        await publish(pipeline.js, res)
        assert await pipeline.ingester.burst() == 1
    await publish(pipeline.js, same[1])
    await publish(pipeline.js, same[3])
    assert await pipeline.ingester.burst() == 1
    rows = await stored(pipe_pool, pid)
    assert [r["detail_ms"] is None for r in rows] in (
        [True, False, True, False],  # one take
        [True, False, True, True],  # two: compact against the redelivered full row
    )
    items = await listed(api, org, pid)
    assert [{k: v for k, v in i.items() if k != "storedAt"} for i in items] == [
        wire(r) for r in (same[0], same[1], changed, same[3])
    ]


async def test_rollups_hold_what_the_raw_rows_say(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """Counts by status per monitor, country and hour, a replaced `expired` row moved from
    missed to what the late result said, and response times in their buckets."""
    a, b = countries.take(2)
    monitor = await create(api, org, allowedCheckCountryCodes=[a, b])
    pid = monitor["publicId"]
    start = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    sent: list[CheckResult] = []
    for n in range(12):  # over two hours
        at = start + timedelta(minutes=10 * n + 1)
        sent.append(routine(job_ids, monitor, a, at, n))
        status = ("up", "down", "inconclusive")[n % 3]
        sent.append(result(job_ids, monitor, b, status, at, response_time_ms=400.0 + n))
    for res in sent:
        await publish(pipeline.js, res)
    assert await pipeline.ingester.burst() == len(sent)
    late_at = start + timedelta(minutes=125)
    async with pipe_pool.acquire() as conn:
        m_id = await conn.fetchval("SELECT id FROM monitors WHERE public_id = $1::uuid", pid)
        expired = ResultRow.missed(
            monitor_id=uuid.UUID(pid),
            monitor_type="smtp",
            country=a,
            job_id=job_ids.make(pid, a, late_at),
            scheduled_at=late_at,
            kind="expired",
            why="no agent ran it in time",
        )
        async with conn.transaction():
            assert await results.store(conn, [expired], now=utcnow()) == 1
    await publish(pipeline.js, routine(job_ids, monitor, a, late_at, 99))
    assert await pipeline.ingester.burst() == 1
    async with pipe_pool.acquire() as conn:
        raw = await conn.fetch(
            "SELECT date_trunc('hour', scheduled_at, 'UTC') AS hour, country,"
            " count(*) FILTER (WHERE status = 'up') AS up,"
            " count(*) FILTER (WHERE status = 'down') AS down,"
            " count(*) FILTER (WHERE status IN ('missed', 'inconclusive')) AS missed,"
            " count(response_time_ms) FILTER (WHERE status IN ('up', 'down')) AS timed"
            " FROM check_results WHERE monitor_id = $1 GROUP BY 1, 2 ORDER BY 1, 2",
            m_id,
        )
        hours = await results.rollups(conn, m_id, start, start + timedelta(hours=4))
    assert [(h.hour, h.country, h.up, h.down, h.missed, sum(h.latency)) for h in hours] == [
        (r["hour"], r["country"], r["up"], r["down"], r["missed"], r["timed"]) for r in raw
    ]
    by_country = {h.country: h for h in hours if h.hour == start}
    assert by_country[a].percentile_ms(50) == 50.0  # 30-40 ms: the (25, 50] bucket
    assert by_country[b].percentile_ms(99) == 500.0


async def test_retention_drops_raw_rows_but_keeps_uptime(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """Results of a day past CHECK_RAW_DAYS leave the results list with their partition; the
    week's and month's uptime still count them: their rounds (from the rollups) and their time
    (from the results kept for uptime), the same as before, plus the time passed since."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    old = utcnow().replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=5)
    async with pipe_pool.acquire() as conn:
        await results.ensure_partitions(conn, old, days=1)
    sent = [routine(job_ids, monitor, cc, old + timedelta(minutes=n), n) for n in range(3)]
    sent.append(result(job_ids, monitor, cc, "down", old + timedelta(minutes=3)))
    sent.append(routine(job_ids, monitor, cc, utcnow() - timedelta(minutes=1), 5))
    for res in sent:
        await publish(pipeline.js, res)
    assert await pipeline.ingester.burst() == 5
    r = await api.get(f"/api/smtp-monitors/{pid}/uptime", headers=org.auth())
    before = r.json()["windows"]
    assert [w["overall"]["up"] for w in before] == [1, 4, 4]

    dropped = await retention.one_pass(pipe_pool, history_days=90, raw_days=3, now=WALL.now())
    assert f"result_rows_p{old:%Y%m%d}" in dropped
    assert f"result_details_p{old:%Y%m%d}" in dropped
    assert f"result_rollups_p{old:%Y%m%d}" not in dropped
    items = await listed(api, org, pid)
    assert [i["jobId"] for i in items] == [sent[-1].job_id]
    r = await api.get(f"/api/smtp-monitors/{pid}/uptime", headers=org.auth())
    after = r.json()["windows"]
    seconds = ("upSeconds", "downSeconds", "uptimePercent")
    assert [{k: v for k, v in w["overall"].items() if k not in seconds} for w in after] == [
        {k: v for k, v in w["overall"].items() if k not in seconds} for w in before
    ]
    assert [w["overall"]["down"] for w in after] == [0, 1, 1]
    # The state now (up since the last result) has lasted as much longer as the time passed
    # between the two answers; the rest of the time is what it was.
    for w, n in zip(before, after, strict=True):
        assert n["from"] == w["from"]
        passed = (iso(n["to"]) - iso(w["to"])).total_seconds()
        assert n["overall"]["downSeconds"] == w["overall"]["downSeconds"]
        assert n["overall"]["upSeconds"] - w["overall"]["upSeconds"] == pytest.approx(
            passed, abs=0.002
        )
    week = after[1]["overall"]
    # Down from the failure five days ago (at noon) until the last result, a minute ago.
    down = (iso(sent[-1].scheduled_at) - iso(sent[3].scheduled_at)).total_seconds()
    assert week["upSeconds"] > 180 and week["downSeconds"] > down - 3600, week


async def test_a_result_of_an_unknown_shape_is_refused_not_crashed(
    pipe_pool: asyncpg.Pool, api: httpx.AsyncClient, org: Tenant, job_ids: JobIds
) -> None:
    """A country that is not two ASCII characters cannot be stored compact or whole: a
    refusal (the ingester moves such a result aside), never a crash of the batch's code."""
    monitor = await create(api, org)
    bad = result(job_ids, monitor, "DEU")
    async with pipe_pool.acquire() as conn:
        with pytest.raises(asyncpg.IntegrityConstraintViolationError):
            async with conn.transaction():
                await results.store(conn, [results.decode_result(encode(bad))], now=utcnow())


async def test_a_redelivery_alone_in_its_batch_is_the_full_row_the_next_result_is_compared_with(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """The two takes of the test above, made certain: the next result, saying what the
    redelivered one said, is stored compact and reads back with its own facts (not those of
    the changed result stored between them)."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    at = utcnow().replace(hour=0, minute=30, second=0, microsecond=0)
    if at > utcnow() - timedelta(minutes=10):
        at -= timedelta(days=1)
    same = [routine(job_ids, monitor, cc, at + timedelta(minutes=n), n) for n in range(4)]
    changed = msgspec.structs.replace(same[2], banner="220 other")
    for res in (same[0], same[1], changed):
        await publish(pipeline.js, res)
        assert await pipeline.ingester.burst() == 1
    await publish(pipeline.js, same[1])
    assert await pipeline.ingester.burst() == 0
    await publish(pipeline.js, same[3])
    assert await pipeline.ingester.burst() == 1
    rows = await stored(pipe_pool, pid)
    assert [r["detail_ms"] is None for r in rows] == [True, False, True, True]
    items = await listed(api, org, pid)
    assert [{k: v for k, v in i.items() if k != "storedAt"} for i in items] == [
        wire(r) for r in (same[0], same[1], changed, same[3])
    ]


@pytest.mark.parametrize(
    "expression",
    [
        "result_status(r.status)",
        "result_status_code(result_status(r.status))",
        "result_country_code(result_country(r.country))",
        "result_phase_ms(r.connect_us)",
    ],
)
async def test_result_codes_are_inlined_into_the_statements_using_them(
    pipe_pool: asyncpg.Pool, expression: str
) -> None:
    """The planner replaces each code function with its body (no call per row through the
    function executor), and a NULL still gives NULL."""
    async with pipe_pool.acquire() as conn:
        plan = await conn.fetch(f"EXPLAIN VERBOSE SELECT {expression} FROM result_rows r")
        nulls = await conn.fetchval(
            "SELECT array[result_status(NULL), result_status_code(NULL)::text,"
            " result_country_code(NULL)::text, result_phase_ms(NULL)::text]"
        )
    output = [line[0].strip() for line in plan if line[0].strip().startswith("Output:")]
    assert output and not any("result_" in line for line in output), output
    assert nulls == [None, None, None, None]


async def test_a_result_reads_its_details_from_its_own_utc_day(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """Routine results over a UTC midnight, in one batch and one at a time: the first after
    midnight is stored whole, so every result's details come from a full row of its own UTC
    day (`check_results.detail_at`), which is what lets readers bound the days of
    `result_details` they open; the readers so bounded find every result after midnight."""
    a, b = countries.take(2)
    midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    if midnight > utcnow() - timedelta(minutes=10):
        midnight -= timedelta(days=1)  # all in the past
    for cc, one_batch in ((a, True), (b, False)):
        monitor = await create(api, org, allowedCheckCountryCodes=[cc])
        sent = [
            routine(job_ids, monitor, cc, midnight + timedelta(minutes=n), n) for n in range(-3, 3)
        ]
        for res in sent:
            await publish(pipeline.js, res)
            if not one_batch:
                assert await pipeline.ingester.burst() == 1
        if one_batch:
            assert await pipeline.ingester.burst() == len(sent)
        rows = await stored(pipe_pool, monitor["publicId"])
        assert [r["detail_ms"] is None for r in rows] == [True, False, False, True, False, False]
        async with pipe_pool.acquire() as conn:
            days = await conn.fetch(
                "SELECT r.scheduled_at, r.detail_at FROM check_results r"
                " JOIN monitors m ON m.id = r.monitor_id WHERE m.public_id = $1::uuid"
                " ORDER BY r.scheduled_at",
                monitor["publicId"],
            )
            assert [d["detail_at"].date() for d in days] == [d["scheduled_at"].date() for d in days]
            monitor_id = await conn.fetchval(
                "SELECT id FROM monitors WHERE public_id = $1::uuid", monitor["publicId"]
            )
            after = await alert_state.results_after(
                conn, monitor_id, midnight - timedelta(seconds=30), 50, WALL.now()
            )
        assert [r.scheduled_at for r in after.rows] == [
            midnight + timedelta(minutes=n) for n in range(3)
        ]
