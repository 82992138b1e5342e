"""Notices are fair between organizations (issue 78): one organization's outage notices to
100 channels that never answer (loopback listeners that accept and stay silent) do not hold
another organization's outage page, on real PostgreSQL and real HTTP endpoints. Deadlines are
shortened here (a channel's answer within DEADLINE_S, not the shipped 10 s) and the target
with them; `python -m bench fair-notices` measures the shipped defaults. A channel that never
answers gets one send at a time and rests after three failures; a sender out of file
descriptors says so, and does not blame the channel; the claim's candidates are each
organization's first, in its order."""

import asyncio
import contextlib
import ipaddress
import os
import resource
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from controller.db.pool import create_pool
from controller.notify import DeliveryError, Notification, apprise_channel
from controller.notify import outbox_store as outbox_db
from controller.notify.egress import Egress
from controller.notify.outbox import SENDERS, OutboxWorker, Outcome, failure
from controller.notify.sms import SmsChannel
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.clock import WALL
from shared.timefmt import utcnow
from testkit.alerting.peers import Relay, SmsGateway
from testkit.alerting.receivers import Receiver, client_context
from testkit.alerting.silent_channels import (
    SECRET,
    SilentListener,
    more_monitors,
    outage,
    page_latency,
    sender_channels,
    site,
)
from tests.alerting.conftest import LOOPBACK, email_channel

DEADLINE_S = 1.0  # a channel's answer (shipped: 10 s)
BACKOFF_S = 3.0  # the first retry's wait (shipped: 30 s)
TARGET_S = 3.0  # the victim's page after its incident (shipped: 30 s)


@pytest.fixture(autouse=True)
async def monitors_removed(alert_pool: asyncpg.Pool) -> AsyncIterator[None]:
    """The monitors a test made are removed after it, as `org` removes them: the alerter of the
    next file's tests claims every queued monitor of this database."""
    yield
    async with alert_pool.acquire() as conn:
        await conn.execute("DELETE FROM monitors")


@pytest.mark.parametrize("replicas", [1, 2])
async def test_an_outage_page_is_not_held_by_another_organizations_silent_channels(
    alert_pool: asyncpg.Pool,
    alert_database_url: str,
    settings: ControllerSettings,
    replicas: int,
) -> None:
    """With one controller, or two sharing the outbox (each its own pool and senders)."""
    assert settings.secrets.secrets_key is not None
    box = SecretBox(settings.secrets.secrets_key)
    egress = Egress({"*": LOOPBACK}, ssl_context=client_context(), timeout_s=DEADLINE_S)
    others = [await create_pool(alert_database_url, 4) for _ in range(replicas - 1)]
    stop = asyncio.Event()
    try:
        async with SilentListener() as silent, Receiver("webhook", SECRET) as working:
            where = await site(alert_pool, box, silent.url, working.url)
            running = [
                asyncio.create_task(
                    OutboxWorker(
                        pool,
                        sender_channels(pool, box, egress),
                        backoff_s=BACKOFF_S,
                        clock=WALL.now,
                    ).run(stop)
                )
                for pool in others
            ]
            worker = OutboxWorker(
                alert_pool,
                sender_channels(alert_pool, box, egress),
                backoff_s=BACKOFF_S,
                clock=WALL.now,
            )
            # the victim's incident opens while every sender of every replica holds one of
            # the attacker's silent channels (page_latency waits until they do, however slow
            # the machine): its page then waits for the first sender a deadline frees, given
            # to it first, not for the attacker's queue (100 notices of 1 s each on 10
            # senders a replica: 5-10 s)
            everyone = SENDERS * replicas
            latency = await page_latency(
                alert_pool,
                worker,
                where,
                working,
                silent,
                busy_s=1.5 * DEADLINE_S,
                within_s=60,
                held=everyone,
            )
            stop.set()
            await asyncio.gather(*running)
            assert latency is not None and latency < TARGET_S, latency
            assert silent.most == everyone  # each worker's own connections bounded
            assert len(working.delivered) == 1  # the victim's page once, whoever sent it
    finally:
        for pool in others:
            await pool.close()


@contextlib.contextmanager
def no_file_descriptor_to_spare() -> Iterator[None]:
    """This process at its file descriptor limit (lowered to 4,096 at most, then filled)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 4096), hard))
        with contextlib.suppress(OSError):
            while len(held) < 4096:
                held.append(os.open("/dev/null", os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_sender_out_of_file_descriptors_says_so_and_blames_no_channel(
    sms: SmsGateway, relay: Relay
) -> None:
    """At the process's file descriptor limit a working channel's send fails for a cause of
    mailprobe's own: retried soon (`soon`), not the channel's "unreachable" (which would
    count against its breaker and back off as the receiver's fault). The same for the SMS
    webhook and the relay, whose own errors say only "unreachable": the outbox tells the
    cause."""
    egress = Egress({"*": LOOPBACK}, ssl_context=client_context(), timeout_s=DEADLINE_S)
    gateway = SmsChannel(sms.url, timeout_s=DEADLINE_S)
    mail = email_channel(relay)
    note = Notification("+4915112345678", "", "DOWN", None, "fd-limit")
    async with Receiver("webhook", SECRET, tls=False) as working:
        answer = await egress.of(1).post(working.url, b"{}", {})  # the channel answers
        assert answer.status == 401, answer
        await gateway.send(note)  # and so do the gateway and the relay
        await mail.send(Notification("oncall@customer.test", "DOWN", "DOWN", None, "fd-mail"))
        await asyncio.sleep(0.5)  # the peers (in this process) close their ends first
        with no_file_descriptor_to_spare():
            with pytest.raises(DeliveryError) as posted:
                await egress.of(1).post(working.url, b"{}", {})
            with pytest.raises(DeliveryError) as texted:
                await gateway.send(note)
            with pytest.raises(DeliveryError) as mailed:
                await mail.send(Notification("oncall@customer.test", "DOWN", "DOWN", None, "fd"))
    assert posted.value.soon and not posted.value.permanent, str(posted.value)
    assert str(posted.value) == (
        "not sent: this controller has no file descriptor to spare (EMFILE);"
        " 127.0.0.1 was not tried"
    )
    assert failure(posted.value, "webhook") == Outcome(str(posted.value), soon=True)
    assert failure(mailed.value, "email") == Outcome(
        "not sent: this controller has no file descriptor to spare (EMFILE);"
        " the email endpoint was not tried",
        soon=True,
    )
    assert failure(texted.value, "sms") == Outcome(
        "not sent: this controller has no file descriptor to spare (EMFILE);"
        " the sms endpoint was not tried",
        soon=True,
    )


async def test_an_apprise_send_out_of_file_descriptors_says_so_and_blames_no_channel() -> None:
    """Apprise's plugins catch their connection errors and answer only "not delivered": at the
    process's file descriptor limit the channel's send is told as mailprobe's own shortage,
    retried soon, never the endpoint's failure (its breaker untouched)."""
    granted = [ipaddress.ip_network("127.0.0.0/8")]
    async with Receiver("apprise", tls=False) as working:
        await apprise_channel.send(working.url, "DOWN", "DOWN", granted)  # the channel answers
        assert len(working.requests) == 1
        await asyncio.sleep(0.5)  # the receiver (in this process) closes its end first
        with no_file_descriptor_to_spare(), pytest.raises(DeliveryError) as sent:
            await apprise_channel.send(working.url, "DOWN", "DOWN", granted)
    assert sent.value.soon and not sent.value.permanent, str(sent.value)
    assert str(sent.value) == (
        "not sent: this controller has no file descriptor to spare (EMFILE);"
        " the apprise json:// endpoint was not tried"
    )
    assert failure(sent.value, "apprise") == Outcome(str(sent.value), soon=True)
    assert len(working.requests) == 1


async def test_a_silent_channel_is_tried_once_at_a_time_and_rests_after_three_failures(
    alert_pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """Five monitors' outages told on one channel that never answers: one send at a time (one
    connection), and after three failures in a row its breaker opens: the other two notices
    wait untried, their attempts kept."""
    assert settings.secrets.secrets_key is not None
    box = SecretBox(settings.secrets.secrets_key)
    egress = Egress({"*": LOOPBACK}, ssl_context=client_context(), timeout_s=DEADLINE_S)
    async with SilentListener() as silent, Receiver("webhook", SECRET) as working:
        where = await site(alert_pool, box, silent.url, working.url, silent=1)
        for tenant in [where.attacker, *await more_monitors(alert_pool, where.attacker, 4)]:
            await outage(alert_pool, tenant)
        worker = OutboxWorker(
            alert_pool, sender_channels(alert_pool, box, egress), backoff_s=600, clock=WALL.now
        )
        await worker.burst()
        rows = await alert_pool.fetch(
            "SELECT o.attempts, o.status FROM notification_outbox o JOIN monitors m"
            " ON m.id = o.monitor_id WHERE m.organization_id = $1 ORDER BY o.id",
            where.attacker.organization_id,
        )
        assert [(r["attempts"], r["status"]) for r in rows] == [(1, "pending")] * 3 + [
            (0, "pending")
        ] * 2
        assert (silent.accepted, silent.most) == (3, 1)


async def test_two_controllers_send_to_a_silent_channel_once_at_a_time_and_share_its_breaker(
    alert_pool: asyncpg.Pool, alert_database_url: str, settings: ControllerSettings
) -> None:
    """Two controllers' outbox workers (each its own pool) on one PostgreSQL: five monitors'
    outages told on one channel that never answers get one send at a time between them (one
    connection at once), and three failures in a row, whichever controller saw them, open the
    channel's breaker for both: the other two notices wait untried. The leases are shorter
    than a send here, so the channel's is held by its renewals."""
    assert settings.secrets.secrets_key is not None
    box = SecretBox(settings.secrets.secrets_key)
    egress = Egress({"*": LOOPBACK}, ssl_context=client_context(), timeout_s=DEADLINE_S)
    other = await create_pool(alert_database_url, 4)
    stop = asyncio.Event()
    try:
        async with SilentListener() as silent, Receiver("webhook", SECRET) as working:
            where = await site(alert_pool, box, silent.url, working.url, silent=1)
            for tenant in [where.attacker, *await more_monitors(alert_pool, where.attacker, 4)]:
                await outage(alert_pool, tenant)
            running = [
                asyncio.create_task(
                    OutboxWorker(
                        pool,
                        sender_channels(pool, box, egress),
                        backoff_s=600,
                        interval_s=0.1,
                        lease_s=0.6,  # shorter than a send: held while renewed
                        clock=WALL.now,
                    ).run(stop)
                )
                for pool in (alert_pool, other)
            ]
            await asyncio.sleep(6 * DEADLINE_S)  # three sends end, then two more could
            stop.set()
            await asyncio.gather(*running)
            rows = await alert_pool.fetch(
                "SELECT o.attempts FROM notification_outbox o JOIN monitors m"
                " ON m.id = o.monitor_id WHERE m.organization_id = $1 ORDER BY o.id",
                where.attacker.organization_id,
            )
            assert silent.most == 1, silent.most
            assert silent.accepted == 3, silent.accepted
            assert sorted(r["attempts"] for r in rows) == [0, 0, 1, 1, 1]
    finally:
        await other.close()


async def test_a_channels_send_lease_of_a_controller_that_died_runs_out(
    alert_pool: asyncpg.Pool, alert_database_url: str, settings: ControllerSettings
) -> None:
    """A controller that dies mid-send (its worker cancelled, nothing written back) leaves its
    channel's lease to run out: another controller sends to the channel once it has, not
    before and not never."""
    assert settings.secrets.secrets_key is not None
    box = SecretBox(settings.secrets.secrets_key)
    egress = Egress({"*": LOOPBACK}, ssl_context=client_context(), timeout_s=30)
    other = await create_pool(alert_database_url, 4)
    try:
        async with SilentListener() as silent, Receiver("webhook", SECRET) as working:
            where = await site(alert_pool, box, silent.url, working.url, silent=1)
            await outage(alert_pool, where.attacker)

            def worker(pool: asyncpg.Pool) -> OutboxWorker:
                channels = sender_channels(pool, box, egress)
                return OutboxWorker(pool, channels, interval_s=0.1, lease_s=1.5, clock=WALL.now)

            stop = asyncio.Event()
            dying = asyncio.create_task(worker(alert_pool).run(stop))
            await asyncio.wait_for(silent.first.wait(), 10)
            dying.cancel()  # dies mid-send: no outcome written, no lease given back
            await asyncio.gather(dying, return_exceptions=True)
            died = time.monotonic()
            running = asyncio.create_task(worker(other).run(stop))
            while silent.accepted < 2:
                if time.monotonic() - died > 10:
                    break
                await asyncio.sleep(0.05)
            took = time.monotonic() - died
            stop.set()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            assert silent.accepted == 2, silent.accepted
            assert 1.0 < took < 4.0, took  # the lease (1.5 s from its last renewal) ran out
    finally:
        await other.close()


async def test_the_claims_candidates_are_each_organizations_first_in_its_order(
    alert_pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """`due` offers each organization's first notifications (outage notices first, then the
    oldest), the organizations in turn, and one row per notification channel."""
    assert settings.secrets.secrets_key is not None
    box = SecretBox(settings.secrets.secrets_key)
    where = await site(alert_pool, box, "http://127.0.0.1:9/a", "http://127.0.0.1:9/v", silent=2)
    b, a = where.attacker, where.victim
    hooks = [
        r["channel_id"]
        for r in await alert_pool.fetch(
            "SELECT channel_id FROM monitor_notification_channels WHERE monitor_id = $1"
            " ORDER BY channel_id",
            b.monitor.id,
        )
    ]
    queued: dict[str, int] = {}
    for name, t, channel, channel_id, source in [
        ("b-finding", b, "email", None, "finding"),
        ("b-hook0-1", b, "webhook", hooks[0], "outage"),
        ("b-hook0-2", b, "webhook", hooks[0], "outage"),
        ("b-hook1", b, "webhook", hooks[1], "outage"),
        ("a-mail", a, "email", None, "outage"),
    ]:
        queued[name] = await alert_pool.fetchval(
            "INSERT INTO notification_outbox (monitor_id, kind, channel, target, subject,"
            " body_text, dedupe_key, channel_id, source)"
            " VALUES ($1, 'down', $2, $3, 's', 't', $4, $5, $6) RETURNING id",
            t.monitor.id,
            channel,
            f"{name}@customer.test",
            f"due:{name}:{t.monitor.id}",
            channel_id,
            source,
        )
    try:
        async with alert_pool.acquire() as conn:
            offered = await outbox_db.due(conn, utcnow(), ["email", "webhook"], 40, 2)
            held_back = await outbox_db.due(conn, utcnow(), ["email", "webhook"], 40, 2, hooks)
        mine = set(queued.values())
        names = {v: k for k, v in queued.items()}
        assert [names[d.id] for d in offered if d.id in mine] == [
            "b-hook0-1",
            "a-mail",
            "b-hook1",
        ]
        assert [names[d.id] for d in held_back if d.id in mine] == ["a-mail", "b-finding"]
    finally:
        await alert_pool.execute(
            "DELETE FROM notification_outbox WHERE id = ANY($1::bigint[])", list(queued.values())
        )
