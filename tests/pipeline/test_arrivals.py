"""Arrivals from a real receiver to PostgreSQL, and the heartbeat verdict on them against
ground truth: a seeded sender mails every ~10 min, stops for a while and starts again; the
receiver's clock is set to each sending time (its arrivals say when), the intake stores them
from ARRIVALS, and the verdict at every minute of the history (the judge's clock) is what the
sender's times say. The monitor row is an SMTP monitor standing in for the heartbeat kind,
which the API does not offer yet."""

import asyncio
import random
import smtplib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest
from nats.js import JetStreamContext

from agent.dns_resolver import blocking_resolver
from agent.receiver.book import AddressBook, watch
from agent.receiver.server import Receiver
from agent.receiver.verdicts import Lookup
from agent.settings import ReceiverSettings
from controller.arrivals.intake import ArrivalsIntake
from controller.arrivals.rules import Rule, judge
from controller.arrivals.store import between
from shared.arrivals import (
    RECEIVERS_BUCKET,
    Arrival,
    ReceivingAddress,
    encode,
    new_local_part,
)
from shared.clock import ManualClock
from shared.subjects import arrivals_subject
from testkit.peers.dns import DnsPeer
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries

DOMAIN = "rx.mailprobe.test"
T0 = datetime(2026, 11, 28, 23, 20, tzinfo=UTC)  # the history crosses midnight
RULE = Rule(every=timedelta(minutes=10), grace=timedelta(minutes=2), subject="nightly")


def m(minutes: float) -> datetime:
    """`minutes` after T0, to the second (arrivals keep milliseconds)."""
    return T0 + timedelta(seconds=round(minutes * 60))


@pytest.fixture
async def monitor(pipe_pool: asyncpg.Pool, org: Tenant) -> AsyncIterator[tuple[int, str]]:
    async with pipe_pool.acquire() as conn:
        row = await conn.fetchrow(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port,"
            " status, check_interval, timeout_seconds, config)"
            " VALUES ($1, $2, 'smtp', 'heartbeat', 'rx.mailprobe.test', 25, 'disabled', 60, 30,"
            " '{}') RETURNING id, public_id",
            org.org_id,
            org.customer_id,
        )
    assert row is not None
    yield row["id"], str(row["public_id"])


async def _send(port: int, to: str, subject: str) -> None:
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail(
                "cron@sender.mailprobe.test",
                [to],
                f"From: cron@sender.mailprobe.test\r\nSubject: {subject}\r\n\r\nok\r\n",
            )

    await asyncio.to_thread(send)


async def test_a_sender_that_stops_and_starts_again_is_late_then_up_by_the_stored_arrivals(
    js: JetStreamContext, pipe_pool: asyncpg.Pool, countries: Countries, monitor: tuple[int, str]
) -> None:
    [country] = countries.take()
    monitor_id, public_id = monitor
    rng = random.Random(83)
    stop_at, gap = rng.uniform(30, 60), rng.uniform(25, 60)
    sent, t = [], rng.uniform(0, 9)
    while t < 180:
        if not stop_at <= t < stop_at + gap:
            sent.append(round(t * 60) / 60)
        t += rng.uniform(6, 10)
    local = new_local_part()
    kv = await js.key_value(RECEIVERS_BUCKET)
    await kv.put(local, encode(ReceivingAddress(monitor_id=public_id)))
    clock = ManualClock(T0)
    settings = msgspec.convert(
        {
            "AGENT_RECEIVER_DOMAIN": DOMAIN,
            "AGENT_RECEIVER_HOST": "127.0.0.1",
            "AGENT_RECEIVER_PORT": 0,
            "AGENT_RECEIVER_MESSAGES_PER_ADDRESS": 1000,
        },
        ReceiverSettings,
    )

    async def publish(arrival: Arrival) -> None:
        await js.publish(
            arrivals_subject(country, arrival.monitor_id),
            encode(arrival),
            headers={"Nats-Msg-Id": arrival.arrival_id},
        )

    judge_clock = ManualClock(m(400))
    intake = ArrivalsIntake(js, pipe_pool, keep_days=1, clock=judge_clock)
    stop = asyncio.Event()
    async with DnsPeer({}) as dns:
        receiver = Receiver(
            settings,
            country=country,
            agent_id=f"{country}-rx",
            book=AddressBook(),
            publish=publish,
            lookup=Lookup(blocking_resolver(f"127.0.0.1:{dns.port}")),
            clock=clock,
        )
        watching = asyncio.create_task(watch(js, receiver.book, stop))
        await receiver.start()
        try:
            await asyncio.wait_for(receiver.book.ready.wait(), 10)  # the bucket's entries in
            assert receiver.book.get(local) is not None
            for at in sent:
                clock.set(m(at))
                await _send(receiver.port, f"{local}@{DOMAIN}", "[ok] nightly backup")
            clock.set(m(100))
            await _send(receiver.port, f"{local}@{DOMAIN}", "weekly digest")  # no match
            # An arrival on another country's subject is ended, not stored.
            stray = Arrival(
                arrival_id=str(uuid.uuid4()),
                monitor_id=public_id,
                country="ZZ",
                agent_id="x",
                arrived_at="2026-11-28T23:30:00.000Z",
                peer="192.0.2.1",
                subject="nightly",
            )
            await js.publish(arrivals_subject(country, public_id), encode(stray))
            stored = 0
            for _ in range(100):
                stored += await intake.step(0.2)
                if stored >= len(sent) + 1:
                    break
        finally:
            stop.set()
            watching.cancel()
            await receiver.stop()
            await intake.close()
    async with pipe_pool.acquire() as conn:
        rows = await between(conn, monitor_id, m(-1), m(400))
    assert len(rows) == len(sent) + 1 and stored == len(sent) + 1
    assert [r.arrived_at for r in rows if "nightly" in r.subject] == [m(s) for s in sent]
    assert all(r.peer == "127.0.0.1" and r.tls_version is None for r in rows)
    downs = 0
    async with pipe_pool.acquire() as conn:
        for minute in range(0, 200):
            now = m(minute)
            window = await between(conn, monitor_id, now - RULE.span - timedelta(days=1), now)
            matching = [
                r.arrived_at for r in window if RULE.matches(r.header_from, r.mail_from, r.subject)
            ]
            verdict = judge(RULE, matching, T0, now)
            last = max((s for s in sent if s <= minute), default=None)
            if last is None:
                want = "pending" if minute < 12 else "down"
            else:
                want = "up" if minute - last < 12 else "down"
            assert verdict.state == want, (minute, last)
            downs += want == "down"
    assert downs >= 10  # the gap was late for at least ten minutes
    # A day after minute 99.5, the arrivals before it are past their keep, and only those go.
    judge_clock.set(m(99.5 + 24 * 60))
    older = [s for s in sent if s < 99.5]
    assert await intake.expire() == len(older)
    async with pipe_pool.acquire() as conn:
        left = await between(conn, monitor_id, m(-1), m(400))
    assert len(left) == len(sent) + 1 - len(older)
    assert min(r.arrived_at for r in left) >= m(99.5)
