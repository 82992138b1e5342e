"""Audited claims of issue 66 about flow incidents, each reproduced on real PostgreSQL and the
rig's relay and SMS gateway: reminders of a flow incident still open reach its recipients,
whichever of its monitors has recovered."""

from datetime import timedelta

from controller.alerting.alerter import Alerter
from testkit.alerting.wired import wired_alerter
from tests.alerting.conftest import LINKS, Rig

HOST = "mail.example.test"
UP3 = {"DE": "up", "FR": "up", "US": "up"}
DOWN3 = {"DE": "refused", "FR": "refused", "US": "refused"}


def grouping(rig: Rig, wait_s: int = 0) -> Alerter:
    rig.alerter = wired_alerter(
        rig.pool,
        rig.js,
        rig.job_ids,
        notify_reminder_minutes=30,
        incident_group_wait_seconds=wait_s,
        links=LINKS,
        clock=rig.clock,
    )
    return rig.alerter


async def statuses(rig: Rig, kind: str) -> list[tuple[str, str, str]]:
    rows = await rig.fetch(
        "SELECT channel, status, coalesce(last_error, '') AS error FROM notification_outbox"
        " WHERE kind = $1 ORDER BY id",
        kind,
    )
    return [(r["channel"], r["status"], r["error"]) for r in rows]


async def test_a_flow_reminder_is_sent_while_its_first_monitor_has_recovered(rig: Rig) -> None:
    """Two monitors of one server page once; the older recovers, the other stays down: the
    flow incident is still open, so its reminder goes out (it is not dropped as the reminder
    of a closed incident)."""
    grouping(rig, wait_s=30)
    first = await rig.monitor(name="Relay one", hostname=HOST, port=587, config={})
    second = await rig.monitor(name="Relay two", hostname=HOST, port=587, config={})
    for n in (0, 1):
        await rig.round(first, n, DOWN3)
        await rig.round(second, n, DOWN3)
        await rig.alerter.burst()
    rig.clock.shift += timedelta(seconds=31)
    await rig.alerter.burst()
    assert await rig.outbox().burst() == 2  # one page: e-mail and SMS, for both monitors
    await rig.rounds(first, 2, [UP3, UP3])
    await rig.rounds(second, 2, [DOWN3, DOWN3])
    (flow,) = await rig.fetch("SELECT * FROM flow_incidents ORDER BY id")
    assert flow["ended_at"] is None
    rig.clock.shift += timedelta(minutes=31)
    await rig.rounds(second, 4, [DOWN3])
    await rig.outbox().burst()
    reminders = await statuses(rig, "reminder")
    print("flow reminders:", reminders)
    assert sorted((c, s) for c, s, _ in reminders) == [("email", "sent"), ("sms", "sent")]
    subjects = [m["Subject"] for m in rig.relay.messages]
    assert len(subjects) == 2 and "Relay one and 1 more" in subjects[1], subjects
