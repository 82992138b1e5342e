"""Uptime is time, before and after retention: generated histories of several days whose true
time up and down the harness knows (seeded, figures printed), read back through `/uptime` and
the status pages' days while the raw results are all there and again once retention dropped
all but the last days of them (CHECK_RAW_DAYS under the week and month windows); a day kept
once however often; an hour's time unchanged by packing."""

import asyncio
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg
import httpx

from controller.ingest import packer, retention, retention_store
from controller.ingest import store as results
from controller.jobs.rules import JobIds
from controller.statuspages import pages_store
from shared.clock import WALL
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline
from tests.pipeline.test_packed_results import closed_hour, sent_hour

UP, DOWN, MISSED, INCONCLUSIVE = 0, 1, 2, 3
NEITHER = -1  # after a missed or inconclusive round: time known to be neither up nor down
DAY = timedelta(days=1)
WINDOWS = {"day": DAY, "week": 7 * DAY, "month": 30 * DAY}
HISTORY = timedelta(days=9, hours=7)
RAW_DAYS = 3
SEEDS = (7, 66, 2026)


@dataclass(frozen=True)
class Told:
    """One stored result, and the state the generator says holds from it to the next result
    of its country (a confirmation round repeats the state it confirms)."""

    at: datetime
    country: str
    status: int
    state: int


def history(rng: random.Random, countries: Sequence[str], end: datetime) -> list[Told]:
    """Per country, rounds every 15 to 30 minutes (with jitter) from HISTORY before `end`:
    runs of up and down of random length, each from its first result; a confirmation round
    soon after most changes; now and then a missed or inconclusive round."""
    out: list[Told] = []
    for cc in countries:
        interval = rng.choice([900, 1800])
        t = end - HISTORY + timedelta(seconds=rng.randrange(interval))
        state = rng.choice([UP, DOWN])
        while t < end:
            rounds = rng.randrange(1, 80) if state == UP else rng.randrange(1, 10)
            for i in range(rounds):
                if t >= end:
                    break
                gap = timedelta(seconds=interval + rng.randrange(-interval // 10, interval // 10))
                if i > 0 and rng.random() < 0.04:
                    out.append(Told(t, cc, rng.choice([MISSED, INCONCLUSIVE]), NEITHER))
                else:
                    out.append(Told(t, cc, state, state))
                    if i == 0 and rng.random() < 0.7:  # a confirmation round
                        soon = t + timedelta(seconds=rng.randrange(5, 120))
                        out.append(Told(soon, cc, state, state))
                t += gap
            state = DOWN if state == UP else UP
    return out


def truth(told: Sequence[Told], cc: str, since: datetime, until: datetime) -> tuple[float, float]:
    """Seconds up and down of `cc` in [since, until): each result's state lasts to the
    country's next result, the last one's to `until`."""
    mine = sorted((t for t in told if t.country == cc), key=lambda t: t.at)
    spent = {UP: 0.0, DOWN: 0.0, NEITHER: 0.0}
    for t, after in zip(mine, [*mine[1:], None], strict=True):
        start, stop = max(t.at, since), min(after.at if after else until, until)
        if stop > start:
            spent[t.state] += (stop - start).total_seconds()
    return spent[UP], spent[DOWN]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def store_all(pool: asyncpg.Pool, monitor_id: int, told: Sequence[Told]) -> None:
    """Result rows as the ingester stores them, with partitions for their days."""
    async with pool.acquire() as conn:
        await results.ensure_partitions(conn, min(t.at for t in told), days=HISTORY.days + 2)
        await conn.executemany(
            "INSERT INTO result_rows (scheduled_at, monitor_id, job, country, status, tag)"
            " VALUES ($1, $2, $3, result_country_code($4), $5, result_tag($3))",
            [(t.at, monitor_id, uuid.uuid4(), t.country, t.status) for t in told],
        )


def compare(windows: list[dict[str, Any]], told: Sequence[Told], countries: Sequence[str]) -> str:
    """Assert every window's time per country is the true time; return the week's figures."""
    shown = ""
    for w in windows:
        until = when(w["to"])
        since = until - WINDOWS[w["window"]]
        first = min(t.at for t in told)
        # A window younger than the history starts at its start, the month at the first result.
        assert abs(when(w["from"]) - max(since, first)) < timedelta(milliseconds=1), w
        for cc in countries:
            up, down = truth(told, cc, since, until)
            got = w["countries"][cc]
            off = (got["upSeconds"] - up, got["downSeconds"] - down)
            assert max(map(abs, off)) < 0.005, (w["window"], cc, off)
        if w["window"] == "week":
            shown = f"week {w['overall']['uptimePercent']:.3f} %"
    return shown


async def test_uptime_is_the_true_time_before_and_after_retention(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool, countries: Countries
) -> None:
    ccs = countries.take(2)
    for seed in SEEDS:
        await _one_history(api, org, pipe_pool, seed, ccs)


async def _one_history(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool, seed: int, countries: list[str]
) -> None:
    rng = random.Random(seed)
    monitor = await create(api, org, allowedCheckCountryCodes=countries)
    pid = monitor["publicId"]
    async with pipe_pool.acquire() as conn:
        monitor_id = await conn.fetchval("SELECT id FROM monitors WHERE public_id = $1::uuid", pid)
    told = history(rng, countries, utcnow() - timedelta(minutes=2))
    await store_all(pipe_pool, monitor_id, told)
    url = f"/api/smtp-monitors/{pid}/uptime"

    r = await api.get(url, headers=org.auth())
    assert r.status_code == 200, r.text
    before = compare(r.json()["windows"], told, countries)

    dropped = await retention.one_pass(
        pipe_pool, history_days=90, raw_days=RAW_DAYS, now=WALL.now()
    )
    async with pipe_pool.acquire() as conn:
        raw = await conn.fetchval(
            "SELECT count(*) FROM result_rows WHERE monitor_id = $1", monitor_id
        )
        kept = await conn.fetchval(
            "SELECT count(*) FROM uptime_results WHERE monitor_id = $1", monitor_id
        )
    assert sum(n.startswith("result_rows_p") for n in dropped) >= HISTORY.days - RAW_DAYS
    assert raw < len(told) / 2

    r = await api.get(url, headers=org.auth())
    after = compare(r.json()["windows"], told, countries)
    counted = [t.status for t in told if t.status in (UP, DOWN)]
    print(
        f"seed {seed}: {len(told)} results over {HISTORY}, {raw} left raw and {kept} kept for"
        f" uptime after retention; {before} before, {after} after; counting samples said"
        f" {100 * counted.count(UP) / len(counted):.3f} %"
    )

    # The status pages' days, first summed now that most raw results are gone: each the true
    # time of its UTC day over the countries.
    today = utcnow().date()
    first = min(t.at for t in told).date()
    async with pipe_pool.acquire() as conn:
        days = await pages_store.daily(conn, [monitor_id], first, utcnow())
    settled = {d.day: (d.up_ms / 1000, d.down_ms / 1000) for d in days if d.day < today}
    assert len(settled) == (today - first).days
    for day, (up, down) in settled.items():
        start = datetime.combine(day, time(), UTC)
        sums = [truth(told, cc, start, start + DAY) for cc in countries]
        off = (up - sum(s[0] for s in sums), down - sum(s[1] for s in sums))
        assert max(map(abs, off)) < 0.01, (day, off)


async def test_a_day_is_kept_once_however_often_and_by_whom(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool, countries: Countries
) -> None:
    """Two controllers keeping the same day at once, then a third pass: each result kept once,
    and only a run's first, a day's first and last of each country."""
    de, fr = countries.take(2)
    monitor = await create(api, org, allowedCheckCountryCodes=[de, fr])
    async with pipe_pool.acquire() as conn:
        monitor_id = await conn.fetchval(
            "SELECT id FROM monitors WHERE public_id = $1::uuid", monitor["publicId"]
        )
    day: date = (utcnow() - 4 * DAY).date()
    noon = datetime.combine(day, time(12), UTC)
    statuses = [UP, UP, UP, DOWN, DOWN, MISSED, DOWN, UP, UP, UP]
    told = [Told(noon + timedelta(minutes=m), de, s, s) for m, s in enumerate(statuses)]
    told.append(Told(noon, fr, UP, UP))
    await store_all(pipe_pool, monitor_id, told)
    count = "SELECT count(*) FROM uptime_results WHERE at >= $1 AND at < $1 + interval '1 day'"
    start = datetime.combine(day, time(), UTC)
    async with pipe_pool.acquire() as a, pipe_pool.acquire() as b:
        raw_only = await results.state_time(a, monitor_id, start, start + DAY)
        earlier = await a.fetchval(count, start)
        got = await asyncio.gather(
            retention_store.keep_uptime_days(a, [day]), retention_store.keep_uptime_days(b, [day])
        )
        again = await retention_store.keep_uptime_days(a, [day])
        now_kept = await a.fetchval(count, start)
        # Read while the day is both raw and kept, and once only kept: the same time.
        both = await results.state_time(a, monitor_id, start, start + DAY)
        await a.execute("DELETE FROM result_rows WHERE monitor_id = $1", monitor_id)
        kept_only = await results.state_time(a, monitor_id, start, start + DAY)
        rows = await a.fetch(
            "SELECT result_country(country) AS cc, at, status FROM uptime_results"
            " WHERE monitor_id = $1 ORDER BY cc, at",
            monitor_id,
        )
    kept = [(r["cc"], int((r["at"] - noon).total_seconds() // 60), r["status"]) for r in rows]
    # de: the first up, the first down, the missed round, the down after it, the first up
    # again, the day's last; fr: its only result.
    assert sorted(kept) == sorted(
        [
            (de, 0, UP),
            (de, 3, DOWN),
            (de, 5, MISSED),
            (de, 6, DOWN),
            (de, 7, UP),
            (de, 9, UP),
            (fr, 0, UP),
        ]
    )
    assert sum(got) == now_kept - earlier >= 7, got
    assert again == 0
    assert raw_only == both == kept_only
    # de: 3 min up, 2 down, 1 neither, 1 down, then up to the day's end; fr up from noon.
    assert {t.country: (t.up_ms, t.down_ms) for t in kept_only} == {
        de: ((3 + 12 * 60 - 7) * 60_000, 3 * 60_000),
        fr: (12 * 3600_000, 0),
    }


async def test_packing_an_hour_leaves_its_time_as_it_was(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """The packer moves an hour's routine `up` results out of `result_rows`; every run's first
    result stays a row, so the hour's time is what it was: up 4 minutes, down 1 (the failure
    at minute 4), up again to the hour's end."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    hour = closed_hour()
    await sent_hour(pipeline, job_ids, monitor, cc, hour)
    async with pipe_pool.acquire() as conn:
        monitor_id = await conn.fetchval(
            "SELECT id FROM monitors WHERE public_id = $1::uuid", monitor["publicId"]
        )
        before = await results.state_time(conn, monitor_id, hour, hour + timedelta(hours=1))
    while await packer.pack_pass(pipe_pool, job_ids, WALL.now()):
        pass
    async with pipe_pool.acquire() as conn:
        rows = await conn.fetchval(
            "SELECT count(*) FROM result_rows WHERE monitor_id = $1", monitor_id
        )
        after = await results.state_time(conn, monitor_id, hour, hour + timedelta(hours=1))
    assert rows < 8
    assert before == after
    assert [(t.up_ms, t.down_ms, t.covered_from) for t in after] == [(59 * 60_000, 60_000, hour)]
