"""Missed rounds never hold an incident open forever (`controller.alerting.no_data`), on real
PostgreSQL, NATS events, the outbox and its relay and SMS peers: an open incident whose rounds
have all been missed for INCIDENT_NO_DATA_CLOSE_MINUTES (and at least 3 rounds) is closed for
lack of data, with an end reason, an event, a notice saying it did not recover, and the state
`missed`. Before the rule such an incident stayed open and the monitor `down`."""

from testkit.alerting.wired import wired_alerter
from tests.alerting.conftest import DOWN, GONE, UP, Rig

CAPPED = {"DE": "login_capped", "FR": "login_capped", "US": "login_capped"}
HELD = {"DE": "auth", "FR": "auth_backoff", "US": "auth_backoff"}
BACKED_OFF = {"DE": "auth_backoff", "FR": "auth_backoff", "US": "auth_backoff"}


def closing_after(rig: Rig, minutes: int) -> None:
    rig.alerter = wired_alerter(
        rig.pool,
        rig.js,
        rig.job_ids,
        notify_reminder_minutes=30,
        incident_no_data_close_minutes=minutes,
        clock=rig.clock,
    )


async def test_ten_minutes_of_missed_rounds_close_the_incident_for_lack_of_data(rig: Rig) -> None:
    closing_after(rig, 10)
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, DOWN] + [GONE] * 10)
    (incident,) = await rig.incidents(m)
    assert incident["ended_at"] is None  # 9 minutes of missed rounds: still open
    assert (await rig.state(m))["state"] == "down"

    await rig.rounds(m, 12, [GONE])  # round 12: ten minutes after the first missed one
    (incident,) = await rig.incidents(m)
    assert incident["ended_at"] == rig.at(2)  # the last time it was known down
    assert incident["end_reason"].startswith("no data: no result could be had since ")
    assert "(11 rounds missed)" in incident["end_reason"]
    assert "no live agent at the time" in incident["end_reason"]
    state = await rig.state(m)
    assert (state["state"], state["open_incident_id"], state["consecutive_down_rounds"]) == (
        "missed",
        None,
        0,
    )
    kinds = sorted(r["kind"] for r in await rig.outbox_rows(m))
    assert kinds == ["down", "down", "no_data", "no_data"]
    await rig.outbox().burst()
    subjects = sorted(str(msg["Subject"]) for msg in rig.relay.messages)
    assert subjects == [
        "[mailprobe] Closed for lack of data: Outbound relay (not recovered)",
        "[mailprobe] DOWN: Outbound relay",
    ]
    (mail,) = [x for x in rig.relay.messages if "lack of data" in str(x["Subject"])]
    body = mail.get_body(("plain",))
    assert body is not None
    assert "not because it recovered" in body.get_content()
    assert any("no data, not recovered" in b["text"] for b in rig.sms.bodies)
    events = await rig.events(m)
    assert [e.state for e in events] == ["degraded", "down", "missed"]
    assert events[-1].cause == incident["end_reason"]

    # Later rounds without data change nothing; a new outage needs its own failing rounds.
    await rig.rounds(m, 13, [GONE, DOWN])
    assert len(await rig.incidents(m)) == 1
    assert (await rig.state(m))["state"] == "degraded"
    await rig.rounds(m, 15, [DOWN, UP])
    assert len(await rig.incidents(m)) == 2


async def test_login_capped_rounds_close_it_but_logins_held_after_rejection_never(
    rig: Rig,
) -> None:
    closing_after(rig, 10)
    capped = await rig.monitor(name="Capped")
    await rig.rounds(capped, 0, [DOWN, DOWN] + [CAPPED] * 11)
    (incident,) = await rig.incidents(capped)
    assert incident["end_reason"].startswith("no data:")
    assert "reached their cap (LOGIN_CAP_PER_ACCOUNT)" in incident["end_reason"]
    assert (await rig.state(capped))["state"] == "missed"

    rejected = await rig.monitor(name="Rejected")
    await rig.rounds(rejected, 0, [DOWN, DOWN, HELD] + [BACKED_OFF] * 20)
    (incident,) = await rig.incidents(rejected)
    assert incident["ended_at"] is None  # the rejection is known; the back-off retries later
    assert (await rig.state(rejected))["state"] == "down"


async def test_a_passing_round_among_missed_ones_starts_the_count_again(rig: Rig) -> None:
    closing_after(rig, 10)
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, DOWN] + [GONE] * 8 + [UP] + [GONE] * 9)
    (incident,) = await rig.incidents(m)
    assert incident["ended_at"] is None
    assert (await rig.state(m))["state"] == "down"
