"""The outbox worker's guarantees: whatever a send raises is a recorded failure, rows out of
attempts are never sent, notices to one recipient leave in order, reminders of closed incidents
are dropped, each worker claims only its channels, a lease is renewed while its batch is sent,
a late write-back never overwrites, permanent refusals are not retried, smtps:// relays."""

import asyncio
import ssl
from datetime import timedelta

import asyncpg
import trustme
from structlog.testing import capture_logs

from controller.db.pool import create_pool
from controller.monitors import store as monitors
from controller.notify import Notification
from controller.notify import events_store as events_db
from controller.notify import outbox_store as outbox_db
from controller.notify.email import EmailChannel
from controller.notify.entry import Notice, Source, notify
from controller.notify.outbox import OutboxWorker
from controller.notify.outbox_store import REMINDER_DROPPED
from controller.notify.recipients import Outgoing
from controller.notify.sms import SmsChannel
from shared import embedded
from shared.clock import WALL
from shared.timefmt import utcnow
from testkit.alerting.peers import Relay
from testkit.alerting.wired import wired_alerter
from testkit.trust import trusting
from tests.alerting.conftest import (
    DOWN,
    RELAY_PASSWORD,
    RELAY_USER,
    SENDER,
    UP,
    Rig,
    email_channel,
)


async def history(rig: Rig, outbox_id: int) -> list[tuple[int, str]]:
    rows = await rig.fetch(
        "SELECT attempt, status FROM alert_history WHERE outbox_id = $1 ORDER BY id", outbox_id
    )
    return [(r["attempt"], r["status"]) for r in rows]


async def test_a_send_that_raises_is_a_recorded_failure_and_the_batch_is_written(
    rig: Rig,
) -> None:
    bad = await rig.monitor(name="Bad", phone=None, hostname="bad.customer.test")
    await rig.rounds(bad, 0, [DOWN, DOWN])
    (row,) = await rig.outbox_rows(bad)
    async with rig.pool.acquire() as conn:  # a subject an older controller wrote
        await conn.execute(
            "UPDATE notification_outbox SET subject = 'DOWN: a\r\nBcc: x@evil.test' WHERE id = $1",
            row["id"],
        )
    good = await rig.monitor(name="Good", hostname="good.customer.test")
    await rig.rounds(good, 0, [DOWN, DOWN])
    with capture_logs() as logs:
        assert await rig.outbox(max_attempts=2).burst() == 2
    assert [str(m["Subject"]) for m in rig.relay.messages] == ["[mailprobe] DOWN: Good"]
    assert len(rig.sms.requests) == 1
    (row,) = await rig.outbox_rows(bad)
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert row["last_error"].startswith("internal error: ValueError")
    assert await history(rig, row["id"]) == [(1, "failed"), (2, "failed")]
    assert all(r["status"] == "sent" for r in await rig.outbox_rows(good))
    raised = [e for e in logs if e["event"] == "notification send raised"]
    assert len(raised) == 2 and raised[0]["log_level"] == "error"


async def test_a_name_with_a_line_break_stored_earlier_still_makes_a_one_line_subject(
    rig: Rig,
) -> None:
    m = await rig.monitor(name="Relay\r\nBcc: x@evil.test", phone=None)
    await rig.rounds(m, 0, [DOWN, DOWN])
    assert await rig.outbox().burst() == 1
    (mail,) = rig.relay.messages
    assert mail["Subject"] == "[mailprobe] DOWN: Relay  Bcc: x@evil.test"
    assert mail["Bcc"] is None


async def test_a_row_out_of_attempts_fails_with_its_last_error_and_is_not_sent(
    rig: Rig,
) -> None:
    m = await rig.monitor(phone=None)
    await rig.rounds(m, 0, [DOWN, DOWN])
    (row,) = await rig.outbox_rows(m)
    async with rig.pool.acquire() as conn:  # its last worker died before writing back
        await conn.execute(
            "UPDATE notification_outbox SET attempts = 3, last_error = 'relay unreachable'"
            " WHERE id = $1",
            row["id"],
        )
    assert await rig.outbox(max_attempts=3).burst() == 0
    assert rig.relay.messages == []
    (row,) = await rig.outbox_rows(m)
    assert (row["status"], row["last_error"]) == ("failed", "relay unreachable")
    assert await history(rig, row["id"]) == [(3, "failed")]


async def test_a_recovery_waits_for_its_down_notice_held_back_by_backoff(rig: Rig) -> None:
    m = await rig.monitor(phone=None)
    await rig.relay.stop()
    await rig.rounds(m, 0, [DOWN, DOWN])
    worker = rig.outbox(backoff_s=600)
    assert await worker.deliver() == 0  # the down notice backs off for ten minutes
    await rig.rounds(m, 2, [UP, UP])
    await rig.relay.start()
    assert await worker.deliver() == 0  # the recovery is due, but its down notice is older
    assert rig.relay.messages == []

    rig.clock.shift = timedelta(minutes=11)
    assert await worker.burst() == 2
    assert [str(msg["Subject"]).split(":")[0] for msg in rig.relay.messages] == [
        "[mailprobe] DOWN",
        "[mailprobe] Recovered",
    ]


async def test_a_reminder_pending_when_its_incident_closed_is_dropped(rig: Rig) -> None:
    m = await rig.monitor(phone=None)
    await rig.rounds(m, 0, [DOWN, DOWN])
    rig.clock.shift = timedelta(minutes=31)
    await rig.rounds(m, 2, [DOWN])
    await rig.rounds(m, 3, [UP, UP])
    assert [r["kind"] for r in await rig.outbox_rows(m)] == ["down", "reminder", "recovered"]

    assert await rig.outbox().burst() == 2
    assert [str(msg["Subject"]).split(":")[0] for msg in rig.relay.messages] == [
        "[mailprobe] DOWN",
        "[mailprobe] Recovered",
    ]
    _, reminder, _ = await rig.outbox_rows(m)
    assert (reminder["status"], reminder["last_error"]) == ("dropped", REMINDER_DROPPED)
    assert await history(rig, reminder["id"]) == [(0, "dropped")]


async def test_each_worker_claims_only_its_channels_and_warns_of_the_others(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, DOWN])  # the alerter knows no channel: both rows are written
    email_only = OutboxWorker(rig.pool, {"email": email_channel(rig.relay)}, clock=WALL.now)
    stop = asyncio.Event()
    stop.set()
    with capture_logs() as logs:
        await email_only.run(stop)  # only says what it has and lacks
    assert await email_only.burst() == 1
    rows = {r["channel"]: r for r in await rig.outbox_rows(m)}
    assert rows["email"]["status"] == "sent"
    assert (rows["sms"]["status"], rows["sms"]["attempts"]) == ("pending", 0)
    (warning,) = [e for e in logs if e.get("channel") == "sms"]
    assert warning["log_level"] == "warning" and "not configured" in warning["event"]

    sms_only = OutboxWorker(rig.pool, {"sms": SmsChannel(rig.sms.url)}, clock=WALL.now)
    assert await sms_only.burst() == 1
    assert len(rig.sms.requests) == 1


async def test_a_lease_is_renewed_while_its_send_hangs_and_a_late_write_back_overwrites_nothing(
    rig: Rig,
) -> None:
    m = await rig.monitor(phone=None)
    await rig.rounds(m, 0, [DOWN, DOWN])
    hold = asyncio.Event()
    rig.relay.keep.script.append((hold, "451 4.3.0 try again later"))
    slow = rig.outbox(lease_s=0.6)  # renewed every 0.2 s
    first = asyncio.create_task(slow.deliver())  # its send hangs at the relay
    await rig.relay.keep.holding.wait()
    (row,) = await rig.outbox_rows(m)
    leased_until = row["next_attempt_at"]
    assert (leased_until - rig.clock()).total_seconds() <= 0.6
    while row["next_attempt_at"] < leased_until + timedelta(seconds=0.6):
        await asyncio.sleep(0.05)  # renewed at least once past the first lease's end
        (row,) = await rig.outbox_rows(m)
    assert rig.clock() > leased_until
    assert await rig.outbox().deliver() == 0  # still leased: nobody else sends it

    # The worker stalls (its renewals stop landing): another worker, past the lease, resends.
    later = OutboxWorker(
        rig.pool,
        {"email": email_channel(rig.relay)},
        backoff_s=0,
        clock=lambda: rig.clock() + timedelta(seconds=60),
    )
    assert await later.deliver() == 1
    hold.set()
    with capture_logs() as logs:
        assert await first == 0  # its send failed late...
    (row,) = await rig.outbox_rows(m)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)  # ...in vain
    assert sorted(await history(rig, row["id"])) == [(1, "failed"), (2, "sent")]
    assert [e["event"] for e in logs if e["log_level"] == "warning"][-1].startswith(
        "outcome not written back"
    )


async def test_a_5xx_refusal_fails_at_once_and_a_4xx_one_is_retried(rig: Rig) -> None:
    gone = await rig.monitor(email="gone@customer.test", phone=None, hostname="gone.customer.test")
    busy = await rig.monitor(email="busy@customer.test", phone=None, hostname="busy.customer.test")
    rig.relay.keep.refuse = {
        "gone@customer.test": "550 5.1.1 no such user",
        "busy@customer.test": "450 4.2.1 mailbox busy",
    }
    for m in (gone, busy):
        await rig.rounds(m, 0, [DOWN, DOWN])
    assert await rig.outbox(max_attempts=3).burst() == 0
    (refused,) = await rig.outbox_rows(gone)
    assert (refused["status"], refused["attempts"]) == ("failed", 1)
    assert refused["last_error"] == (
        "relay refused the recipient: 550 5.1.1 no such user (not retried)"
    )
    (retried,) = await rig.outbox_rows(busy)
    assert (retried["status"], retried["attempts"]) == ("failed", 3)
    assert retried["last_error"] == "relay refused the recipient: 450 4.2.1 mailbox busy"


async def test_webhook_4xx_fails_at_once_but_408_429_and_5xx_are_retried(rig: Rig) -> None:
    for status, attempts in ((400, 1), (404, 1), (429, 3), (408, 3), (502, 3)):
        rig.sms.status = status
        m = await rig.monitor(email=None, name=f"Answered {status}", hostname=f"h{status}.test")
        await rig.rounds(m, 0, [DOWN, DOWN])
        assert await rig.outbox(max_attempts=3).burst() == 0
        (row,) = await rig.outbox_rows(m)
        assert (row["status"], row["attempts"]) == ("failed", attempts), status
        assert row["last_error"].startswith(f"SMS webhook answered HTTP {status}")
        assert row["last_error"].endswith("(not retried)") == (attempts == 1)


async def test_email_unreachable_relay_says_so() -> None:
    channel = EmailChannel(f"smtp://127.0.0.1:{embedded.free_port()}", SENDER, timeout_s=2)
    try:
        await channel.send(Notification("a@b.test", "s", "t", None, "k"))
    except Exception as exc:
        assert str(exc).startswith("relay unreachable")
        assert getattr(exc, "permanent", None) is False
    else:
        raise AssertionError("delivered to nobody")


async def test_email_through_an_smtps_relay_with_auth() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = trusting(ca)
    relay = Relay(embedded.free_port(), tls=server_ctx, users={RELAY_USER: RELAY_PASSWORD})
    await relay.start()
    try:
        channel = EmailChannel(
            f"smtps://{RELAY_USER}:{RELAY_PASSWORD}@127.0.0.1:{relay.port}",
            SENDER,
            tls_context=client_ctx,
        )
        await channel.send(Notification("a@b.test", "Over TLS", "text", None, "k"))
    finally:
        await relay.stop()
    assert relay.logins == [RELAY_USER]
    (msg,) = relay.messages
    assert msg["Subject"] == "Over TLS"


async def test_the_same_notification_to_a_second_channel_row_is_independent(rig: Rig) -> None:
    """Ordering is per recipient and channel: an SMS backing off never holds the e-mail."""
    m = await rig.monitor()
    rig.sms.status = 503
    await rig.rounds(m, 0, [DOWN, DOWN])
    worker = rig.outbox(backoff_s=600)
    assert await worker.deliver() == 1
    assert len(rig.relay.messages) == 1
    rows = {r["channel"]: r for r in await rig.outbox_rows(m)}
    assert rows["sms"]["status"] == "pending"
    async with rig.pool.acquire() as conn:
        again = [Outgoing("down", "email", "other@customer.test", "s", "t", None, "x:other")]
        w = await monitors.watched(conn, m["id"])
        assert w is not None
        org, incident = w.monitor.organization_id, rows["email"]["incident_id"]
        await notify(conn, Notice(Source.OUTAGE, org, w.monitor, incident, again), utcnow())
    assert await worker.deliver() == 1  # another recipient is not held either


async def test_passes_with_nothing_due_open_no_transaction_and_a_due_row_is_still_sent(
    rig: Rig, alert_database_url: str
) -> None:
    """The outbox worker and the alerter's event publisher poll every second on every replica:
    with nothing due a pass is one statement, no transaction and no lock; what falls due is
    sent by the next pass."""
    sent: list[str] = []

    async def log_queries(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda q: sent.append(" ".join(q.query.split())))

    pool = await create_pool(alert_database_url, 2, setup=log_queries)
    try:
        channels = {"email": email_channel(rig.relay)}
        worker = OutboxWorker(pool, channels, clock=rig.clock, backoff_s=0)
        publisher = wired_alerter(pool, rig.js, rig.job_ids, clock=rig.clock)
        assert await rig.outbox().burst() == 0  # what other tests of this database left
        await rig.alerter.events.publish()

        for _ in range(3):
            assert await worker.deliver() == 0
            assert await publisher.events.publish() == 0
        await asyncio.sleep(0.1)  # loggers are called soon after
        assert sorted(set(sent)) == [
            "SELECT EXISTS (SELECT 1 FROM event_outbox)",
            "SELECT EXISTS (SELECT 1 FROM notification_outbox"
            " WHERE status = 'pending' AND next_attempt_at <= $1)",
        ], sent

        m = await rig.monitor(phone=None)
        await rig.rounds(m, 0, [DOWN, DOWN])
        assert await worker.deliver() == 1
        assert [str(mail["Subject"]) for mail in rig.relay.messages] == [
            "[mailprobe] DOWN: Outbound relay"
        ]
        # An event written by a replica that died before publishing it.
        got = await rig.js.subscribe("mon.events.test-outbox-poll", ordered_consumer=True)
        async with rig.pool.acquire() as conn:
            await events_db.add_event(conn, "mon.events.test-outbox-poll", "poll-1", b"{}")
        assert await publisher.events.publish() == 1
        assert (await got.next_msg(timeout=5)).data == b"{}"
    finally:
        await pool.close()


async def test_a_monitor_deleted_as_its_notice_is_written_back(rig: Rig) -> None:
    """A monitor deleted while the worker writes back its notice's outcome: the write-back
    waits for the delete (it locks the rows' monitors first) and writes what is left, the other
    monitor's outcome; nothing fails on the deleted monitor's rows, which went with it."""
    gone, kept = [
        await rig.monitor(name=n, phone=None, hostname=f"{n.lower()}.customer.test")
        for n in ("Gone", "Kept")
    ]
    for m in (gone, kept):
        await rig.rounds(m, 0, [DOWN, DOWN])
    async with rig.pool.acquire() as conn:
        offered = await outbox_db.due(conn, rig.clock(), ["email"], 40, 10)
        rows = await outbox_db.claim_outbox(conn, rig.clock(), [d.id for d in offered], 10.0, 40)
    assert sorted(r.monitor_id or 0 for r in rows) == sorted([gone["id"], kept["id"]])

    async def write_back() -> list[outbox_db.Claimed]:
        async with rig.pool.acquire() as conn, conn.transaction():
            sent = [(None, None)] * len(rows)
            return await outbox_db.record_attempts(conn, rows, sent, WALL.now())

    async with rig.pool.acquire() as deleting, deleting.transaction():
        await deleting.execute("DELETE FROM monitors WHERE id = $1", gone["id"])
        writing = asyncio.create_task(write_back())
        async with asyncio.timeout(10):  # until the write-back waits on the delete's lock
            while not await deleting.fetchval(  # noqa: ASYNC110 (polling the database)
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ):
                await asyncio.sleep(0.01)
    assert await writing == []
    (row,) = await rig.outbox_rows(kept)
    assert row["status"] == "sent"
    assert await history(rig, row["id"]) == [(1, "sent")]
    assert await rig.outbox_rows(gone) == []


async def test_a_write_back_written_again_lands_once(rig: Rig) -> None:
    """The answer to a write-back's commit was lost (the primary died as it committed) and
    the worker writes it again: the outcome is the same and the history has one line."""
    # Three servers: three mail-flow problems, a down notice each.
    sent, retried, failed = [
        await rig.monitor(name=n, phone=None, hostname=f"{n.lower()}.customer.test")
        for n in ("A", "B", "C")
    ]
    for m in (sent, retried, failed):
        await rig.rounds(m, 0, [DOWN, DOWN])
    async with rig.pool.acquire() as conn:
        offered = await outbox_db.due(conn, rig.clock(), ["email"], 40, 10)
        rows = await outbox_db.claim_outbox(conn, rig.clock(), [d.id for d in offered], 10.0, 40)
    by_monitor = {r.monitor_id: r for r in rows}
    later = rig.clock() + timedelta(minutes=5)
    outcomes = {
        sent["id"]: (None, None),
        retried["id"]: ("451 try again", later),
        failed["id"]: ("550 no such user", None),
    }
    for _ in range(2):
        async with rig.pool.acquire() as conn, conn.transaction():
            for monitor_id, (error, retry_at) in outcomes.items():
                row = by_monitor[monitor_id]
                assert await outbox_db.record_attempt(
                    conn, row, error, retry_at=retry_at, now=WALL.now()
                )
    (a,), (b,), (c,) = [await rig.outbox_rows(m) for m in (sent, retried, failed)]
    assert (a["status"], b["status"], c["status"]) == ("sent", "pending", "failed")
    assert b["next_attempt_at"] == later
    assert [await history(rig, r["id"]) for r in (a, b, c)] == [
        [(1, "sent")],
        [(1, "failed")],
        [(1, "failed")],
    ]
