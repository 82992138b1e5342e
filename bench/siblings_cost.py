"""The same-address sibling search's cost (issue 80): `confirm_store.SIBLINGS_QUERY` for one
monitor of a customer of MONITORS SMTP monitors after a day of results, on a real (embedded)
PostgreSQL, before and after migration 0144's partial index on the rows naming an address;
and the ingest path's cost (`controller.ingest.store.store`, batches of BATCH results) with
and without the index, in turns in the same run.

Two customers of MONITORS monitors each (DE and US every INTERVAL_S over a day): one whose
results name no address (a down server's checks, an agent reporting none: the shape the
simulation measured at 241 ms a call), one whose results all name one. Each query figure is
the median of CALLS calls on one connection; ingest is results per second of wall time and
the CPU seconds per 1,000 results of the PostgreSQL backend and of this process (best of
TURNS turns each way). Target: a call under 10 ms in both shapes with the index, ingest no
more than a few percent slower. The shape whose results name addresses is printed, not
judged: each candidate's latest rows are still read (one index scan per partition each)."""

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import asyncpg

from controller.access import accounts_store as accounts
from controller.access import customers_store as customers
from controller.db.migrate import migrate
from controller.ingest import store as results
from controller.scheduling import confirm, confirm_store
from shared import embedded
from shared.messages import encode
from shared.timefmt import utcnow
from testkit.common import cpu_s, discard_logs, machine, smtp_result, verdict

MONITORS = 1000
COUNTRIES = ("DE", "US")
INTERVAL_S = 300
CALLS = 15
BATCH = 50
INGEST = 4000  # results stored per ingest turn
TURNS = 3
TARGET_MS = 10.0
INDEX = Path(__file__).parent.parent / "controller/db/migrations/0144_result_addresses.sql"


async def _seed(conn: asyncpg.Connection) -> dict[str, list[asyncpg.Record]]:
    org_id = await accounts.ensure_organization(conn, "bench")
    found = {}
    for shape in ("without", "with"):
        customer = await customers.create(conn, org_id, shape)
        found[shape] = await conn.fetch(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port,"
            " status, check_interval, timeout_seconds, allowed_country_codes, config)"
            " SELECT $1, $2, 'smtp', $3 || g, $3 || g || '.example.com', 25, 'active', $4, 10,"
            " $5, '{}'::jsonb FROM generate_series(1, $6) g RETURNING id, public_id",
            org_id,
            customer.id,
            f"{shape}-",
            INTERVAL_S,
            list(COUNTRIES),
            MONITORS,
        )
    now = utcnow()
    for shape, ms in found.items():
        await conn.execute(
            "INSERT INTO result_details (scheduled_at, monitor_id, country, tag, stored_at,"
            " monitor_public_id, monitor_type, message, address)"
            " SELECT $2::timestamptz - g * $3::int * interval '1 s', m.id, c, 0, $2,"
            " m.public_id, 'smtp', '',"
            " CASE WHEN $5::boolean THEN '192.0.2.' || (m.id % 200) END"
            " FROM unnest($1::bigint[], $6::uuid[]) AS m(id, public_id)"
            " CROSS JOIN generate_series(1, $4) g CROSS JOIN (VALUES (1::smallint), (2)) cc(c)",
            [m["id"] for m in ms],
            now,
            INTERVAL_S,
            86400 // INTERVAL_S,
            shape == "with",
            [m["public_id"] for m in ms],
        )
    await conn.execute("ANALYZE")
    return found


async def _call_ms(conn: asyncpg.Connection, monitor_id: int) -> float:
    now = utcnow()
    times = []
    for _ in range(CALLS):
        t = time.perf_counter()
        await conn.fetch(
            confirm_store.SIBLINGS_QUERY,
            monitor_id,
            now - confirm.RECENT,
            False,
            confirm.SIBLINGS_MAX,
            now - timedelta(days=1),
            results.ADDRESSES_MAX,
            now,
        )
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def _ingest(
    conn: asyncpg.Connection, ids: list[str], turn: int, backend: int
) -> tuple[float, float, float]:
    """Store INGEST results (half naming an address) in batches of BATCH: results per second,
    and the backend's and this process's CPU seconds per 1,000 results."""
    base = utcnow().replace(microsecond=0) + timedelta(hours=1, minutes=turn)
    rows = []
    for i in range(INGEST):
        at = base + timedelta(milliseconds=i // (len(ids) * len(COUNTRIES)))
        res = smtp_result(
            ids[i % len(ids)],
            COUNTRIES[(i // len(ids)) % len(COUNTRIES)],
            at,
            status="up",
            message="ok",
            banner="220 mx.example.com ESMTP",
            address="192.0.2.10" if i % 2 else None,
        )
        rows.append(results.decode_result(encode(res)))
    pg0, me0, t0 = cpu_s(backend), time.process_time(), time.perf_counter()
    for k in range(0, len(rows), BATCH):
        async with conn.transaction():
            await results.store(conn, rows[k : k + BATCH], now=utcnow())
    wall = time.perf_counter() - t0
    pg, me = cpu_s(backend) - pg0, time.process_time() - me0
    return INGEST / wall, pg * 1000 / INGEST, me * 1000 / INGEST


async def _run() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        server, url = embedded.start_postgres(Path(tmp) / "pg", throwaway=True)
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            await conn.execute("DROP INDEX IF EXISTS result_details_addressed")
            t = time.perf_counter()
            found = await _seed(conn)
            rows = await conn.fetchval("SELECT count(*) FROM result_details")
            print(
                f"siblings-cost ({machine()}): {MONITORS:,} monitors a customer, {rows:,} rows"
                f" seeded in {time.perf_counter() - t:.0f} s"
            )
            probe = {shape: ms[len(ms) // 2]["id"] for shape, ms in found.items()}
            ids = [str(m["public_id"]) for m in found["with"]]
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            figures: dict[str, dict[str, list[tuple[float, float, float]] | float]] = {}
            for turn in range(TURNS):
                for index in (False, True):
                    tag = "after" if index else "before"
                    if index:
                        await conn.execute(INDEX.read_text())
                    else:
                        await conn.execute("DROP INDEX IF EXISTS result_details_addressed")
                    await conn.execute("ANALYZE result_details")
                    seen = figures.setdefault(tag, {})
                    for shape, mid in probe.items():
                        ms = await _call_ms(conn, mid)
                        prev = seen.get(shape)
                        seen[shape] = ms if not isinstance(prev, float) else min(prev, ms)
                    got = seen.setdefault("ingest", [])
                    assert isinstance(got, list)
                    got.append(await _ingest(conn, ids, 2 * turn + index, backend))
            for tag, seen in figures.items():
                ingest = seen["ingest"]
                assert isinstance(ingest, list)
                rate = max(r for r, _, _ in ingest)
                pg = min(p for _, p, _ in ingest)
                me = min(m for _, _, m in ingest)
                print(
                    f"  {tag:6} sibling call, no addresses: {seen['without']:7.1f} ms,"
                    f" addresses: {seen['with']:7.1f} ms; ingest {rate:6.0f} results/s,"
                    f" CPU per 1,000: PostgreSQL {pg:.3f} s, Python {me:.3f} s"
                )
            after = figures["after"]
            without = after["without"]
            ok = isinstance(without, float) and without < TARGET_MS
            print(f"  target: a call under {TARGET_MS:g} ms with no addresses: {verdict(ok)}")
            return ok
        finally:
            await conn.close()
            server.cleanup()


def run() -> bool:
    discard_logs()
    return asyncio.run(_run())


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
