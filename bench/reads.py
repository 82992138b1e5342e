"""Reads: PostgreSQL's CPU per read of a monitor's recent results, planned for each call's values
(PostgreSQL's choice) and on the generic plan the alerter runs them on
(`controller.db.pool.plan_generically`).

Embedded PostgreSQL (crash-safe) on the daily result partitions a deployment holds
(`bench.common.steady_database`), MONITORS SMTP monitors checked from two countries, ROUNDS
rounds stored as `bench store` stores them (`bench.store._rounds`). Then each read the alerter
and posture make of one monitor's results since its cursor (`alerts.results_after`,
`alerts.results_before`, `posture_db.rounds_after`) and the batch pass's read of BATCH monitors
at once (`alerts.batch_results_after`), CALLS calls each over different monitors, on one
connection, one transaction a call as the alerter's; the two ways take turns, PASSES times
over. The CPU of the connection's backend (/proc/PID/stat) per call. Target: the generic plan
costs less than the plans made per call, for every read (else the alerter's setting is a loss).
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bench.common import cpu_s, discard_logs, machine, steady_database
from bench.store import BATCH as BATCH_STORED
from bench.store import COUNTRIES, _rounds
from controller.alerting import store as alerts
from controller.db.pool import Conn, plan_generically
from controller.ingest.pack_rules import packed_before
from controller.posture import store as posture_db
from shared.timefmt import utcnow

MONITORS = 600
ROUNDS = 6
CALLS = 200
BATCH = 40
PASSES = 2
LIMIT = 100

Read = Callable[[Conn, list[int], datetime, datetime], Awaitable[Any]]


async def _after(conn: Conn, ids: list[int], after: datetime, until: datetime) -> Any:
    return await alerts.results_after(conn, ids[0], after, LIMIT)


async def _before(conn: Conn, ids: list[int], after: datetime, until: datetime) -> Any:
    return await alerts.results_before(conn, ids[0], after, until, LIMIT)


async def _posture(conn: Conn, ids: list[int], after: datetime, until: datetime) -> Any:
    return await posture_db.rounds_after(conn, ids[0], after, until, LIMIT)


async def _batch(conn: Conn, ids: list[int], after: datetime, until: datetime) -> Any:
    return await alerts.batch_results_after(conn, dict.fromkeys(ids[:BATCH], after), LIMIT)


READS: dict[str, Read] = {
    "alerts.results_after": _after,
    "alerts.results_before": _before,
    "posture_db.rounds_after": _posture,
    f"alerts.batch_results_after ({BATCH})": _batch,
}
WAYS = ("planned per call", "generic plan")


async def _measure() -> dict[str, dict[str, list[float]]]:
    async with steady_database("mailprobe-bench-reads-", MONITORS, list(COUNTRIES)) as (conn, ids):
        return await _reads(conn, ids)


async def _reads(conn: Conn, public_ids: list[str]) -> dict[str, dict[str, list[float]]]:
    backend: int = await conn.fetchval("SELECT pg_backend_pid()")
    after = packed_before(utcnow())  # before the first round `_rounds` stores
    one_round = _rounds(conn, backend, public_ids)
    for _ in range(ROUNDS):
        await one_round(BATCH_STORED)
    until = utcnow()
    ids: list[int] = [r[0] for r in await conn.fetch("SELECT id FROM monitors ORDER BY id")]
    spent: dict[str, dict[str, list[float]]] = {name: {w: [] for w in WAYS} for name in READS}
    for _ in range(PASSES):
        for name, read in READS.items():
            for way in WAYS:
                before = cpu_s(backend)
                for i in range(CALLS):
                    monitors = ids[(i * 7) % len(ids) :] + ids  # a different first each call
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
