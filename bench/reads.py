"""Reads: PostgreSQL's CPU per read of a monitor's recent results, planned for each call's values
(PostgreSQL's choice) and on the generic plan the alerter, the API's result reads and the
console's monitor page run them on (`controller.db.pool.plan_generically`, `on_generic_plans`).

Embedded PostgreSQL (crash-safe) on the daily result partitions a deployment holds
(`testkit.common.steady_database`), MONITORS SMTP monitors checked from two countries, ROUNDS
rounds stored as `bench store` stores them (`bench.store.stored_rounds`). Then each read the alerter
and posture make of one monitor's results since its cursor (`alert_state.results_after`,
`alert_state.results_before`, `posture_db.rounds_after`), the batch pass's read of BATCH monitors
at once (`alert_state.batch_results_after`), the API's page of results and uptime windows
(`results.list_page`, `results.counts`) and the console's monitor page (`monitor_view.live`,
`console.latest_tls`), CALLS calls each over different monitors, on one connection, one
transaction a call as the alerter's; the two ways take turns, PASSES times over. The CPU of the
connection's backend (/proc/PID/stat) per call. Target: the generic plan costs less than the
plans made per call, for every read (else the setting is a loss).
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from bench.store import BATCH as BATCH_STORED
from bench.store import COUNTRIES, stored_rounds
from controller.alerting import state_store as alert_state
from controller.db.pool import Conn, plan_generically
from controller.ingest import store as results
from controller.ingest.pack_rules import packed_before
from controller.posture import store as posture_db
from controller.web.console import monitor_view
from controller.web.console import store as console
from shared.timefmt import utcnow
from testkit.common import cpu_s, discard_logs, machine, steady_database

MONITORS = 600
ROUNDS = 6
CALLS = 200
BATCH = 40
PASSES = 2
LIMIT = 100

# Monitors (id, public_id), the one read first; the alerter's cursor and the window's end.
Read = Callable[[Conn, list[asyncpg.Record], datetime, datetime], Awaitable[Any]]
Monitors = list[asyncpg.Record]


async def _after(conn: Conn, ms: Monitors, after: datetime, until: datetime) -> Any:
    return await alert_state.results_after(conn, ms[0]["id"], after, LIMIT, until)


async def _before(conn: Conn, ms: Monitors, after: datetime, until: datetime) -> Any:
    return await alert_state.results_before(conn, ms[0]["id"], after, until, LIMIT)


async def _posture(conn: Conn, ms: Monitors, after: datetime, until: datetime) -> Any:
    return await posture_db.rounds_after(conn, ms[0]["id"], after, until, LIMIT)


async def _batch(conn: Conn, ms: Monitors, after: datetime, until: datetime) -> Any:
    ids = [m["id"] for m in ms[:BATCH]]
    return await alert_state.batch_results_after(conn, dict.fromkeys(ids, after), LIMIT, until)


async def _page(conn: Conn, ms: Monitors, after: datetime, until: datetime) -> Any:
    return await results.list_page(
        conn, ms[0]["id"], country=None, since=None, until=None, limit=50, offset=0, now=until
    )


async def _uptime(conn: Conn, ms: Monitors, after: datetime, until: datetime) -> Any:
    now = utcnow()
    starts = [now - timedelta(days=d) for d in (30, 7, 1)]
    return await results.counts(conn, ms[0]["id"], starts, now)


async def _monitor_page(conn: Conn, ms: Monitors, after: datetime, until: datetime) -> Any:
    return await monitor_view.live(conn, ms[0]["public_id"], None, "day", utcnow())


async def _tls(conn: Conn, ms: Monitors, after: datetime, until: datetime) -> Any:
    return await console.latest_tls(conn, ms[0]["id"], utcnow() - timedelta(days=2))


READS: dict[str, Read] = {
    "alert_state.results_after": _after,
    "alert_state.results_before": _before,
    "posture_db.rounds_after": _posture,
    f"alert_state.batch_results_after ({BATCH})": _batch,
    "api: results.list_page": _page,
    "api: results.counts": _uptime,
    "console: monitor_view.live": _monitor_page,
    "console: latest_tls": _tls,
}
WAYS = ("planned per call", "generic plan")


async def _measure() -> dict[str, dict[str, list[float]]]:
    async with steady_database("mailprobe-bench-reads-", MONITORS, list(COUNTRIES)) as (conn, ids):
        return await _reads(conn, ids)


async def _reads(conn: Conn, public_ids: list[str]) -> dict[str, dict[str, list[float]]]:
    backend: int = await conn.fetchval("SELECT pg_backend_pid()")
    after = packed_before(utcnow())  # before the first round `stored_rounds` stores
    one_round = stored_rounds(conn, backend, public_ids)
    for _ in range(ROUNDS):
        await one_round(BATCH_STORED)
    until = utcnow()
    ms: Monitors = await conn.fetch("SELECT id, public_id FROM monitors ORDER BY id")
    spent: dict[str, dict[str, list[float]]] = {name: {w: [] for w in WAYS} for name in READS}
    for _ in range(PASSES):
        for name, read in READS.items():
            for way in WAYS:
                before = cpu_s(backend)
                for i in range(CALLS):
                    monitors = ms[(i * 7) % len(ms) :] + ms  # a different first each call
                    async with conn.transaction():
                        if way == "generic plan":
                            await plan_generically(conn)
                        await read(conn, monitors, after, until)
                spent[name][way].append((cpu_s(backend) - before) / CALLS)
    return spent


def run() -> bool:
    discard_logs()
    print(
        f"reads ({machine()}): a monitor's recent results, {MONITORS} monitors x"
        f" {len(COUNTRIES)} countries, {CALLS} calls a read and way, {PASSES} passes taking turns"
    )
    ok = True
    for name, by_way in asyncio.run(_measure()).items():
        custom, generic = (1000 * sum(by_way[w]) / len(by_way[w]) for w in WAYS)
        ok = ok and generic < custom
        print(
            f"  {name:34} PostgreSQL {custom:5.2f} ms a call planned per call,"
            f" {generic:5.2f} on the generic plan ({generic / custom:.2f}x)"
        )
    print(f"  target: the generic plan cheaper for every read: {'ok' if ok else 'FAIL'}")
    return ok
