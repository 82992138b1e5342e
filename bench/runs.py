"""Runs: what a routine result would cost PostgreSQL if a monitor's routine rounds were stored
together, a run to a row (an experiment for issue 24; bench/results/scaling-history.md, "Routine
rounds stored as runs"). No target.

On `python -m bench store`'s database (MONITORS SMTP monitors, DE and US, a deployment's
partitions, one connection, the backend's CPU from /proc), taking turns over the same kind of
rounds: `results.store` as the ingester calls it (batches of 140); lean statements that store
one round a row, built up a piece at a time (each monitor looked up, the row into `result_rows`,
its hour's rollup, its state moved); and a run table, one row per monitor and country holding
RUN rounds (the first round's time, the step, arrays of latencies and of start and end offsets)
with the rollup and the state moved once a run. The lean statements and the runs leave out what
the real statement does for each result besides (the agent's id, the phases, the checks that a
row may be compact, the pointer to its full row, the alerter's queue marks): an order of
magnitude, not a like-for-like figure.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from bench.store import BATCH, COUNTRIES, MONITORS, Rounds, stored_rounds
from controller.db.pool import Conn
from controller.ingest.pack_rules import packed_before
from controller.ingest.store import LATENCY_BOUNDS_MS
from shared.timefmt import utcnow
from testkit.common import cpu_s, machine, steady_database

RUN = 6  # rounds a run row holds
RUNS_A_BATCH = 23  # 138 results, as BATCH
PASSES = 3
STEP_MS = 10_000

_BUCKETS = len(LATENCY_BOUNDS_MS) + 1  # result_latency_bounds() and one more
_LATENCY_ADD = ", ".join(f"o.latency[{b + 1}] + EXCLUDED.latency[{b + 1}]" for b in range(_BUCKETS))
_RUNS_TABLE = """CREATE TABLE bench_runs (monitor_id bigint, first_at timestamptz,
    country smallint, step_ms int, latency real[], started_ms int[], finished_ms int[],
    PRIMARY KEY (monitor_id, first_at, country))"""
# One element of $1: [public id, country, first round's time, step ms, latencies, started ms,
# finished ms, job id]; `n` rounds.
_INPUT = """r AS (
    SELECT m.id AS monitor_id, result_country_code(e->>1) AS country, e->>1 AS cc,
        (e->>2)::timestamptz AS first_at, (e->>3)::int AS step_ms,
        ARRAY(SELECT x::text::real FROM jsonb_array_elements(e->4) x) AS latency,
        ARRAY(SELECT x::text::int FROM jsonb_array_elements(e->5) x) AS started,
        ARRAY(SELECT x::text::int FROM jsonb_array_elements(e->6) x) AS finished,
        jsonb_array_length(e->4) AS n, (e->>7)::uuid AS job
    FROM jsonb_array_elements($1::text::jsonb) e
    CROSS JOIN LATERAL (SELECT m.id FROM monitors m WHERE m.public_id = (e->>0)::uuid OFFSET 0) m
)"""
_ROW = """ins AS (
    INSERT INTO result_rows AS o (scheduled_at, monitor_id, response_time_ms, job, started_ms,
        finished_ms, stored_ms, detail_ms, agent, country, status, tag, ref_tag)
    SELECT first_at, monitor_id, latency[1], job, started[1], finished[1], 5, 10000, 1, country,
        0, result_tag(job), 0 FROM r
    ORDER BY monitor_id, first_at, country
    ON CONFLICT (monitor_id, scheduled_at, country, tag) DO UPDATE SET agent = EXCLUDED.agent
    WHERE o.agent IS NULL
    RETURNING o.monitor_id, o.scheduled_at AS first_at, o.country)"""
_RUN_ROW = """ins AS (
    INSERT INTO bench_runs (monitor_id, first_at, country, step_ms, latency, started_ms,
        finished_ms)
    SELECT monitor_id, first_at, country, step_ms, latency, started, finished FROM r
    ORDER BY monitor_id, first_at, country ON CONFLICT DO NOTHING
    RETURNING monitor_id, first_at, country)"""
# The run's latencies counted by `result_latency_bounds()` bucket, added as `results.store` adds
# them.
_ROLLUP = f"""roll AS (
    INSERT INTO result_rollups AS o (hour, monitor_id, country, up, down, missed, latency)
    SELECT date_trunc('hour', r.first_at, 'UTC'), r.monitor_id, r.country, r.n, 0, 0,
        ARRAY(SELECT count(l)::int FROM generate_series(0, {_BUCKETS - 1}) b
            LEFT JOIN unnest(r.latency) l ON width_bucket(l, result_latency_bounds()) = b
            GROUP BY b ORDER BY b)
    FROM r JOIN ins USING (monitor_id, first_at, country) ORDER BY 2, 1, 3
    ON CONFLICT (monitor_id, hour, country) DO UPDATE SET up = o.up + EXCLUDED.up,
        latency = ARRAY[{_LATENCY_ADD}])"""
# The columns `results.store` moves for a routine round.
_STATE = """UPDATE monitor_country_state s SET last_status = 'up', last_error_kind = NULL,
    last_message = '', last_scheduled_at = r.last_at, last_job_id = r.job::text,
    last_checked_at = greatest(s.last_checked_at, r.last_at + r.finished[r.n] * interval '1 ms'),
    consecutive_failures = 0, consecutive_successes = s.consecutive_successes + r.n,
    last_response_time_ms = r.latency[r.n], last_phases_ms = ARRAY[0.1, 0.4, 1.0]::float8[],
    last_cert_not_after = NULL, updated_at = now()
FROM (SELECT r.*, r.first_at + (r.n - 1) * r.step_ms * interval '1 ms' AS last_at
    FROM r JOIN ins USING (monitor_id, first_at, country) ORDER BY 1, 3) r
WHERE s.monitor_id = r.monitor_id AND s.country = r.cc"""

# name: (statement, rounds an element holds, elements a batch)
LEAN: dict[str, tuple[str, int, int]] = {
    "lean: parse, monitor looked up": (f"WITH {_INPUT} SELECT count(*) FROM r", 1, BATCH),
    "lean: + the row": (f"WITH {_INPUT}, {_ROW} SELECT count(*) FROM ins", 1, BATCH),
    "lean: + its rollup": (f"WITH {_INPUT}, {_ROW}, {_ROLLUP} SELECT count(*) FROM ins", 1, BATCH),
    "lean: + its state moved": (f"WITH {_INPUT}, {_ROW}, {_ROLLUP} {_STATE}", 1, BATCH),
    f"runs of {RUN}": (f"WITH {_INPUT}, {_RUN_ROW}, {_ROLLUP} {_STATE}", RUN, RUNS_A_BATCH),
}


def _lean_rounds(
    conn: Conn, backend: int, ids: list[str], first: datetime
) -> Callable[[str, int, int], Awaitable[tuple[float, float, int]]]:
    """A statement's pass over every monitor and country, `rounds` to an element: its CPU
    (PostgreSQL's, the client's) and the results it stored. Each pass takes the rounds after
    the last pass's."""
    next_at = [first]

    async def one(sql: str, rounds: int, per_batch: int) -> tuple[float, float, int]:
        at = next_at[0]
        next_at[0] = at + timedelta(milliseconds=STEP_MS * rounds)
        rows = [
            [p, cc, at.isoformat(), STEP_MS, [2.5] * rounds, [3] * rounds, [6] * rounds,
             str(uuid.uuid4())]
            for p in ids for cc in COUNTRIES
        ]  # fmt: skip
        pg, client = cpu_s(backend), time.process_time()
        for start in range(0, len(rows), per_batch):
            batch = rows[start : start + per_batch]
            async with conn.transaction():
                if sql.endswith(_STATE):  # "UPDATE n": the states moved
                    done = int((await conn.execute(sql, json.dumps(batch))).split()[-1])
                else:
                    done = await conn.fetchval(sql, json.dumps(batch))
            if done != len(batch):  # a statement that stored nothing measures nothing
                raise RuntimeError(f"{done} of {len(batch)} stored")
        return cpu_s(backend) - pg, time.process_time() - client, len(rows) * rounds

    return one


async def _measure() -> dict[str, Rounds]:
    async with steady_database("mailprobe-bench-runs-", MONITORS, list(COUNTRIES)) as (conn, ids):
        await conn.execute(_RUNS_TABLE)
        backend: int = await conn.fetchval("SELECT pg_backend_pid()")
        today = stored_rounds(conn, backend, ids)
        for _ in range(2):
            await today(BATCH)  # the states' full rows
        # later than every round of `results.store`'s (ten seconds apart from two minutes
        # after `packed_before`), so that no round is stored twice
        lean = _lean_rounds(conn, backend, ids, packed_before(utcnow()) + timedelta(minutes=40))
        measured: dict[str, Rounds] = {"results.store": [], **{name: [] for name in LEAN}}
        for _ in range(PASSES):
            measured["results.store"] += [await today(BATCH) for _ in range(2)]
            for name, (sql, rounds, per_batch) in LEAN.items():
                measured[name] += [await lean(sql, rounds, per_batch) for _ in range(2)]
        return measured


def run() -> bool:
    print(
        f"runs ({machine()}): PostgreSQL's CPU per routine result, {MONITORS:,} monitors x"
        f" {len(COUNTRIES)} countries; no target"
    )
    for name, rounds in asyncio.run(_measure()).items():
        stored = sum(n for _, _, n in rounds)
        pg = 1e6 * sum(pg for pg, _, _ in rounds) / stored
        client = 1e6 * sum(client for _, client, _ in rounds) / stored
        print(f"  {name:>32}: PostgreSQL {pg:6.1f} µs, the client {client:5.1f} µs")
    return True
