"""The outbox: a relay that is down means later delivery, exactly once; two workers never send
the same notification twice; the SMS webhook's contract; STARTTLS to a relay."""

import asyncio
import ssl
import time

import trustme

from controller.monitors import store as monitors
from controller.notify import DeliveryError, Notification
from controller.notify.email import EmailChannel
from controller.notify.entry import Notice, Source, notify
from controller.notify.recipients import Outgoing
from controller.notify.sms import SmsChannel
from shared import embedded
from shared.clock import WALL
from shared.timefmt import utcnow
from testkit.alerting.peers import Relay, SmsGateway
from testkit.trust import trusting
from tests.alerting.conftest import DOWN, RELAY_PASSWORD, RELAY_USER, SENDER, Rig


async def test_relay_down_then_up_delivers_once(rig: Rig) -> None:
    m = await rig.monitor(phone=None)
    await rig.relay.stop()
    await rig.rounds(m, 0, [DOWN, DOWN])
    worker = rig.outbox(max_attempts=5)
    assert await worker.deliver() == 0
    (row,) = await rig.outbox_rows(m)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "relay unreachable" in row["last_error"]

    await rig.relay.start()
    assert await worker.burst() == 1
    assert await worker.burst() == 0
    assert len(rig.relay.messages) == 1
    (row,) = await rig.outbox_rows(m)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    history = await rig.fetch(
        "SELECT attempt, status, error FROM alert_history WHERE monitor_id = $1 ORDER BY id",
        m["id"],
    )
    assert [(h["attempt"], h["status"]) for h in history] == [(1, "failed"), (2, "sent")]
    assert "relay unreachable" in history[0]["error"]
    assert RELAY_PASSWORD not in history[0]["error"]


async def test_retries_back_off_exponentially_and_give_up_after_max_attempts(rig: Rig) -> None:
    m = await rig.monitor(email=None)
    rig.sms.status = 503
    await rig.rounds(m, 0, [DOWN, DOWN])
    worker = rig.outbox(max_attempts=3)
    assert worker.backoff(1).total_seconds() == 0  # the tests' base; production's is 30 s
    assert await worker.burst() == 0
    (row,) = await rig.outbox_rows(m)
    assert (row["status"], row["attempts"]) == ("failed", 3)
    assert row["last_error"] == "SMS webhook answered HTTP 503"
    assert len(rig.sms.requests) == 3
    keys = {headers["idempotency-key"] for _, headers, _ in rig.sms.requests}
    assert keys == {row["dedupe_key"]}


def test_backoff_doubles_up_to_an_hour(rig: Rig) -> None:
    from controller.notify.outbox import OutboxWorker

    worker = OutboxWorker(rig.pool, {}, backoff_s=30, clock=WALL.now)
    assert [worker.backoff(n).total_seconds() for n in (1, 2, 3, 8, 20)] == [
        30,
        60,
        120,
        3600,
        3600,
    ]


async def test_two_workers_at_once_never_send_twice(rig: Rig) -> None:
    monitors = [await rig.monitor(name=f"Relay {i}") for i in range(12)]
    for m in monitors:
        await rig.rounds(m, 0, [DOWN, DOWN])
    first, second = rig.outbox(batch=3), rig.outbox(batch=3)
    sent = await asyncio.gather(first.burst(), second.burst(), first.burst())
    assert sum(sent) == 24
    assert len(rig.relay.messages) == 12
    assert len({msg["Message-ID"] for msg in rig.relay.messages}) == 12
    assert len(rig.sms.requests) == 12
    rows = await rig.fetch("SELECT count(*) AS n FROM alert_history WHERE status = 'sent'")
    assert rows[0]["n"] == 24


async def test_the_same_notification_is_queued_once(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, DOWN])
    rows = await rig.outbox_rows(m)
    again = [
        Outgoing(r["kind"], r["channel"], r["target"], "s", "t", None, r["dedupe_key"])
        for r in rows
    ]
    async with rig.pool.acquire() as conn:  # as a second replica repeating the evaluation would
        w = await monitors.watched(conn, m["id"])
        assert w is not None
        org, incident = w.monitor.organization_id, rows[0]["incident_id"]
        await notify(conn, Notice(Source.OUTAGE, org, w.monitor, incident, again), utcnow())
    assert len(await rig.outbox_rows(m)) == 2


async def test_sms_webhook_posts_json_to_and_text() -> None:
    async with SmsGateway() as gateway:
        await SmsChannel(gateway.url).send(
            Notification("+4915112345678", "", "mailprobe DOWN: x", None, "k-1")
        )
        ((path, headers, body),) = gateway.requests
    assert path == "/sms"
    assert headers["content-type"] == "application/json"
    assert body == {"to": "+4915112345678", "text": "mailprobe DOWN: x"}


async def test_sms_webhook_answer_body_is_never_read() -> None:
    """A gateway answering 200 with 256 MiB: delivered on its status, the body left unread and
    the connection closed (the gateway got no further than socket buffers and a read ahead)."""
    async with SmsGateway(body_mib=256) as gateway:
        began = time.monotonic()
        await SmsChannel(gateway.url).send(Notification("+4915112345678", "", "t", None, "k"))
        took = time.monotonic() - began
        await asyncio.sleep(0.5)  # the gateway notices the close
    print(f"\ngateway sent {gateway.sent / 2**20:.0f} MiB before the close; send took {took:.2f} s")
    assert len(gateway.requests) == 1
    assert gateway.sent <= 64 << 20


async def test_sms_webhook_unreachable_is_a_delivery_error() -> None:
    channel = SmsChannel(f"http://user:hook-secret@127.0.0.1:{embedded.free_port()}/sms")
    try:
        await channel.send(Notification("+4915112345678", "", "t", None, "k"))
    except DeliveryError as exc:
        assert "hook-secret" not in str(exc)
        assert "unreachable" in str(exc)
    else:
        raise AssertionError("no DeliveryError")


async def test_email_upgrades_with_starttls_when_the_relay_offers_it() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = trusting(ca)
    relay = Relay(embedded.free_port(), starttls=server_ctx, users={RELAY_USER: RELAY_PASSWORD})
    await relay.start()
    try:
        channel = EmailChannel(
            f"smtp://{RELAY_USER}:{RELAY_PASSWORD}@127.0.0.1:{relay.port}",
            SENDER,
            tls_context=client_ctx,
        )
        await channel.send(Notification("a@b.test", "Subject", "text", "<p>html</p>", "k"))
    finally:
        await relay.stop()
    assert relay.logins == [RELAY_USER]  # AUTH is only offered after STARTTLS here
    (msg,) = relay.messages
    assert msg["Subject"] == "Subject"


async def test_email_rejected_credentials_are_a_delivery_error_without_them(rig: Rig) -> None:
    channel = EmailChannel(f"smtp://{RELAY_USER}:wrong-pw@127.0.0.1:{rig.relay.port}", SENDER)
    try:
        await channel.send(Notification("a@b.test", "s", "t", None, "k"))
    except DeliveryError as exc:
        assert "535" in str(exc)
        assert "wrong-pw" not in str(exc)
    else:
        raise AssertionError("no DeliveryError")
