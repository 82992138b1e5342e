"""Storage: bytes PostgreSQL keeps per stored check result (issue 24).

Target: <= 64 bytes per routine result (one that says what the one before it said: same status,
same facts), in steady state: ROUTINE_HOURS whole UTC hours of rounds every minute (the default
interval), stored, then packed (controller.ingest.packer) and vacuumed, as a running controller
leaves them. Counted as the growth of every relation that holds results (heap, indexes, TOAST,
free space map, every partition; the per-monitor state is not counted, it does not grow with
results) divided by the results stored. Results go in through `store` in batches of BATCH, as
the ingester stores them, for MONITORS monitors from two countries and two agents per country,
under seeded job ids (what schedulers make once every controller accepts them: a pack keeps a
seed, not the ids; controller/jobs/rules.py).
The hours are the last of a day that has closed, so the packer's rebuild of that day's rows'
index (controller.ingest.packer.rebuild_pass) runs too, as it does once a day; the rows' index
before it is printed beside.

Printed too, without a target: bytes per changed or failed result (full detail: message,
banner, TLS facts, capabilities), which stays what it was. Then, on what the routine hours left
(packs and rows of MONITORS monitors, analyzed as autovacuum would), the plans and times of the
API's reads of a monitor's results: a page of its history inside a packed hour, the newest page,
and the monitor with its countries' latest results. Each must read the result relations
through their indexes (no sequential scan of a result relation; checked from the plans
auto_explain reports; relations of up to 64 kB aside), or the bench fails.
"""

import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg

from controller.db.pool import connect
from controller.ingest import packer
from controller.ingest import store as results
from controller.ingest.store import CheckedResult
from controller.monitors.latest_store import monitor_with_latest
from shared import embedded
from shared.clock import WALL
from shared.messages import CheckResult, Phases, TlsInfo, encode
from shared.timefmt import iso_ms, utcnow
from testkit.common import SEEDED_JOB_IDS, seed_monitors, smtp_result, verdict

MONITORS = 500
COUNTRIES = ("DE", "US")
ROUTINE_HOURS = 3
ROUTINE_ROUNDS = 60 * ROUTINE_HOURS
CHANGED_ROUNDS = 6
BATCH = 1_000
TARGET_BYTES = 64
# A relation this small may be read whole by the API's reads (bytes).
SMALL = 64 * 1024
# Every relation that holds results, whichever of them the schema has.
RELATIONS = (
    "check_results",
    "result_rows",
    "result_details",
    "result_rollups",
    "result_agents",
    "result_packs",
)
CAPABILITIES = ["8BITMIME", "CHUNKING", "DSN", "ENHANCEDSTATUSCODES", "PIPELINING", "SIZE 10240000"]


def _result(
    public_id: str, cc: str, at: datetime, rng: random.Random, change: int | None
) -> CheckResult:
    """A check of an SMTP server with STARTTLS; its timings vary from round to round.
    `change`: None for a routine result, else a new banner (even) or a failure (odd)."""
    up = change is None or change % 2 == 0
    ms: Callable[[float], float] = lambda base: round(base * rng.uniform(0.7, 1.6), 3)  # noqa: E731
    response = ms(60.0)
    return smtp_result(
        public_id,
        cc,
        at,
        agent_id=f"{cc.lower()}-agent-{rng.randint(1, 2)}",
        job_ids=SEEDED_JOB_IDS,
        started_at=iso_ms(at + timedelta(milliseconds=rng.randint(1, 40))),
        finished_at=iso_ms(at + timedelta(milliseconds=45 + response)),
        status="up" if up else "down",
        error_kind=None if up else "timeout",
        message="" if up else f"no greeting from mx.example.com within 10 s (round {change})",
        banner=f"220 mx.example.com ESMTP Postfix {change or ''}".strip() if up else None,
        response_time_ms=response,
        phases=Phases(connect_ms=ms(10.0), greeting_ms=ms(15.0), tls_ms=ms(20.0)),
        tls=TlsInfo(
            version="TLSv1.3",
            cipher="TLS_AES_256_GCM_SHA384",
            cert_subject="CN=mx.example.com",
            cert_not_after="2027-01-01T00:00:00.000Z",
            cert_days_left=200,
            mode="starttls",
            cert_sha256="ab" * 32,
            cert_issuer="CN=R11,O=Let's Encrypt,C=US",
        )
        if up
        else None,
        address="192.0.2.10",
        capabilities=CAPABILITIES if up else None,
        capabilities_before_tls=[*CAPABILITIES, "STARTTLS"] if up else None,
    )


async def _sizes(conn: asyncpg.Connection) -> dict[str, int]:
    """Bytes of every result relation (its partitions, indexes and TOAST) and of its heaps."""
    rows = await conn.fetch(
        "SELECT n.name, sum(pg_total_relation_size(t.relid))::int8 AS total,"
        " sum(pg_relation_size(t.relid))::int8 AS heap"
        " FROM unnest($1::text[]) AS n(name)"
        " CROSS JOIN LATERAL pg_partition_tree(to_regclass(n.name)) t"
        " WHERE to_regclass(n.name) IS NOT NULL AND t.isleaf GROUP BY n.name",
        list(RELATIONS),
    )
    sizes = {r["name"]: r["total"] for r in rows}
    sizes |= {f"{r['name']} heap": r["heap"] for r in rows}
    return sizes


async def _store(conn: asyncpg.Connection, rows: list[CheckResult]) -> int:
    stored = 0
    decode = results.decode_result
    for start in range(0, len(rows), BATCH):
        batch = [decode(encode(r)) for r in rows[start : start + BATCH]]
        checked: list[CheckedResult] = batch
        async with conn.transaction():
            stored += await results.store(conn, checked, now=utcnow())
    return stored


async def _bytes_per_result(
    conn: asyncpg.Connection,
    ids: list[str],
    first: datetime,
    rounds: int,
    changed: bool,
    packed: bool = False,
    rebuilt: str | None = None,
) -> tuple[int, float]:
    """Store `rounds` rounds of every monitor and country, then (`packed`) pack their hours and
    vacuum, then (`rebuilt`: the database's URL) run the packer's rebuild of closed days' rows'
    indexes; (results stored, bytes each)."""
    rng = random.Random(24)
    before = await _sizes(conn)
    stored = 0
    for n in range(rounds):
        at = first + timedelta(minutes=n)
        rows = [
            _result(pid, cc, at, rng, n if changed else None) for pid in ids for cc in COUNTRIES
        ]
        stored += await _store(conn, rows)
        if packed and (n + 1) % 60 == 0:
            # The packer's pass once an hour closed, then autovacuum's.
            async with conn.transaction():
                while await packer.pack(conn, SEEDED_JOB_IDS, first, at + timedelta(minutes=1)):
                    pass
            await conn.execute("VACUUM result_rows, result_packs, result_rollups")
    if rebuilt is not None:
        rows_index = (await _sizes(conn))["result_rows"] - before.get("result_rows", 0)
        async with asyncpg.create_pool(rebuilt, min_size=1, max_size=1) as pool:
            names = []
            while name := await packer.rebuild_pass(pool, WALL.now()):
                names.append(name)
        print(
            f"storage:   rows' index before its day's rebuild: {rows_index / max(stored, 1):.0f}"
            f" bytes per result; rebuilt: {', '.join(names) or 'none'}"
        )
    after = await _sizes(conn)
    grown = {k: (v - before.get(k, 0)) / max(stored, 1) for k, v in after.items()}
    print(
        "storage:   by relation, bytes per result: "
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(grown.items()) if v)
    )
    return stored, sum(v for k, v in grown.items() if not k.endswith(" heap"))


async def _plans(conn: asyncpg.Connection, public_id: str, packed_at: datetime) -> bool:
    """Times and plans of the API's reads of one monitor's results; whether every plan reads
    the result relations through their indexes."""
    await conn.execute("ANALYZE")
    monitor_id = await conn.fetchval("SELECT id FROM monitors WHERE public_id = $1", public_id)
    plans: list[str] = []
    conn.add_log_listener(lambda _c, msg: plans.append(str(msg.message)))
    reads: dict[str, Callable[[], Awaitable[object]]] = {
        "history page in a packed hour": lambda: results.list_page(
            conn,
            monitor_id,
            country=None,
            since=None,
            until=packed_at,
            limit=50,
            offset=0,
            now=utcnow(),
        ),
        "newest page": lambda: results.list_page(
            conn, monitor_id, country=None, since=None, until=None, limit=50, offset=0, now=utcnow()
        ),
        "monitor with latest results": lambda: monitor_with_latest(
            conn, uuid.UUID(public_id), ["smtp"], None
        ),
    }
    ok = True
    for name, read in reads.items():
        await conn.execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;"
            " SET auto_explain.log_level = notice"
        )
        plans.clear()
        await read()
        await conn.execute("RESET auto_explain.log_min_duration")
        await asyncio.sleep(0)  # notices are delivered by the event loop
        scanned = {
            line.split(" on ")[1].split()[0]
            for plan in plans
            for line in plan.splitlines()
            if "Seq Scan on result_" in line
        }
        # Empty partitions and the agents' few names are read whole: that costs nothing.
        seq = await conn.fetchval(
            "SELECT coalesce(array_agg(n ORDER BY n), '{}') FROM unnest($1::text[]) AS n"
            " WHERE pg_relation_size(n::regclass) > $2",
            list(scanned),
            SMALL,
        )
        times = []
        for _ in range(20):
            start = time.perf_counter()
            await read()
            times.append((time.perf_counter() - start) * 1000)
        print(
            f"storage:   {name}: {statistics.median(times):.1f} ms (median of 20),"
            f" {'indexes only' if not seq else 'sequential scans of ' + ', '.join(seq)}"
        )
        ok = ok and bool(plans) and not seq
    return ok


async def _run() -> bool:
    with tempfile.TemporaryDirectory(prefix="mailprobe-bench-") as tmp:
        pg, url = embedded.start_postgres(Path(tmp) / "pg", throwaway=True)
        try:
            ids = await seed_monitors(url, MONITORS, countries=list(COUNTRIES))
            conn = await connect(url)
            try:
                # Rounds of whole UTC hours of a closed day (the changed ones in its last).
                now = utcnow()
                first = (now - timedelta(days=2)).replace(
                    hour=23 - ROUTINE_HOURS, minute=0, second=0, microsecond=0
                )
                await results.ensure_partitions(conn, first - timedelta(days=1))
                # The first round of each monitor and country is stored whole: not counted.
                await _bytes_per_result(conn, ids, first - timedelta(minutes=1), 1, False)
                n, routine = await _bytes_per_result(
                    conn, ids, first, ROUTINE_ROUNDS, False, packed=True, rebuilt=url
                )
                indexed = await _plans(conn, ids[len(ids) // 2], first + timedelta(minutes=150))
                m, changed = await _bytes_per_result(
                    conn,
                    ids,
                    first + timedelta(minutes=ROUTINE_ROUNDS),
                    CHANGED_ROUNDS,
                    True,
                )
            finally:
                await conn.close()
        finally:
            pg.cleanup()
    ok = routine <= TARGET_BYTES and indexed
    print(
        f"storage: {routine:.0f} bytes per routine result ({n} stored; target <= "
        f"{TARGET_BYTES}) {verdict(ok)}"
    )
    print(f"storage: {changed:.0f} bytes per changed or failed result ({m} stored, not packed)")
    print(f"storage: the API's reads of results use indexes only: {verdict(indexed)}")
    return ok


def run() -> bool:
    return asyncio.run(_run())
