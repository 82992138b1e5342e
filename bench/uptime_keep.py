"""Uptime kept at retention: PostgreSQL's CPU to keep what uptime needs of one UTC day of raw
results (`uptime_keep_day`, run by the retention pass before it drops the day), and for
`uptime_ms` to read a month with most of it kept rather than raw.

Embedded PostgreSQL (crash-safe) on a deployment's daily partitions (`steady_partitions`), one
day of MONITORS monitors checked every 5 minutes from two countries (576 results a monitor):
most steady, one in ten with an outage of a few rounds, one in a hundred flapping every round.
Target: keeping a day costs under TARGET_US µs of PostgreSQL CPU per raw result (a deployment
storing 10 million results a day keeps a day within a minute of one core, in a pass that runs
hourly and keeps each day once), and the month read with kept days costs no more than with raw
ones."""

import asyncio
import tempfile
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from controller.db.migrate import migrate
from controller.db.pool import connect
from controller.ingest import retention_store
from controller.ingest import store as results
from shared import embedded
from shared.timefmt import utcnow
from testkit.common import cpu_s, discard_logs, machine, steady_partitions

MONITORS = 2000
ROUNDS = 288  # a day at 5 minutes
READS = 200
TARGET_US = 6.0


async def _measure() -> tuple[int, float, int, float, float, float]:
    with tempfile.TemporaryDirectory(prefix="mailprobe-bench-uptime-") as tmp:
        pg, url = embedded.start_postgres(Path(tmp) / "pg", throwaway=True, crash_safe=True)
        try:
            conn = await connect(url)
            try:
                await migrate(conn)
                await steady_partitions(url)
                day = (utcnow() - timedelta(days=2)).date()
                start = datetime.combine(day, time(), UTC)
                await results.ensure_partitions(conn, start, days=1)
                # status: flapping monitors alternate; one in ten is down for rounds 100-103.
                stored = await conn.execute(
                    "INSERT INTO result_rows (scheduled_at, monitor_id, job, country, status, tag)"
                    " SELECT $1::timestamptz + r * interval '5 minutes' + m * interval '10 ms', m,"
                    " gen_random_uuid(), result_country_code(c), CASE WHEN m % 100 = 0 THEN r % 2"
                    " WHEN m % 10 = 0 AND r BETWEEN 100 AND 103 THEN 1 ELSE 0 END, 0"
                    " FROM generate_series(1, $2) m, generate_series(0, $3 - 1) r,"
                    " (VALUES ('DE'), ('FR')) cc(c)",
                    start,
                    MONITORS,
                    ROUNDS,
                )
                raw = int(stored.split()[-1])
                await conn.execute("ANALYZE result_rows")
                backend: int = await conn.fetchval("SELECT pg_backend_pid()")

                async def month() -> float:
                    before = cpu_s(backend)
                    for i in range(READS):
                        await conn.fetch(
                            "SELECT * FROM uptime_ms($1, $2, $3)",
                            1 + i % MONITORS,
                            start - timedelta(days=29),
                            start + timedelta(days=1),
                        )
                    return (cpu_s(backend) - before) / READS

                read_raw = await month()
                before = cpu_s(backend)
                kept = await retention_store.keep_uptime_days(conn, [day])
                keep_s = cpu_s(backend) - before
                again = await retention_store.keep_uptime_days(conn, [day])
                await results.drop_partitions_before(conn, day + timedelta(days=1))
                read_kept = await month()
                assert again == 0
                return raw, keep_s, kept, read_raw, read_kept, keep_s * 1e6 / raw
            finally:
                await conn.close()
        finally:
            pg.cleanup()


def run() -> bool:
    discard_logs()
    raw, keep_s, kept, read_raw, read_kept, per_result = asyncio.run(_measure())
    ok = per_result < TARGET_US and read_kept <= read_raw * 1.2
    print(f"uptime kept ({machine()}): one day of {MONITORS} monitors x 2 countries x {ROUNDS}")
    print(
        f"  uptime_keep_day: {raw:,} raw results, {kept:,} kept ({100 * kept / raw:.1f} %),"
        f" PostgreSQL {keep_s:.2f} s ({per_result:.2f} µs a result; target < {TARGET_US})"
    )
    print(
        f"  uptime_ms over a month: {1000 * read_raw:.2f} ms a call with the day raw,"
        f" {1000 * read_kept:.2f} ms with it kept (target: no more than 1.2x)"
    )
    print(f"  target: {'ok' if ok else 'FAIL'}")
    return ok
