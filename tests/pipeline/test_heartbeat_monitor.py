"""A heartbeat monitor end to end on real parts: Debian's Postfix sends the nightly mail to the
agent's receiver, the arrivals go over NATS (ARRIVALS) into PostgreSQL by the intake, and the
alerter (on a ManualClock, never the wall) judges the monitor by its rule: a sender that stops
for longer than a period and its grace is `down` with one incident and its notice, and the
next arrival recovers it. No arrival wakes the alerter for the late verdict: the rule's
`due_at` does."""

import asyncio
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
            DOMAIN,
            config,
        )
        assert row is not None
        assert (
            await conn.fetchval("SELECT count(*) FROM monitor_due WHERE monitor_id = $1", row["id"])
            == 0
        ), "a heartbeat monitor is never scheduled as rounds"
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
                        await submit(postfix.port, to, f"[ok] nightly backup {minute}")
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
