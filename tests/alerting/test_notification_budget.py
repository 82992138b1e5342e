"""An organization's notifications draw on its hourly budget per channel
(ORG_MAX_NOTIFICATIONS_PER_HOUR, ORG_MAX_SMS_PER_HOUR): a member flapping monitors with any
addresses cannot make the operator's relay and SMS gateway send without bound. Past the budget
nothing is silently lost (each is `dropped` in the alert history with why), the owners are told
once an hour per channel, incidents open and close as before, other organizations and retries
are unaffected, and replicas share one count."""

import asyncio
from datetime import datetime, timedelta
from typing import TypedDict, Unpack

import asyncpg
import httpx

from controller.notify import Channel
from controller.notify.budget import Budget, window
from controller.notify.outbox import OutboxWorker
from controller.notify.sms import SmsChannel
from shared.timefmt import utcnow
from tests.alerting.conftest import DOWN, UP, Rig, email_channel
from tests.conftest import make_tenant


class MidHour:
    """The workers' clock: half past the next hour, plus a shift, so no test run straddles a
    window's end by chance, and every row written now is already due."""

    def __init__(self) -> None:
        self.base = window(utcnow()) + timedelta(hours=1, minutes=30)
        self.shift = timedelta()

    def __call__(self) -> datetime:
        return self.base + self.shift


class WorkerOptions(TypedDict, total=False):
    """`OutboxWorker`'s keyword arguments a test sets."""

    backoff_s: float
    batch: int


def worker(
    rig: Rig, clock: MidHour, budget: Budget, **kwargs: Unpack[WorkerOptions]
) -> OutboxWorker:
    channels: dict[str, Channel] = {
        "email": email_channel(rig.relay),
        "sms": SmsChannel(rig.sms.url, timeout_s=5),
    }
    options: WorkerOptions = {"backoff_s": 0, **kwargs}
    return OutboxWorker(rig.pool, channels, clock=clock, budget=budget, **options)


async def history(rig: Rig, monitor: asyncpg.Record) -> list[asyncpg.Record]:
    return await rig.fetch(
        "SELECT kind, channel, target, attempt, status, error FROM alert_history"
        " WHERE monitor_id = $1 ORDER BY id",
        monitor["id"],
    )


def sent_to(rig: Rig, address: str) -> list[str]:
    return [str(m["Subject"]) for m in rig.relay.messages if m["To"] == address]


async def test_past_the_hourly_budget_notifications_are_dropped_with_why_and_owners_told_once(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    clock = MidHour()
    flappers = [
        await rig.monitor(name=f"Flap {i}", hostname=f"flap{i}.customer.test") for i in range(3)
    ]
    for m in flappers:
        await rig.rounds(m, 0, [DOWN, DOWN])
    outbox = worker(rig, clock, Budget(email=2, sms=1))
    await outbox.burst()

    owner = rig.tenant.emails["owner"]
    assert sorted(sent_to(rig, "oncall@customer.test")) == [  # the oldest, sent at once
        "[mailprobe] DOWN: Flap 0",
        "[mailprobe] DOWN: Flap 1",
    ]
    assert len(rig.sms.requests) == 1
    notices = sent_to(rig, owner)
    assert sorted(notices) == [
        "[mailprobe] SMS notifications held back: hourly budget reached",
        "[mailprobe] e-mail notifications held back: hourly budget reached",
    ]
    (held,) = [m for m in rig.relay.messages if m["To"] == owner and "e-mail" in m["Subject"]]
    assert "Flap 2" in held.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    dropped = [r for m in flappers for r in await history(rig, m) if r["status"] == "dropped"]
    assert sorted((r["channel"], r["kind"], r["attempt"]) for r in dropped) == [
        ("email", "down", 0),
        ("sms", "down", 0),
        ("sms", "down", 0),
    ]
    assert all("ORG_MAX_SMS_PER_HOUR" in r["error"] for r in dropped if r["channel"] == "sms")
    (email_drop,) = [r for r in dropped if r["channel"] == "email"]
    assert "ORG_MAX_NOTIFICATIONS_PER_HOUR" in email_drop["error"]
    r = await api.get(
        f"/api/smtp-monitors/{flappers[2]['public_id']}/alert-history",
        headers=rig.tenant.auth("readonly"),
    )
    shown = {(i["channel"], i["status"]) for i in r.json()["items"]}
    assert ("email", "dropped") in shown and ("sms", "dropped") in shown

    # More flapping in the same hour: incidents still close, every notice is dropped, and the
    # owners are not told again.
    for m in flappers:
        await rig.rounds(m, 2, [UP, UP])
    await outbox.burst()
    for m in flappers:
        assert all(i["ended_at"] is not None for i in await rig.incidents(m))
        assert {r["status"] for r in await history(rig, m) if r["kind"] == "recovered"} == {
            "dropped"
        }
    assert len(sent_to(rig, owner)) == 2 and len(rig.relay.messages) == 4

    # Another organization's notices go out meanwhile: the budget is the organization's.
    other = await make_tenant(rig.pool)
    theirs = await rig.monitor(name="Theirs", email="ops@other.test", phone=None, tenant=other)
    await rig.rounds(theirs, 4, [DOWN, DOWN])
    await outbox.burst()
    assert sent_to(rig, "ops@other.test") == ["[mailprobe] DOWN: Theirs"]

    # The next hour the budget is whole again.
    clock.shift = timedelta(hours=1)
    await rig.rounds(flappers[0], 6, [DOWN, DOWN])
    await outbox.burst()
    assert sent_to(rig, "oncall@customer.test")[-1] == "[mailprobe] DOWN: Flap 0"
    assert len(rig.sms.requests) == 2


async def test_replicas_share_one_budget(rig: Rig) -> None:
    clock = MidHour()
    for i in range(6):
        flapper = await rig.monitor(name=f"Flap {i}", phone=None, hostname=f"flap{i}.customer.test")
        await rig.rounds(flapper, 0, [DOWN, DOWN])
    one, two = (worker(rig, clock, Budget(email=3, sms=1), batch=1) for _ in range(2))
    await asyncio.gather(one.burst(), two.burst())
    assert len(sent_to(rig, "oncall@customer.test")) == 3
    assert len(sent_to(rig, rig.tenant.emails["owner"])) == 1
    statuses = await rig.fetch(
        "SELECT status, count(*) AS n FROM notification_outbox WHERE kind = 'down'"
        " GROUP BY status ORDER BY status"
    )
    assert [(r["status"], r["n"]) for r in statuses] == [("dropped", 3), ("sent", 3)]


async def test_a_retry_does_not_count_again(rig: Rig) -> None:
    clock = MidHour()
    m = await rig.monitor(phone=None)
    await rig.rounds(m, 0, [DOWN, DOWN])
    outbox = worker(rig, clock, Budget(email=1, sms=1))
    await rig.relay.stop()
    assert await outbox.deliver() == 0  # attempt 1 fails: the one notification of the hour
    await rig.relay.start()
    assert await outbox.deliver() == 1  # its retry is the same notification
    assert [(r["attempt"], r["status"]) for r in await history(rig, m)] == [
        (1, "failed"),
        (2, "sent"),
    ]
