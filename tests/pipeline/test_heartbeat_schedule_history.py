"""Heartbeats by a time of day in a time zone (issue 83), judged in virtual time against ground
truth: seeded senders in Berlin, New York and Kolkata (one on weekdays only) mail their report
before, or sometimes after, their deadline each day, and skip runs of days, over two weeks that
hold both zones' autumn DST changes and a month's end. Their arrivals go over ARRIVALS through
the intake; the alerter runs on a ManualClock moved to each arrival, each cut-off and the second
before it; at every mark each monitor's state is what the arrival times and the local deadlines
say, and each late run is one incident from its first short cut-off to the arrival that ended
it. `HEARTBEAT_SCHEDULE_SEEDS` (comma-separated) runs more seeds; each prints its figures."""

import os
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from nats.js import JetStreamContext

from controller.alerting.alerter import Alerter
from controller.arrivals import watch_store
from controller.arrivals.intake import ArrivalsIntake
from controller.jobs.rules import JobIds
from controller.notify.links import Links
from controller.runtime.pipeline import build_alerter
from controller.settings import ControllerSettings
from shared.arrivals import Arrival, encode, new_local_part
from shared.clock import ManualClock
from shared.subjects import arrivals_subject
from shared.timefmt import iso_ms
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries

T0 = datetime(2026, 10, 20, 0, 0, tzinfo=UTC)  # a Tuesday; Berlin's change on the 25th, NY's 1 Nov
DAYS = 15
SEEDS = [int(s) for s in os.environ.get("HEARTBEAT_SCHEDULE_SEEDS", "83").split(",")]
NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class Sender:
    zone: str
    by: time
    grace: int  # minutes
    weekdays: bool
    id: int = 0
    public_id: str = ""
    sent: list[datetime] = field(default_factory=list)

    def deadlines(self) -> list[datetime]:
        """Each day's deadline in the horizon (and a day either side), as UTC instants, built
        from the local wall time: a skipped time moves forward by the gap, a repeated one is
        its first occurrence."""
        zone = ZoneInfo(self.zone)
        first = (T0 - timedelta(days=2)).date()
        out = []
        for n in range(DAYS + 4):
            day = first + timedelta(days=n)
            if self.weekdays and day.weekday() >= 5:
                continue
            out.append(datetime.combine(day, self.by, tzinfo=zone).astimezone(UTC))
        return out

    def cutoffs(self) -> list[datetime]:
        return [d + timedelta(minutes=self.grace) for d in self.deadlines()]

    def draw(self, rng: random.Random) -> None:
        """A report a day, an hour or two before the deadline, now and then after the
        cut-off; none on the days of 1 to 3 runs of 1 to 3 days."""
        missed: set[date] = set()
        for _ in range(rng.randint(1, 3)):
            start = rng.randint(1, DAYS - 4)
            missed |= {(T0 + timedelta(days=start + k)).date() for k in range(rng.randint(1, 3))}
        for d in self.deadlines():
            if d < T0 or d.date() in missed:
                continue
            if rng.random() < 0.15:  # late: after the cut-off
                at = d + timedelta(minutes=self.grace + rng.randint(1, 180))
            else:
                at = d - timedelta(minutes=rng.randint(5, 150))
            self.sent.append(at.replace(microsecond=0))

    def truth(self, now: datetime) -> str:
        cuts = [c for c in self.cutoffs() if c <= now]
        last, before = cuts[-1], cuts[-2]

        def within(a: datetime, b: datetime) -> int:
            return sum(1 for s in self.sent if max(a, T0) < s <= b and s <= now)

        if within(last, now) >= 1 or within(before, last) >= 1:
            return "up"
        return "unknown" if before < T0 else "down"


async def _create(pool: asyncpg.Pool, org: Tenant, s: Sender, n: int) -> None:
    local = new_local_part()
    config = {
        "everyMinutes": 1440,
        "graceMinutes": s.grace,
        "localPart": local,
        "byTime": s.by.strftime("%H:%M"),
        "timeZone": s.zone,
        "days": list(NAMES[:5]) if s.weekdays else [],
    }
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port,"
            " status, check_interval, timeout_seconds, config, notification_email, updated_at)"
            " VALUES ($1, $2, 'heartbeat', $3, $4, 25, 'active', 60, 30, $5,"
            " 'ops@example.com', $6) RETURNING id, public_id",
            org.org_id,
            org.customer_id,
            f"report {n}",
            f"{local}@rx.mailprobe.test",
            config,
            T0,
        )
        assert row is not None
        s.id, s.public_id = row["id"], str(row["public_id"])
        await watch_store.watch(conn, s.id, T0)


@pytest.mark.parametrize("seed", SEEDS)
async def test_time_of_day_heartbeats_over_dst_changes_match_the_truth(
    js: JetStreamContext,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    org: Tenant,
    settings: ControllerSettings,
    job_ids: JobIds,
    seed: int,
) -> None:
    rng = random.Random(seed)
    [country] = countries.take()
    senders = [
        Sender("Europe/Berlin", time(rng.randint(5, 8), rng.choice((0, 30))), 30, False),
        Sender("America/New_York", time(rng.choice((1, 2)), 30), rng.choice((0, 45)), False),
        Sender("Asia/Kolkata", time(5, 0), 15, True),
    ]
    for n, s in enumerate(senders):
        s.draw(rng)
        await _create(pipe_pool, org, s, n)
    clock = ManualClock(T0)
    alerter: Alerter = build_alerter(
        settings, pipe_pool, js, job_ids, Links("https://mailprobe.example.test"), clock=clock.now
    )
    intake = ArrivalsIntake(js, pipe_pool, keep_days=30, clock=clock)
    end = T0 + timedelta(days=DAYS)
    mail = sorted(((t, s) for s in senders for t in s.sent if t < end), key=lambda m: m[0])
    cuts = {c for s in senders for c in s.cutoffs() if T0 < c < end}
    marks = sorted({*cuts, *(c - timedelta(seconds=1) for c in cuts), *(t for t, _ in mail)})
    checked = 0
    wrong: list[tuple[str, str, str, str]] = []
    i = 0
    try:
        for mark in marks:
            clock.set(mark)
            batch = 0
            while i < len(mail) and mail[i][0] == mark:
                t, s = mail[i]
                arrival = Arrival(
                    arrival_id=str(uuid.uuid4()),
                    monitor_id=s.public_id,
                    country=country,
                    agent_id=f"{country}-rx",
                    arrived_at=iso_ms(t),
                    peer="127.0.0.1",
                    header_from="erp@sender.mailprobe.test",
                    subject="nightly report",
                )
                await js.publish(arrivals_subject(country, s.public_id), encode(arrival))
                i += 1
                batch += 1
            stored = 0
            while stored < batch:
                stored += await intake.step(0.5)
            await alerter.burst()
            async with pipe_pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT m.id, coalesce(s.state, 'unknown') AS state FROM monitors m"
                    " LEFT JOIN monitor_alert_state s ON s.monitor_id = m.id WHERE m.id = ANY($1)",
                    [s.id for s in senders],
                )
            got = {r["id"]: r["state"] for r in rows}
            for s in senders:
                checked += 1
                if got[s.id] != s.truth(mark):
                    wrong.append((iso_ms(mark), s.zone, got[s.id], s.truth(mark)))
    finally:
        await intake.close()
    assert not wrong, wrong[:10]
    spells = 0
    async with pipe_pool.acquire() as conn:
        for s in senders:
            want: list[tuple[datetime, datetime | None]] = []
            state = "unknown"
            for mark in marks:
                now = s.truth(mark)
                if now == "down" and state != "down":
                    want.append((mark, None))
                elif now == "up" and state == "down":
                    want[-1] = (want[-1][0], mark)
                state = now
            rows = await conn.fetch(
                "SELECT started_at, ended_at FROM incidents WHERE monitor_id = $1"
                " ORDER BY started_at",
                s.id,
            )
            assert [(r["started_at"], r["ended_at"]) for r in rows] == want, s.zone
            spells += len(want)
    assert spells >= 3, "the seed should hold late runs"
    print(
        f"heartbeat schedule seed {seed}: {len(mail)} arrivals, {len(cuts)} cut-offs,"
        f" {checked} verdicts checked, 0 wrong; {spells} incidents"
    )
