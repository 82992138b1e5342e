"""The heartbeat verdict path in virtual time, against ground truth: seeded senders (three
rules: a count of one and of two, a subject filter with other mail between) each stop a few
times; their arrivals go over ARRIVALS through the intake; the alerter runs on a ManualClock
moved to each arrival and to every minute mark, and at every mark each monitor's state is what
the arrival times say, each late spell is one incident that started when the count fell short
and ended at the arrival that made it up again. Prints the figures: marks judged, looks the
heartbeat judge took (due times, not a poll), incidents."""

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
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

T0 = datetime(2026, 11, 29, 22, 0, tzinfo=UTC)
HOURS = 8


@dataclass
class Sender:
    every: int  # minutes
    grace: int
    expected: int
    subject: str
    seed: int
    id: int = 0
    public_id: str = ""
    sent: list[float] = field(default_factory=list)  # minutes after T0, matching mail
    other: list[float] = field(default_factory=list)  # mail the rule does not match

    def draw(self) -> None:
        rng = random.Random(self.seed)
        span = self.every + self.grace
        outages = []
        for _ in range(rng.randint(2, 3)):
            start = rng.uniform(span, HOURS * 60 - span)
            outages.append((start, start + rng.uniform(1.2, 3.0) * span))
        t = rng.uniform(0, self.every / self.expected)
        while t < HOURS * 60:
            if not any(a <= t < b for a, b in outages):
                self.sent.append(round(t * 60) / 60)
                if self.subject and rng.random() < 0.5:
                    self.other.append(round((t + rng.uniform(0.1, 2)) * 60) / 60)
            t += self.every / self.expected * rng.uniform(0.4, 0.95)

    def truth(self, minute: float) -> str:
        known = [s for s in self.sent if s <= minute]
        count = sum(1 for s in known if s > minute - (self.every + self.grace))
        if count >= self.expected:
            return "up"
        return "unknown" if minute < self.every + self.grace else "down"

    def spells(self, upto: float) -> list[tuple[float, float | None]]:
        """The late spells: (start, end) in minutes, end None for one still open at `upto`."""
        span = self.every + self.grace
        out: list[tuple[float, float | None]] = []
        events = sorted({*self.sent, *(s + span for s in self.sent), float(span)})
        late_since: float | None = None
        for t in (e for e in events if e <= upto):
            state = self.truth(t)
            if state == "down" and late_since is None:
                late_since = t
            elif state == "up" and late_since is not None:
                out.append((late_since, t))
                late_since = None
        if late_since is not None:
            out.append((late_since, None))
        return out


def at(minutes: float) -> datetime:
    return T0 + timedelta(seconds=round(minutes * 60))


async def _create(pool: asyncpg.Pool, org: Tenant, s: Sender) -> None:
    """A heartbeat monitor whose host name is its address (each its own problem: monitors of
    one host name share a flow incident)."""
    local = new_local_part()
    config = {
        "everyMinutes": s.every,
        "graceMinutes": s.grace,
        "expected": s.expected,
        "subject": s.subject,
        "localPart": local,
    }
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port,"
            " status, check_interval, timeout_seconds, config, notification_email)"
            " VALUES ($1, $2, 'heartbeat', $3, $4, 25, 'active', 60, 30, $5,"
            " 'ops@example.com') RETURNING id, public_id",
            org.org_id,
            org.customer_id,
            f"heartbeat {s.seed}",
            f"{local}@rx.mailprobe.test",
            config,
        )
        assert row is not None
        s.id, s.public_id = row["id"], str(row["public_id"])
        await watch_store.watch(conn, s.id, T0)


async def _states(pool: asyncpg.Pool, senders: Sequence[Sender]) -> dict[int, str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT m.id, coalesce(s.state, 'unknown') AS state FROM monitors m"
            " LEFT JOIN monitor_alert_state s ON s.monitor_id = m.id WHERE m.id = ANY($1)",
            [s.id for s in senders],
        )
    return {r["id"]: r["state"] for r in rows}


async def test_seeded_heartbeats_judged_in_virtual_time_match_the_truth(
    js: JetStreamContext,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    org: Tenant,
    settings: ControllerSettings,
    job_ids: JobIds,
) -> None:
    [country] = countries.take()
    senders = [
        Sender(10, 2, 1, "", 831),
        Sender(30, 5, 2, "", 832),
        Sender(60, 0, 1, "nightly", 833),
    ]
    for s in senders:
        s.draw()
        await _create(pipe_pool, org, s)
    clock = ManualClock(T0)
    alerter: Alerter = build_alerter(
        settings, pipe_pool, js, job_ids, Links("https://mailprobe.example.test"), clock=clock.now
    )
    judge = alerter.heartbeats
    assert judge is not None
    judged = judge.judge_due
    looks: int  # counted's: set below, before the first look

    async def counted() -> int:
        nonlocal looks
        n = await judged()
        looks += n
        return n

    judge.judge_due = counted  # type: ignore[method-assign]
    intake = ArrivalsIntake(js, pipe_pool, keep_days=30, clock=clock)
    mail = sorted(
        [(t, s, "nightly backup" if s.subject else "beat") for s in senders for t in s.sent]
        + [(t, s, "weekly digest") for s in senders for t in s.other],
        key=lambda x: x[0],
    )
    marks = [float(minute) for minute in range(HOURS * 60 + 1)]
    steps = sorted({*marks, *(t for t, _, _ in mail)})
    looks = checked = others = 0
    wrong: list[tuple[float, int, str, str]] = []
    i = 0
    try:
        for step in steps:
            clock.set(at(step))
            looks_before = looks
            batch = 0
            while i < len(mail) and mail[i][0] == step:
                t, s, subject = mail[i]
                arrival = Arrival(
                    arrival_id=str(uuid.uuid4()),
                    monitor_id=s.public_id,
                    country=country,
                    agent_id=f"{country}-rx",
                    arrived_at=iso_ms(at(t)),
                    peer="127.0.0.1",
                    header_from="cron@sender.mailprobe.test",
                    subject=subject,
                )
                await js.publish(arrivals_subject(country, s.public_id), encode(arrival))
                i += 1
                batch += 1
            stored = 0
            while stored < batch:
                stored += await intake.step(0.5)
            evaluated = await alerter.burst()
            others += evaluated - (looks - looks_before)
            if step in marks:
                states = await _states(pipe_pool, senders)
                for s in senders:
                    checked += 1
                    if states[s.id] != s.truth(step):
                        wrong.append((step, s.seed, states[s.id], s.truth(step)))
    finally:
        await intake.close()
    assert not wrong, wrong[:10]
    async with pipe_pool.acquire() as conn:
        incidents = await conn.fetch(
            "SELECT monitor_id, started_at, ended_at, cause_kind FROM incidents"
            " WHERE monitor_id = ANY($1) ORDER BY started_at",
            [s.id for s in senders],
        )
        downs = await conn.fetchval(
            "SELECT count(*) FROM notification_outbox WHERE monitor_id = ANY($1) AND kind = 'down'",
            [s.id for s in senders],
        )
    spells = 0
    for s in senders:
        want = [(at(a), None if b is None else at(b)) for a, b in s.spells(HOURS * 60)]
        got = [(r["started_at"], r["ended_at"]) for r in incidents if r["monitor_id"] == s.id]
        assert got == want, s.seed
        spells += len(want)
    assert spells >= 5 and downs == spells
    assert all(r["cause_kind"] == "late" for r in incidents)
    assert others == 0, "the round evaluator never takes a heartbeat monitor"
    hours = HOURS * len(senders)
    print(
        f"heartbeat sim: {len(mail)} arrivals, {checked} verdicts checked, 0 wrong;"
        f" {spells} incidents, {downs} down notices; {looks} evaluations"
        f" ({looks / hours:.1f} per monitor-hour, a per-minute poll would be 60)"
    )


async def test_a_late_heartbeat_in_maintenance_is_told_after_it_and_disabled_closes_silently(
    js: JetStreamContext,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    org: Tenant,
    settings: ControllerSettings,
    job_ids: JobIds,
) -> None:
    """Late in maintenance: the incident opens, its `down` notice waits for the maintenance to
    end (told at the next look, 5 minutes later at most); disabled: the incident closes at the
    next look without a notice."""
    [country] = countries.take()
    s = Sender(10, 0, 1, "", 834)
    await _create(pipe_pool, org, s)
    async with pipe_pool.acquire() as conn:
        await conn.execute("UPDATE monitors SET status = 'maintenance' WHERE id = $1", s.id)
    clock = ManualClock(T0)
    alerter = build_alerter(
        settings, pipe_pool, js, job_ids, Links("https://mailprobe.example.test"), clock=clock.now
    )
    intake = ArrivalsIntake(js, pipe_pool, keep_days=30, clock=clock)

    async def notices() -> list[str]:
        rows = await pipe_pool.fetch(
            "SELECT kind FROM notification_outbox WHERE monitor_id = $1 ORDER BY id", s.id
        )
        return [r["kind"] for r in rows]

    async def incident() -> tuple[datetime, datetime | None, str | None] | None:
        row = await pipe_pool.fetchrow(
            "SELECT started_at, ended_at, end_reason FROM incidents WHERE monitor_id = $1", s.id
        )
        return None if row is None else (row[0], row[1], row[2])

    try:
        clock.set(at(1))
        arrival = Arrival(
            arrival_id=str(uuid.uuid4()),
            monitor_id=s.public_id,
            country=country,
            agent_id=f"{country}-rx",
            arrived_at=iso_ms(at(1)),
            peer="127.0.0.1",
            subject="beat",
        )
        await js.publish(arrivals_subject(country, s.public_id), encode(arrival))
        while not await intake.step(0.5):
            pass
        for minute in range(1, 16):
            clock.set(at(minute))
            await alerter.burst()
        assert (await _states(pipe_pool, [s]))[s.id] == "down"
        assert await incident() == (at(11), None, None)
        assert await notices() == []  # in maintenance: nobody told
        async with pipe_pool.acquire() as conn:
            await conn.execute("UPDATE monitors SET status = 'active' WHERE id = $1", s.id)
        for minute in range(16, 22):
            clock.set(at(minute))
            await alerter.burst()
        assert await notices() == ["down"]  # told at the look after the maintenance
        async with pipe_pool.acquire() as conn:
            await conn.execute("UPDATE monitors SET status = 'disabled' WHERE id = $1", s.id)
        for minute in range(22, 32):
            clock.set(at(minute))
            await alerter.burst()
        found = await incident()
        assert found is not None and found[1] == at(26) and found[2] is not None
        assert await notices() == ["down"]  # closed for being disabled: no recovery notice
        assert (await _states(pipe_pool, [s]))[s.id] == "unknown"
        # Enabled again at 33 (last look while disabled: 31): pending until 41, then late.
        async with pipe_pool.acquire() as conn:
            await conn.execute("UPDATE monitors SET status = 'active' WHERE id = $1", s.id)
        states = {}
        for minute in range(33, 45):
            clock.set(at(minute))
            await alerter.burst()
            states[minute] = (await _states(pipe_pool, [s]))[s.id]
    finally:
        await intake.close()
    assert states == {m: "unknown" if m < 41 else "down" for m in range(33, 45)}
    assert await notices() == ["down", "down"]
