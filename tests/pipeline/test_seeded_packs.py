"""Seeded job ids in packs (issue 70, migration 0122), on real PostgreSQL and NATS: PostgreSQL
recomputes a seeded id exactly as the scheduler made it; a database holding packs of both
schemes, and a pack of both (a triggered round, a round of a scheduler before its gate opened),
reads back every result through the view and the API with the jobId it was stored under, its
numbers and its side facts; a redelivered result of a packed hour is recognised under either
scheme, a late one lands once and is merged; an agent cannot pass a seeded id off as another
round's."""

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from msgspec.structs import replace
from structlog.testing import capture_logs

from controller.ingest import packer
from controller.jobs.rules import JobIds, is_seeded, seeded_id
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.clock import WALL
from shared.messages import CheckResult
from shared.sidechecks.reverse_dns import PtrCheck, ReverseDns
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline
from tests.pipeline.test_compact_results import listed, routine
from tests.pipeline.test_ingest import publish, result
from tests.pipeline.test_packed_results import answers, closed_hour, kept_ids, view_rows

FACTS = ReverseDns(addresses=[PtrCheck(address="192.0.2.1", names=["mx.test"], confirmed=[])])


async def test_postgresql_recomputes_the_seeded_ids_python_makes(pipe_pool: asyncpg.Pool) -> None:
    rng = random.Random(70)
    base = datetime(2026, 11, 27, 13, 0, tzinfo=UTC)
    times = [
        base,
        base - timedelta(milliseconds=1),  # the last ms of the hour before
        base + timedelta(minutes=59, seconds=59, milliseconds=999),
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(2099, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
        *(base + timedelta(milliseconds=rng.randrange(10**10)) for _ in range(200)),
    ]
    seeds = [rng.randbytes(16) for _ in times]
    async with pipe_pool.acquire() as conn:
        made = await conn.fetch(
            "SELECT result_seeded_job(s, (extract(epoch FROM t - date_trunc('hour', t, 'UTC'))"
            " * 1000)::int)::text AS id"
            " FROM unnest($1::bytea[], $2::timestamptz[]) WITH ORDINALITY AS u(s, t, i) ORDER BY i",
            seeds,
            times,
        )
    assert [r["id"] for r in made] == [seeded_id(s, t) for s, t in zip(seeds, times, strict=True)]


def ids_of(settings: ControllerSettings, seeded: bool) -> JobIds:
    return JobIds.from_box(
        SecretBox(settings.secrets.secrets_key or ""),
        lambda: datetime(2000, 1, 1, tzinfo=UTC) if seeded else None,
    )


async def sent(
    pipeline: WiredPipeline, results: list[CheckResult], stored: int | None = None
) -> list[CheckResult]:
    for res in results:
        await publish(pipeline.js, res)
    assert await pipeline.ingester.burst() == (len(results) if stored is None else stored)
    return results


async def test_packs_of_both_schemes_read_back_with_their_job_ids(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    settings: ControllerSettings,
    job_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org)
    pid = monitor["publicId"]
    keyed, seeded = ids_of(settings, False), ids_of(settings, True)
    newer = closed_hour()
    if newer.hour == 0:  # the first result of a UTC day is stored whole, never packed
        newer -= timedelta(hours=1)
    older = newer - timedelta(hours=1)
    # The older hour as releases before seeded ids made it.
    first = [routine(keyed, monitor, cc, older + timedelta(minutes=n), n) for n in range(6)]
    # The newer: a scheduler before its gate opened (minute 0), seeded ids after, a triggered
    # round (keyed, always) at minute 3, side facts on a routine round at minute 4.
    second = [
        routine(seeded if n else keyed, monitor, cc, newer + timedelta(minutes=n), n)
        for n in range(8)
    ]
    at = newer + timedelta(minutes=3, seconds=20)
    triggered = routine(keyed, monitor, cc, at, 3)
    second.insert(4, replace(triggered, job_id=keyed.make(pid, cc, at, trigger=True)))
    second[6] = replace(second[6], side_checks={"reverse_dns": FACTS})
    await sent(pipeline, first + second)
    before_rows, before_api = await view_rows(pipe_pool, pid), await answers(api, org, pid)
    assert [r["job_id"] for r in before_rows] == [r.job_id for r in first + second]

    while await packer.pack_pass(pipe_pool, job_ids, WALL.now()):
        pass

    # The first result stays a row (the full one, every other says what it said); the packs keep
    # the keyed ids only: the older hour's 5, the newer's minute 0 and its triggered round.
    assert await kept_ids(pipe_pool, pid) == [(5, False), (2, True)]
    assert await view_rows(pipe_pool, pid) == before_rows
    assert await answers(api, org, pid) == before_api
    items = await listed(api, org, pid)
    assert [i["jobId"] for i in items] == [r.job_id for r in first + second]
    assert items[len(first) + 6]["sideChecks"] == {"reverse_dns": _json(FACTS)}
    async with pipe_pool.acquire() as conn:
        in_packs = await conn.fetchval(
            "SELECT sum(results) FROM result_packs p JOIN monitors m ON m.id = p.monitor_id"
            " WHERE m.public_id = $1::uuid",
            pid,
        )
    assert in_packs == len(first + second) - 1

    # Every result redelivered: each is known, in its pack or its row.
    await sent(pipeline, first + second, stored=0)
    # A late result of the newer hour lands once, and the next pass merges it in.
    late = routine(seeded, monitor, cc, newer + timedelta(minutes=30), 30)
    await sent(pipeline, [late])
    await sent(pipeline, [late], stored=0)
    while await packer.pack_pass(pipe_pool, job_ids, WALL.now()):
        pass
    assert await kept_ids(pipe_pool, pid) == [(5, False), (2, True)]
    assert [i["jobId"] for i in await listed(api, org, pid)] == [
        r.job_id for r in first + second + [late]
    ]
    await sent(pipeline, [late, second[-1]], stored=0)


def _json(facts: ReverseDns) -> dict[str, Any]:
    return {
        "addresses": [
            {"address": a.address, "names": a.names, "confirmed": a.confirmed, "error": ""}
            for a in facts.addresses
        ],
        "truncated": False,
        "canaries": None,
    }


async def test_an_agent_cannot_pass_off_a_seeded_id_as_another_round_s(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    settings: ControllerSettings,
) -> None:
    """An agent of `mine` has its own rounds' seeded ids and nothing else: another country's id
    of the same round (had it seen one), its own id moved to another time, or any version 8
    UUID is moved aside; the genuine result is stored."""
    mine, theirs = countries.take(2)
    monitor = await create(api, org)
    pid, at = monitor["publicId"], utcnow()
    seeded = ids_of(settings, True)
    genuine = result(seeded, monitor, mine, "up", at)
    forged = [
        replace(genuine, status="down", job_id=seeded.make(pid, theirs, at)),
        replace(
            result(seeded, monitor, mine, "down", at + timedelta(minutes=1)), job_id=genuine.job_id
        ),
        replace(
            genuine,
            status="down",
            job_id=str(uuid.UUID(genuine.job_id[:14] + "8" + uuid.uuid4().hex[13:])),
        ),
    ]
    assert all(is_seeded(f.job_id) for f in forged)
    for res in [*forged, genuine]:
        await publish(pipeline.js, res)
    with capture_logs() as logs:
        assert await pipeline.ingester.burst() == 1
    errors = [e["error"] for e in logs if e["event"] == "malformed result moved aside"]
    assert errors == ["its jobId is not the id of a round sent to its country"] * 3
    async with pipe_pool.acquire() as conn:
        stored = await conn.fetch(
            "SELECT r.job_id, r.status FROM check_results r JOIN monitors m ON m.id = r.monitor_id"
            " WHERE m.public_id = $1::uuid",
            pid,
        )
    assert [(r["job_id"], r["status"]) for r in stored] == [(genuine.job_id, "up")]
