"""Uptime is time (SQL `uptime_ms`, the one rule every uptime reader calls), on real PostgreSQL:
a table of cases, then generated histories whose true time up and down the harness knows,
stored in random order."""

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from controller.db.pool import Conn
from controller.ingest import store

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
UP, DOWN, MISSED, INCONCLUSIVE, REPLACED_MISSED = 0, 1, 2, 3, 10
S = 1000  # ms per second

# (name, results as (seconds after T0, country, status code), window in seconds,
#  expected per country: (up s, down s, covered from s))
CASES: list[tuple[str, list[tuple[int, str, int]], int, dict[str, tuple[int, int, int]]]] = [
    (
        # The trial: a 14-minute-old monitor, one 60 s outage confirmed by an extra round.
        "confirmation round adds no weight",
        [(m * 60, "DE", UP) for m in range(14) if m not in (5,)]
        + [(300, "DE", DOWN), (310, "DE", DOWN), (360, "DE", UP)],
        840,
        {"DE": (780, 60, 0)},
    ),
    (
        "only missed rounds: no time known",
        [(0, "DE", MISSED), (60, "DE", MISSED)],
        120,
        {"DE": (0, 0, 0)},
    ),
    (
        "a missed round ends the known state",
        [(0, "DE", UP), (120, "DE", MISSED), (240, "DE", UP)],
        840,
        {"DE": (720, 0, 0)},
    ),
    (
        "inconclusive counts for neither",
        [(0, "DE", DOWN), (60, "DE", INCONCLUSIVE), (90, "DE", DOWN)],
        120,
        {"DE": (0, 90, 0)},
    ),
    (
        "a replaced missed round counts not at all",
        [(0, "DE", UP), (60, "DE", REPLACED_MISSED)],
        120,
        {"DE": (120, 0, 0)},
    ),
    (
        "the state at the window's start comes from before it",
        [(-30, "DE", DOWN), (60, "DE", UP)],
        840,
        {"DE": (780, 60, 0)},
    ),
    (
        "older than a day before the window: not known",
        [(-90000, "DE", DOWN), (60, "DE", UP)],
        840,
        {"DE": (780, 0, 60)},
    ),
    ("a young monitor covers from its first result", [(600, "DE", UP)], 840, {"DE": (240, 0, 600)}),
    (
        "results after the window do not count",
        [(0, "DE", UP), (900, "DE", DOWN)],
        840,
        {"DE": (840, 0, 0)},
    ),
    (
        "countries apart",
        [(0, "DE", UP), (0, "FR", DOWN), (420, "FR", UP)],
        840,
        {"DE": (840, 0, 0), "FR": (420, 420, 0)},
    ),
]


async def _store(conn: Conn, monitor: int, rows: Sequence[tuple[int, str, int]]) -> None:
    """Result rows as the ingester stores them (times in ms after T0), in the order given."""
    for at_ms, country, status in rows:
        job = uuid.uuid4()
        await conn.execute(
            "INSERT INTO result_rows (scheduled_at, monitor_id, job, country, status, tag)"
            " VALUES ($1, $2, $3, result_country_code($4), $5, result_tag($3))",
            T0 + timedelta(milliseconds=at_ms),
            monitor,
            job,
            country,
            status,
        )


def _monitor() -> int:
    return 10**12 + random.SystemRandom().randrange(10**9)


@pytest.mark.parametrize(
    ("name", "results", "window", "expected"), CASES, ids=[c[0] for c in CASES]
)
async def test_rule(
    pool: asyncpg.Pool,
    name: str,
    results: list[tuple[int, str, int]],
    window: int,
    expected: dict[str, tuple[int, int, int]],
) -> None:
    monitor = _monitor()
    async with pool.acquire() as conn:
        await _store(conn, monitor, [(s * S, cc, st) for s, cc, st in reversed(results)])
        got = await store.state_time(conn, monitor, T0, T0 + timedelta(seconds=window))
    assert {
        t.country: (t.up_ms / S, t.down_ms / S, (t.covered_from - T0).total_seconds()) for t in got
    } == expected


def _history(rng: random.Random) -> tuple[list[tuple[int, str, int]], int, int, int, int]:
    """A country's results over several hours: states of random length, each starting at its
    first result, rounds every `interval` with jitter, confirmation rounds right after a change,
    missed rounds now and then (the time to the next result is known to be neither). Returns
    the results, the true up and down ms, the window's end (ms) and the share of up results
    among up and down ones (what counting samples said, in thousandths of a percent)."""
    interval = rng.choice([30, 60, 300]) * S
    t, up_ms, down_ms = 0, 0, 0
    results: list[tuple[int, str, int]] = []
    state = UP
    until = rng.randrange(3, 8) * 3600 * S
    while t < until:
        rounds = rng.randrange(1, 40) if state == UP else rng.randrange(1, 6)
        for i in range(rounds):
            if t >= until:
                break
            gap = interval + rng.randrange(-interval // 10, interval // 10 + 1)
            if i > 0 and rng.random() < 0.05:
                results.append((t, "DE", rng.choice([MISSED, INCONCLUSIVE])))  # time unknown
            else:
                results.append((t, "DE", state))
                span = min(gap, until - t)
                if state == UP:
                    up_ms += span
                else:
                    down_ms += span
                if i == 0 and rng.random() < 0.7:  # a confirmation round soon after the change
                    results.append((t + rng.randrange(1, gap // 3), "DE", state))
            t += gap
        state = DOWN if state == UP else UP
    counted = [s for _, _, s in results if s in (UP, DOWN)]
    samples = 100 * counted.count(UP) / len(counted)
    return results, up_ms, down_ms, until, round(samples * 1000)


@pytest.mark.parametrize("seed", [1, 2, 3, 66, 2026])
async def test_generated_histories_against_ground_truth(pool: asyncpg.Pool, seed: int) -> None:
    rng = random.Random(seed)
    results, up_ms, down_ms, until, samples = _history(rng)
    rng.shuffle(results)
    monitor = _monitor()
    async with pool.acquire() as conn:
        await _store(conn, monitor, results)
        got = await store.state_time(conn, monitor, T0, T0 + timedelta(milliseconds=until))
    (de,) = got
    truth = 100 * up_ms / (up_ms + down_ms)
    print(
        f"seed {seed}: {len(results)} results over {until / 3600 / S:.1f} h; true uptime"
        f" {truth:.3f} %, time-weighted {100 * de.up_ms / (de.up_ms + de.down_ms):.3f} %,"
        f" counting samples {samples / 1000:.3f} %"
    )
    assert (de.up_ms, de.down_ms, de.covered_from) == (up_ms, down_ms, T0)
