"""Due moves: PostgreSQL's CPU per monitor in a scheduler pass's statements, the due times on
`monitors` (the code before migration 0128) against `monitor_due` (issue 70).

Embedded PostgreSQL (crash-safe) with databases of MONITORS SMTP monitors each (checked
from DE and US, on a deployment's daily partitions): `base`, migrated up to 0127, and `this`,
migrated. A pass is the scheduler's routine transaction on one connection: BEGIN, the claim of
BATCH due monitors (its statement as each tree writes it), `scheduler_moved` moving each one
interval on with the countries its round went to (the same as stored), COMMIT. The variants
take turns pass by pass (the order swapped every round), so a slow moment of the machine falls
on both; the first round is not counted. The figures are the backend's CPU
(/proc/PID/schedstat, ns) per moved monitor, for the whole pass and for `scheduler_moved`
alone, and the WAL it wrote (`pg_current_wal_lsn()` around the pass). `this, kept` is `this`
while a previous release may run (`seeded_from` NULL: `monitors.next_due_at` kept too);
`this, due lock` a claim locking the due row alone (what the monitor's row lock costs). Each
variant has a database of its own. Background work (autovacuum of what the moves leave dead)
is not counted.

`python -m bench due-moves`. No target: it measures (bench/results/pg-cost.md).
"""

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

import controller.db.migrate as migrate_module
from controller.db.pool import connect
from controller.jobs.scheme import session_name
from controller.monitors.store import ROUND_COLUMNS, Monitor
from controller.scheduling.due_store import CLAIM, CLAIM_LOCK
from shared import embedded
from shared.timefmt import utcnow
from testkit.common import discard_logs, machine, seed_monitors, steady_partitions

MONITORS = 2_000
BATCH = 60  # about a scale-bench pass's monitors at 400 checks/s
ROUNDS = 6  # each monitor moved once a round by each variant
FIRST_OF_0128 = "0128"
SPACING = timedelta(seconds=10) / MONITORS  # between two monitors' due times

_OLD_STORED = ", ".join(
    n for n in Monitor.__struct_fields__ if n not in ("config_as_sent", "grants", "last_checked_at")
)
CLAIMS = {
    "base": f"SELECT {_OLD_STORED}, NULL::timestamptz AS last_checked_at, {ROUND_COLUMNS}"
    " FROM monitors WHERE status <> 'disabled' AND next_due_at <= $1 AND id <> ALL($3::bigint[])"
    " ORDER BY next_due_at LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED",
    "this": CLAIM,
}
MOVED = "SELECT * FROM scheduler_moved($1::bigint[], $2::timestamptz[], $3::text[], $4, $5)"


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def _cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


@contextmanager
def _migrations_before(version: str) -> Iterator[None]:
    kept = migrate_module.migrations
    migrate_module.migrations = lambda: [m for m in kept() if m[0] < version]
    try:
        yield
    finally:
        migrate_module.migrations = kept


async def _database(url: str, name: str, upto: str | None) -> str:
    admin = await connect(url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    parts = urlsplit(url)
    there = urlunsplit(parts._replace(path=f"/{name}"))
    if upto is None:
        await seed_monitors(there, MONITORS, interval=10, countries=["DE", "US"])
    else:
        with _migrations_before(upto):
            await seed_monitors(there, MONITORS, interval=10, countries=["DE", "US"])
    await steady_partitions(there)
    conn = await connect(there)
    try:  # planned on a grid, each having gone to DE and US once
        await conn.execute(
            "UPDATE monitors SET next_due_at = $1::timestamptz + id * $2::interval,"
            " round_countries = ARRAY['DE', 'US']",
            utcnow(),
            SPACING,
        )
    finally:
        await conn.close()
    return there


class Variant:
    def __init__(self, name: str, conn: asyncpg.Connection, claim: str, kept: bool) -> None:
        self.name, self.conn, self.claim, self.kept = name, conn, claim, kept
        self.pid = 0
        self.clock = utcnow()
        self.plans: tuple[int, ...] = (0, 0)  # the claim's generic and custom plans
        # (pass ns, moved ns, WAL B, monitors, claim ns, commit ns)
        self.passes: list[tuple[int, int, int, int, int, int]] = []

    async def start(self) -> None:
        self.pid = await self.conn.fetchval("SELECT pg_backend_pid()")
        self.clock = await self.conn.fetchval("SELECT min(next_due_at) FROM monitors")
        await self.conn.execute(
            "UPDATE job_id_scheme SET seeded_from = CASE WHEN $1 THEN NULL ELSE now() END",
            self.kept,
        )
        # named as a scheduler of this release: another session's moves are kept in both
        await self.conn.execute(
            "SELECT set_config('application_name', $1, false)", session_name(["scheduler"])
        )

    async def one_pass(self, count: bool) -> None:
        # the scheduler's clock: each pass finds BATCH monitors due, as at 400 checks/s
        self.clock += SPACING * BATCH
        far = self.clock
        lsn0 = await self.conn.fetchval("SELECT pg_current_wal_lsn()")
        t0 = _cpu_ns(self.pid)
        async with self.conn.transaction():
            rows = await self.conn.fetch(self.claim, far, BATCH, [])
            ids = [r["id"] for r in rows]
            t1 = _cpu_ns(self.pid)
            await self.conn.fetchrow(
                MOVED,
                ids,
                [r["next_due_at"] + timedelta(seconds=10) for r in rows],
                ["DE,US"] * len(ids),
                [],
                far,
            )
            t2 = _cpu_ns(self.pid)
        t3 = _cpu_ns(self.pid)
        lsn1 = await self.conn.fetchval("SELECT pg_current_wal_lsn()")
        wal = await self.conn.fetchval("SELECT $1::pg_lsn - $2::pg_lsn", lsn1, lsn0)
        if count:
            self.passes.append((t3 - t0, t2 - t1, int(wal), len(ids), t1 - t0, t3 - t2))


async def _measure() -> list[Variant]:
    with tempfile.TemporaryDirectory(prefix="mailprobe-bench-due-") as tmp:
        pg, url = embedded.start_postgres(Path(tmp) / "pg", throwaway=True, crash_safe=True)
        try:
            base = await _database(url, "base", FIRST_OF_0128)
            this = await _database(url, "this", None)
            variants = [
                Variant("base", await connect(base), CLAIMS["base"], True),
                Variant("this", await connect(this), CLAIMS["this"], False),
            ]
            kept_db = await _database(url, "kept", None)
            variants.append(Variant("this, kept", await connect(kept_db), CLAIMS["this"], True))
            due_only = CLAIMS["this"].replace(CLAIM_LOCK, "FOR NO KEY UPDATE OF due SKIP LOCKED")
            due_db = await _database(url, "due_lock", None)
            variants.append(Variant("this, due lock", await connect(due_db), due_only, False))
            for v in variants:
                await v.start()
            per_round = MONITORS // BATCH
            for n in range(ROUNDS + 1):
                order = variants if n % 2 else variants[::-1]
                for _ in range(per_round):
                    for v in order:
                        await v.one_pass(count=n > 0)
            for v in variants:
                v.plans = tuple(
                    await v.conn.fetchrow(
                        "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                        " WHERE statement = $1",
                        v.claim,
                    )
                    or (0, 0)
                )
                await v.conn.close()
            return variants
        finally:
            pg.cleanup()


def run() -> bool:
    discard_logs()
    print(f"machine: {machine()}; {_load()}")
    started = time.monotonic()
    variants = asyncio.run(_measure())
    base = variants[0]

    def per(v: Variant, i: int) -> float:
        return sum(p[i] for p in v.passes) / sum(p[3] for p in v.passes)

    for v in variants:
        by_round = [
            sum(p[0] for p in chunk) / sum(p[3] for p in chunk) / 1000
            for chunk in (v.passes[k::ROUNDS] for k in range(ROUNDS))
        ]
        print(
            f"  {v.name:14}: pass {per(v, 0) / 1000:6.1f} us a monitor"
            f" ({per(v, 0) / per(base, 0):.2f} of base; spread {min(by_round):.1f}-"
            f"{max(by_round):.1f}), scheduler_moved {per(v, 1) / 1000:5.1f} us"
            f" ({per(v, 1) / per(base, 1):.2f}), claim {per(v, 4) / 1000:4.1f} us, commit"
            f" {per(v, 5) / 1000:4.1f} us, WAL {per(v, 2):5.0f} B a monitor; claim's plans"
            f" {v.plans[0]} generic, {v.plans[1]} custom;"
            f" median pass {statistics.median(p[0] for p in v.passes) / 1000:.0f} us"
        )
    took = time.monotonic() - started
    print(
        f"  ({ROUNDS} rounds of {MONITORS} monitors in passes of {BATCH}, {took:.0f} s; {_load()})"
    )
    return True
