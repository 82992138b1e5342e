"""The readiness budget's reservation as monitors take turns: PostgreSQL's CPU for one
scheduling pass's statement (`readiness_reserve`) when an organization asks far more than its
budget, so thousands of its monitors wait their turn.

Embedded PostgreSQL (`testkit.common.steady_database`); one organization with MONITORS
monitors of a mail domain in one country, each asking readiness once an hour at its own minute
(a pass a minute, about MONITORS / 60 rounds each), against the default budget (10,000
queries: 125 rounds an hour) for HOURS hours; after the first hour nearly all of them wait.
Target: a pass's statement costs under TARGET_MS ms of PostgreSQL CPU in the last hour (the
scheduler's pass budget is a few hundred milliseconds for every part together)."""

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

from controller.sidechecks.readiness import budget_store
from controller.sidechecks.readiness.budget import QUERIES_PER_HOUR
from shared.messages import CheckJob
from shared.sidechecks.readiness import WIRE, ReadinessAsk
from shared.timefmt import iso_ms, utc_hour
from testkit.common import cpu_s, discard_logs, machine, steady_database
from testkit.peers.jobs import make_job

MONITORS = 4000
HOURS = 3
TARGET_MS = 10.0


def _job(rng: random.Random, monitor: str, at: datetime) -> CheckJob:
    return make_job(
        "smtp",
        587,
        job_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        monitor_id=monitor,
        scheduled_at=iso_ms(at),
        expires_at=iso_ms(at + timedelta(minutes=1)),
        side_checks={WIRE.name: ReadinessAsk(domain="customer.test")},
    )


async def _measure() -> tuple[float, float, int, int]:
    """PostgreSQL CPU (ms) per pass in the last hour, its worst, rounds asked and held."""
    rng = random.Random(67)
    async with steady_database("mailprobe-bench-readiness-", MONITORS, ["DE"]) as (conn, ids):
        await conn.execute("UPDATE monitors SET mail_domain = 'd' || id || '.customer.test'")
        minute = {m: rng.randrange(60) for m in ids}
        backend: int = await conn.fetchval("SELECT pg_backend_pid()")
        start = utc_hour(datetime.now(UTC)) - HOURS * timedelta(hours=1)
        costs: list[float] = []
        asked = held = 0
        for h in range(HOURS):
            for mm in range(60):
                at = start + timedelta(hours=h, minutes=mm)
                jobs = [_job(rng, m, at) for m in ids if minute[m] == mm]
                before = cpu_s(backend)
                async with conn.transaction():
                    out = await budget_store.reserve(
                        conn, jobs, at, QUERIES_PER_HOUR, timedelta(hours=1)
                    )
                if h == HOURS - 1:
                    costs.append(1000 * (cpu_s(backend) - before))
                held += len(out)
                asked += len(jobs) - len(out)
        waiting = await conn.fetchval(
            "SELECT count(*) FROM readiness_turns WHERE waiting_since IS NOT NULL"
        )
        assert waiting > MONITORS // 2, waiting
        return sum(costs) / len(costs), max(costs), asked, held


def run() -> bool:
    discard_logs()
    mean, worst, asked, held = asyncio.run(_measure())
    ok = mean < TARGET_MS
    print(f"readiness turns ({machine()}): {MONITORS} monitors, 125 rounds an hour, {HOURS} h")
    print(
        f"  readiness_reserve: {mean:.1f} ms of PostgreSQL CPU a pass of ~{MONITORS // 60}"
        f" rounds in the last hour (worst {worst:.1f}; target < {TARGET_MS});"
        f" {asked} rounds asked, {held} held"
    )
    print(f"  target: {'ok' if ok else 'FAIL'}")
    return ok
