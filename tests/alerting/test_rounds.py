"""State per round across countries: flapping, one country, majority for N rounds, recovery,
missed rounds; one incident, one e-mail and one SMS per outage; events on mon.events.<id>."""

import asyncio
from datetime import timedelta

import asyncpg
from structlog.testing import capture_logs

from controller.ingest import alert_queue_store as alert_queue
from tests.alerting.conftest import (
    DOWN,
    GONE,
    MONITOR_SECRET,
    ONE,
    RELAY_PASSWORD,
    RELAY_USER,
    SENDER,
    UP,
    Rig,
)


async def test_flapping_up_and_down_never_opens_an_incident(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, UP] * 4)
    assert await rig.incidents(m) == []
    assert await rig.outbox_rows(m) == []
    state = await rig.state(m)
    assert state["state"] == "up"
    assert state["consecutive_down_rounds"] == 0
    assert await rig.outbox(max_attempts=3).burst() == 0
    assert rig.relay.messages == [] and rig.sms.requests == []


async def test_one_country_failing_is_degraded_and_notifies_nobody(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [ONE] * 5)
    state = await rig.state(m)
    assert state["state"] == "degraded"
    assert await rig.incidents(m) == []
    assert await rig.outbox_rows(m) == []
    events = await rig.events(m)
    assert [(e.state, e.previous_state) for e in events] == [("degraded", None)]
    assert events[0].countries == ["DE"]
    assert "unreachable" in events[0].cause


async def test_majority_failing_for_two_rounds_is_one_incident_one_mail_one_sms(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [UP, DOWN])
    assert (await rig.state(m))["state"] == "degraded"  # one failing round is not down yet
    assert await rig.incidents(m) == []

    await rig.rounds(m, 2, [DOWN, DOWN, DOWN])
    (incident,) = await rig.incidents(m)
    assert incident["ended_at"] is None
    assert incident["started_at"] == rig.at(1)  # the first failing round of the streak
    assert incident["cause_kind"] == "auth"
    assert "rejected the monitor's credentials" in incident["cause"]
    assert incident["countries"] == ["DE", "FR"]
    assert incident["notified"] is True
    rows = await rig.outbox_rows(m)
    assert sorted((r["kind"], r["channel"]) for r in rows) == [("down", "email"), ("down", "sms")]

    assert await rig.outbox().burst() == 2
    assert await rig.outbox().burst() == 0
    (mail,) = rig.relay.messages
    assert rig.relay.logins == [RELAY_USER]
    assert mail["To"] == "oncall@customer.test"
    assert mail["From"] == SENDER
    assert mail["Subject"] == "[mailprobe] DOWN: Outbound relay"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    plain, markup = text.get_content(), html.get_content()
    assert "Outbound relay (SMTP smtp.customer.test:587) is down." in plain
    assert "credentials" in plain and "Seen from: DE, FR" in plain
    assert "<table>" in markup and "credentials" in markup
    raw = rig.relay.keep.raw[0].decode()
    for secret in (MONITOR_SECRET, RELAY_PASSWORD):
        assert secret not in raw
    (body,) = rig.sms.bodies
    assert body["to"] == "+4915112345678"
    assert body["text"].startswith("mailprobe DOWN: Outbound relay (smtp.customer.test)")
    assert "credentials rejected" in body["text"]
    history = await rig.fetch(
        "SELECT channel, status, attempt FROM alert_history WHERE monitor_id = $1 ORDER BY channel",
        m["id"],
    )
    assert [tuple(h.values()) for h in history] == [("email", "sent", 1), ("sms", "sent", 1)]

    events = await rig.events(m)
    assert [(e.state, e.previous_state) for e in events] == [
        ("up", None),
        ("degraded", "up"),
        ("down", "degraded"),
    ]
    assert events[-1].monitor_id == str(m["public_id"])
    assert events[-1].countries == ["DE", "FR"]
    assert "credentials" in events[-1].cause


async def test_recovery_needs_its_own_rounds_and_mails_the_downtime(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, DOWN, UP, DOWN, UP])  # one up round between is no recovery
    assert (await rig.state(m))["state"] == "down"
    assert len(await rig.incidents(m)) == 1
    await rig.rounds(m, 5, [UP])
    (incident,) = await rig.incidents(m)
    assert incident["ended_at"] == rig.at(4)  # the first up round of the recovering streak
    assert incident["duration_seconds"] == 240
    assert (await rig.state(m))["state"] == "up"

    await rig.outbox().burst()
    subjects = sorted(str(msg["Subject"]) for msg in rig.relay.messages)
    assert subjects == [
        "[mailprobe] DOWN: Outbound relay",
        "[mailprobe] Recovered: Outbound relay after 4m",
    ]
    (recovered_mail,) = [m for m in rig.relay.messages if "Recovered" in str(m["Subject"])]
    recovered = recovered_mail.get_body(("plain",))
    assert recovered is not None
    assert "is up again after 4m of downtime" in recovered.get_content()
    assert sorted(b["text"][:28] for b in rig.sms.bodies) == [
        "mailprobe DOWN: Outbound rel",
        "mailprobe Recovered: Outboun",
    ]
    events = await rig.events(m)
    assert [e.state for e in events][-2:] == ["down", "up"]


async def test_agents_gone_is_missed_and_never_down_or_up(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [GONE] * 4)
    state = await rig.state(m)
    assert state["state"] == "missed"
    assert (state["consecutive_down_rounds"], state["consecutive_up_rounds"]) == (0, 0)
    assert await rig.incidents(m) == []
    assert await rig.outbox_rows(m) == []
    (event,) = await rig.events(m)
    assert (event.state, event.countries) == ("missed", ["DE", "FR", "US"])


async def test_a_missed_round_neither_breaks_nor_completes_a_streak(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, GONE])
    assert await rig.incidents(m) == []
    await rig.rounds(m, 2, [DOWN])  # second failing round in a row, the missed one between
    (incident,) = await rig.incidents(m)
    await rig.rounds(m, 3, [UP, GONE, GONE])
    assert (await rig.state(m))["state"] == "down"  # missed rounds do not recover it
    await rig.rounds(m, 6, [UP])
    (incident,) = await rig.incidents(m)
    assert incident["ended_at"] == rig.at(3)


async def test_dead_agent_in_one_country_counts_as_not_failing_yet_a_majority_fails(
    rig: Rig,
) -> None:
    m = await rig.monitor()
    partly = {"DE": "no_agent", "FR": "timeout", "US": "timeout"}
    await rig.rounds(m, 0, [partly, partly])
    (incident,) = await rig.incidents(m)
    assert incident["cause_kind"] == "timeout"
    assert "unreachable" in incident["cause"]
    assert incident["countries"] == ["FR", "US"]


async def test_a_round_waits_for_its_countries_until_it_expires(rig: Rig) -> None:
    m = await rig.monitor()
    rig.base = rig.clock() - timedelta(seconds=30)  # the round is still running
    await rig.rounds(m, 0, [{"DE": "refused", "FR": "refused"}])
    assert (await rig.state(m))["last_round_at"] is None  # US has not reported yet
    (queued,) = await rig.fetch("SELECT due_at FROM alert_queue WHERE monitor_id = $1", m["id"])
    assert queued["due_at"] == rig.at(0) + timedelta(seconds=60 + 10 + 5)
    rig.clock.shift = timedelta(minutes=2)  # past expiry: US never comes
    await rig.alerter.burst()
    state = await rig.state(m)
    assert state["last_round_at"] == rig.at(0)
    assert state["state"] == "down" and state["consecutive_down_rounds"] == 1


async def test_reminder_while_still_down_then_none_until_the_next_interval(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, DOWN])
    await rig.rounds(m, 2, [DOWN])
    assert [r["kind"] for r in await rig.outbox_rows(m)] == ["down", "down"]
    rig.clock.shift = timedelta(minutes=31)
    await rig.rounds(m, 3, [DOWN, DOWN])
    kinds = [(r["kind"], r["channel"]) for r in await rig.outbox_rows(m)]
    assert kinds[2:] == [("reminder", "email"), ("reminder", "sms")]
    await rig.outbox().burst()
    subjects = sorted(str(msg["Subject"]) for msg in rig.relay.messages)
    assert subjects[0] == "[mailprobe] DOWN: Outbound relay"
    assert subjects[1].startswith("[mailprobe] Still down: Outbound relay for ")


async def test_override_thresholds_one_round_down_and_any_country(rig: Rig) -> None:
    m = await rig.monitor()
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO monitor_alert_settings (monitor_id, failure_threshold, down_after_rounds)"
            " VALUES ($1, 0, 1)",
            m["id"],
        )
    await rig.rounds(m, 0, [ONE])
    assert (await rig.state(m))["state"] == "down"
    assert len(await rig.incidents(m)) == 1


async def test_no_recipient_means_incident_without_notifications(rig: Rig) -> None:
    m = await rig.monitor(email=None, phone=None)
    await rig.rounds(m, 0, [DOWN, DOWN])
    assert len(await rig.incidents(m)) == 1
    assert await rig.outbox_rows(m) == []


async def test_results_stored_during_an_evaluation_are_evaluated_after_it(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.round(m, 0, DOWN)
    async with rig.pool.acquire() as conn:
        ((monitor_id, lease, _),) = await alert_queue.claim(conn, rig.clock(), 10, 30)
    await rig.round(m, 1, DOWN)  # the ingester marks it again while it is leased
    async with rig.pool.acquire() as conn:
        await alert_queue.release(conn, monitor_id, lease, None)
        (queued,) = await conn.fetch(
            "SELECT due_at FROM alert_queue WHERE monitor_id = $1", m["id"]
        )
    assert queued["due_at"] < lease  # still due: nothing the ingester stored is skipped
    await rig.alerter.burst()
    assert len(await rig.incidents(m)) == 1
    (queued,) = await rig.fetch("SELECT due_at FROM alert_queue")
    assert queued["due_at"] > rig.clock()  # only the wake-up for its next round is left


async def test_a_monitor_whose_config_no_longer_fits_is_left_out_and_the_others_judged(
    rig: Rig,
) -> None:
    """A stored config that does not fit its type (the API refuses one; an old row may hold
    it): that monitor is not evaluated, a log line names it, it leaves the queue (its rounds
    are not scheduled either), and the monitors evaluated with it are judged as ever."""
    bad, good = await rig.monitor(name="Bad config"), await rig.monitor(name="Good")
    async with rig.pool.acquire() as conn:
        await conn.execute(
            """UPDATE monitors SET config = '{"secure": "not a boolean"}' WHERE id = $1""",
            bad["id"],
        )
    with capture_logs() as logs:
        await rig.rounds(bad, 0, [DOWN, DOWN])
        await rig.rounds(good, 0, [DOWN, DOWN])
    assert await rig.incidents(bad) == []
    assert len(await rig.incidents(good)) == 1
    lines = [e for e in logs if e["event"] == "monitor config unreadable: not evaluated"]
    assert len(lines) == 2, "once per time its results queued it"
    assert {(e["monitor"], e["log_level"]) for e in lines} == {(bad["id"], "error")}
    assert "secure" in lines[0]["error"] and MONITOR_SECRET not in str(logs)
    assert not [e for e in logs if e["event"].startswith("evaluation failed")]
    assert await rig.fetch("SELECT 1 FROM alert_queue WHERE monitor_id = $1", bad["id"]) == []


async def _queued_now(rig: Rig, m: asyncpg.Record) -> bool:
    (queued,) = await rig.fetch(
        "SELECT due_at <= now() AS now FROM alert_queue WHERE monitor_id = $1", m["id"]
    )
    return bool(queued["now"])


async def test_only_the_result_completing_a_round_queues_its_monitor(rig: Rig) -> None:
    """A round is judged once complete or closed: its first countries' results leave the
    monitor waiting for the round's close (no evaluation that finds nothing to judge); the
    last country's queues it at once, and the round is judged as soon as it is evaluated."""
    m = await rig.monitor()
    rig.base = rig.clock() - timedelta(seconds=30)  # round 0 is still running
    await rig.rounds(m, 0, [{"DE": "up"}])  # evaluated once: its first wake-up
    assert not await _queued_now(rig, m)
    await rig.round(m, 0, {"FR": "refused"})
    assert not await _queued_now(rig, m), "FR's result does not complete the round"
    await rig.round(m, 0, {"US": "refused"})
    assert await _queued_now(rig, m), "US's does"
    assert await rig.alerter.burst() == 1
    state = await rig.state(m)
    assert state["last_round_at"] == rig.at(0)
    assert state["state"] == "degraded" and state["consecutive_down_rounds"] == 1


async def test_two_batches_completing_one_round_together_queue_it(rig: Rig) -> None:
    """Two ingest transactions store a round's last two countries at once: whichever commits
    second sees the first's result (it waits on the queue row's lock), so the monitor is
    queued and the round judged without waiting for its close."""
    m = await rig.monitor(["DE", "US"])
    rig.base = rig.clock() - timedelta(seconds=30)
    await rig.alerter.burst()
    assert not await _queued_now(rig, m)
    first, second = await rig.pool.acquire(), await rig.pool.acquire()
    try:
        tx1, tx2 = first.transaction(), second.transaction()
        await tx1.start()
        await tx2.start()
        await rig.store_round(first, m, 0, {"DE": "up"})
        pending = asyncio.create_task(rig.store_round(second, m, 0, {"US": "up"}))
        await asyncio.sleep(0.3)
        assert not pending.done(), "the second waits on the first's queue row lock"
        await tx1.commit()
        await pending
        await tx2.commit()
    finally:
        await rig.pool.release(first)
        await rig.pool.release(second)
    assert await _queued_now(rig, m)
    await rig.alerter.burst()
    assert (await rig.state(m))["last_round_at"] == rig.at(0)
