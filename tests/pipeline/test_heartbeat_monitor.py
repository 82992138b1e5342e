"""A heartbeat monitor end to end on real parts: Debian's Postfix sends the nightly mail to the
agent's receiver, the arrivals go over NATS (ARRIVALS) into PostgreSQL by the intake, and the
alerter (on a ManualClock, never the wall) judges the monitor by its rule: a sender that stops
for longer than a period and its grace is `down` with one incident and its notice, and the
next arrival recovers it. No arrival wakes the alerter for the late verdict: the rule's
`due_at` does."""

import asyncio
import smtplib
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
from controller.alerting.alerter import Alerter
from controller.arrivals import watch_store
from controller.arrivals.intake import ArrivalsIntake
from controller.jobs.rules import JobIds
from controller.notify.links import Links
from controller.runtime.pipeline import build_alerter
from controller.settings import ControllerSettings
from shared.arrivals import RECEIVERS_BUCKET, Arrival, ReceivingAddress, encode, new_local_part
from shared.clock import ManualClock
from shared.subjects import arrivals_subject
from testkit.peers.dns import DnsPeer
from testkit.peers.postfix import SendingPostfix, missing
from tests.agent.test_receiver import submit
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")

DOMAIN = "rx.mailprobe.test"
T0 = datetime(2026, 11, 28, 23, 50, tzinfo=UTC)  # the history crosses midnight


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Heartbeat(msgspec.Struct):
    id: int
    public_id: str
    local: str


@pytest.fixture
async def heartbeat(pipe_pool: asyncpg.Pool, org: Tenant) -> AsyncIterator[Heartbeat]:
    """A heartbeat monitor (every 10 min, 2 min grace, subject `nightly`) watched from T0."""
    local = new_local_part()
    config = {"everyMinutes": 10, "graceMinutes": 2, "subject": "nightly", "localPart": local}
    async with pipe_pool.acquire() as conn:
        row = await conn.fetchrow(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port,"
            " status, check_interval, timeout_seconds, config, notification_email)"
            " VALUES ($1, $2, 'heartbeat', 'nightly backup', $3, 25, 'active', 60, 30, $4,"
            " 'ops@example.com') RETURNING id, public_id",
            org.org_id,
            org.customer_id,
            f"{local}@{DOMAIN}",
            config,
        )
        assert row is not None
        assert (
            await conn.fetchval("SELECT count(*) FROM monitor_due WHERE monitor_id = $1", row["id"])
            == 0
        ), "a heartbeat monitor is never scheduled as rounds"
        watched = "SELECT count(*) FROM heartbeat_watch WHERE monitor_id = $1"
        assert await conn.fetchval(watched, row["id"]) == 1, "watched from when it is added"
        await watch_store.watch(conn, row["id"], T0)
    yield Heartbeat(row["id"], str(row["public_id"]), local)


async def _state(pool: asyncpg.Pool, monitor_id: int) -> str:
    async with pool.acquire() as conn:
        state: str = await conn.fetchval(
            "SELECT coalesce((SELECT state FROM monitor_alert_state WHERE monitor_id = $1),"
            " 'unknown')",
            monitor_id,
        )
    return state


async def test_postfix_stops_sending_and_the_heartbeat_is_down_once_then_recovers(
    js: JetStreamContext,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    heartbeat: Heartbeat,
    settings: ControllerSettings,
    job_ids: JobIds,
) -> None:
    [country] = countries.take()
    kv = await js.key_value(RECEIVERS_BUCKET)
    await kv.put(heartbeat.local, encode(ReceivingAddress(monitor_id=heartbeat.public_id)))
    receiver_clock, clock = ManualClock(T0), ManualClock(T0)
    alerter: Alerter = build_alerter(
        settings, pipe_pool, js, job_ids, Links("https://mailprobe.example.test"), clock=clock.now
    )
    intake = ArrivalsIntake(js, pipe_pool, keep_days=30, clock=clock)
    settings_rx = msgspec.convert(
        {"AGENT_RECEIVER_DOMAIN": DOMAIN, "AGENT_RECEIVER_HOST": "127.0.0.1"}
        | {"AGENT_RECEIVER_PORT": 0, "AGENT_RECEIVER_MESSAGES_PER_ADDRESS": 1000},
        ReceiverSettings,
    )

    async def publish(arrival: Arrival) -> None:
        await js.publish(
            arrivals_subject(country, arrival.monitor_id),
            encode(arrival),
            headers={"Nats-Msg-Id": arrival.arrival_id},
        )

    sends = [1, 9, 17, 35, 43]  # stops after minute 17: late from 29 (17 + 10 + 2) to 35
    states: dict[int, str] = {}
    stop = asyncio.Event()
    async with DnsPeer({}) as dns:
        receiver = Receiver(
            settings_rx,
            country=country,
            agent_id=f"{country}-rx",
            book=AddressBook(),
            publish=publish,
            lookup=Lookup(blocking_resolver(f"127.0.0.1:{dns.port}")),
            clock=receiver_clock,
        )
        watching = asyncio.create_task(watch(js, receiver.book, stop))
        await receiver.start()
        try:
            await asyncio.wait_for(receiver.book.ready.wait(), 10)
            async with SendingPostfix(DOMAIN, receiver.port, "may") as postfix:
                for minute in range(0, 50):
                    clock.set(m(minute))
                    receiver_clock.set(m(minute))
                    if minute in sends:
                        sent = postfix.log().count("status=sent")
                        to = f"{heartbeat.local}@{DOMAIN}"
                        await submit(postfix, to, f"[ok] nightly backup {minute}")
                        for _ in range(400):
                            if postfix.log().count("status=sent") > sent:
                                break
                            await asyncio.sleep(0.05)
                        else:
                            raise AssertionError(postfix.log()[-2000:])
                        stored = 0
                        for _ in range(50):
                            stored += await intake.step(0.2)
                            if stored:
                                break
                        assert stored == 1, minute
                    await alerter.burst()
                    states[minute] = await _state(pipe_pool, heartbeat.id)
        finally:
            stop.set()
            watching.cancel()
            await receiver.stop()
            await intake.close()
    want = {t: "unknown" if t < 1 else ("down" if 29 <= t < 35 else "up") for t in range(0, 50)}
    assert states == want
    async with pipe_pool.acquire() as conn:
        incidents = await conn.fetch(
            "SELECT started_at, ended_at, cause_kind FROM incidents WHERE monitor_id = $1",
            heartbeat.id,
        )
        notices = await conn.fetch(
            "SELECT kind, target FROM notification_outbox WHERE monitor_id = $1 ORDER BY id",
            heartbeat.id,
        )
    assert len(incidents) == 1
    [incident] = incidents
    assert incident["cause_kind"] == "late"
    assert incident["started_at"] == m(29)
    assert incident["ended_at"] == m(35)
    kinds = [n["kind"] for n in notices]
    assert kinds.count("down") >= 1 and kinds.count("recovered") >= 1, kinds
    assert {n["target"] for n in notices} == {"ops@example.com"}


async def test_a_message_taken_again_after_a_partly_failed_publish_counts_once(
    js: JetStreamContext,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    heartbeat: Heartbeat,
    org: Tenant,
) -> None:
    """One message to two monitors' addresses: the second arrival's publish fails, the sender
    is told `451` and sends the message again; each monitor then holds it once (its arrival id
    is the message's, so the first monitor's second copy is the same arrival)."""
    [country] = countries.take()
    other_local = new_local_part()
    async with pipe_pool.acquire() as conn:
        other = await conn.fetchrow(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port,"
            " status, check_interval, timeout_seconds, config)"
            " VALUES ($1, $2, 'heartbeat', 'invoices', $3, 25, 'active', 60, 30, $4)"
            " RETURNING id, public_id",
            org.org_id,
            org.customer_id,
            f"{other_local}@{DOMAIN}",
            {"everyMinutes": 60, "localPart": other_local},
        )
    assert other is not None
    kv = await js.key_value(RECEIVERS_BUCKET)
    for local, public_id in ((heartbeat.local, heartbeat.public_id), (other_local, other[1])):
        await kv.put(local, encode(ReceivingAddress(monitor_id=str(public_id))))
    failed: list[str] = []

    async def publish(arrival: Arrival) -> None:
        if arrival.monitor_id == str(other[1]) and not failed:
            failed.append(arrival.arrival_id)
            raise TimeoutError("NATS away")
        await js.publish(
            arrivals_subject(country, arrival.monitor_id),
            encode(arrival),
            headers={"Nats-Msg-Id": arrival.arrival_id},
        )

    clock = ManualClock(T0)
    intake = ArrivalsIntake(js, pipe_pool, keep_days=30, clock=clock)
    settings_rx = msgspec.convert(
        {"AGENT_RECEIVER_DOMAIN": DOMAIN, "AGENT_RECEIVER_HOST": "127.0.0.1"}
        | {"AGENT_RECEIVER_PORT": 0},
        ReceiverSettings,
    )
    stop = asyncio.Event()
    to = [f"{heartbeat.local}@{DOMAIN}", f"{other_local}@{DOMAIN}"]
    body = (
        "From: cron@sender.mailprobe.test\r\nSubject: nightly\r\n"
        "Message-ID: <once@sender.mailprobe.test>\r\n\r\nok\r\n"
    )

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", receiver.port, timeout=10) as s:
            s.sendmail("cron@sender.mailprobe.test", to, body)

    async with DnsPeer({}) as dns:
        receiver = Receiver(
            settings_rx,
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
            await asyncio.wait_for(receiver.book.ready.wait(), 10)
            for _ in range(200):
                if receiver.book.get(other_local) and receiver.book.get(heartbeat.local):
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(smtplib.SMTPDataError) as refused:
                await asyncio.to_thread(send)
            assert refused.value.smtp_code == 451
            clock.advance(90)  # the sender's retry, a minute and a half later
            await asyncio.to_thread(send)
            stored = 0
            for _ in range(50):
                stored += await intake.step(0.2)
                if stored >= 2:
                    break
        finally:
            stop.set()
            watching.cancel()
            await receiver.stop()
            await intake.close()
    assert failed
    async with pipe_pool.acquire() as conn:
        counts = await conn.fetch(
            "SELECT monitor_id, count(*) AS n FROM arrivals WHERE monitor_id = ANY($1::bigint[])"
            " GROUP BY monitor_id",
            [heartbeat.id, other["id"]],
        )
    assert {r["monitor_id"]: r["n"] for r in counts} == {heartbeat.id: 1, other["id"]: 1}
