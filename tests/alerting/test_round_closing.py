"""Rounds judged against the countries they were sent to: dead agents count as not failing,
rounds that close with countries missing (or with no result at all) get `expired` results,
rounds are judged in order whatever finishes first, disabling closes the incident, one bad
monitor never stops the others, and replicas evaluate and publish without doubles or reorder."""

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from structlog.testing import capture_logs

from controller.alerting.alerter import Alerter
from controller.ingest import store as results
from controller.jobs import scheme_store
from controller.jobs.result_kinds import ResultRow
from controller.jobs.rules import JobIds, is_seeded
from controller.jobs.scheme import SeededGate
from controller.notify import events_store as events_db
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.timefmt import utcnow
from testkit.alerting.wired import wired_alerter
from tests.alerting.conftest import DOWN, UP, Rig


async def expired_rows(rig: Rig, monitor: asyncpg.Record) -> list[asyncpg.Record]:
    return await rig.fetch(
        "SELECT scheduled_at, country, job_id, status, message FROM check_results"
        " WHERE monitor_id = $1 AND error_kind = 'expired' ORDER BY scheduled_at, country",
        monitor["id"],
    )


async def store_late_refused(rig: Rig, monitor: asyncpg.Record, job_id: str) -> None:
    """US's genuine result of round 0, later than its close: refused."""
    late = ResultRow(
        job_id=job_id,
        scheduled_at=rig.at(0),
        monitor_id=monitor["public_id"],
        monitor_type="smtp",
        country="US",
        agent_id="US-agent",
        status="down",
        error_kind="refused",
        message="connection refused",
    )
    async with rig.pool.acquire() as conn, conn.transaction():
        assert await results.store(conn, [late], now=utcnow()) == 1


async def test_one_failing_country_beside_two_dead_agents_is_degraded_never_down(
    rig: Rig,
) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [{"DE": "refused", "FR": "no_agent", "US": "no_agent"}] * 4)
    state = await rig.state(m)
    assert state["state"] == "degraded"
    assert state["consecutive_down_rounds"] == 0  # 1 of 3 expected countries: passing
    assert await rig.incidents(m) == []
    assert await rig.outbox_rows(m) == []


async def test_the_only_listed_country_failing_is_down_after_the_rounds(rig: Rig) -> None:
    m = await rig.monitor(["DE"])
    await rig.rounds(m, 0, [{"DE": "refused"}])
    assert (await rig.state(m))["state"] == "down"  # every country failed: down at once
    assert await rig.incidents(m) == []  # the incident waits for downAfterRounds
    await rig.rounds(m, 1, [{"DE": "refused"}])
    (incident,) = await rig.incidents(m)
    assert incident["countries"] == ["DE"]
    assert (await rig.state(m))["state"] == "down"


async def test_a_null_country_monitor_expects_the_countries_its_round_went_to(rig: Rig) -> None:
    m = await rig.monitor()
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET allowed_country_codes = NULL, round_countries = $2 WHERE id = $1",
            m["id"],
            ["DE", "FR", "US"],
        )
    await rig.rounds(m, 0, [{"DE": "refused"}] * 3)  # FR and US never report
    assert await rig.incidents(m) == []
    assert (await rig.state(m))["state"] == "degraded"
    assert [(r["country"], r["status"]) for r in await expired_rows(rig, m)][:2] == [
        ("FR", "missed"),
        ("US", "missed"),
    ]


async def test_a_closed_round_gets_expired_results_under_its_real_job_ids(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [{"DE": "refused", "FR": "refused"}])  # US never reports
    rows = await expired_rows(rig, m)
    assert [(r["country"], r["status"]) for r in rows] == [("US", "missed")]
    job_id = rig.job_ids.make(str(m["public_id"]), "US", rig.at(0))
    assert rows[0]["job_id"] == job_id
    assert "did not run in time" in rows[0]["message"]
    state = await rig.state(m)  # no country passed: down, before any incident
    assert (state["state"], state["consecutive_down_rounds"]) == ("down", 1)

    await store_late_refused(rig, m, job_id)  # the genuine result: it replaces the expired row
    await rig.alerter.burst()
    assert await expired_rows(rig, m) == []
    assert await rig.incidents(m) == []  # still one failing round: not down yet
    assert (await rig.state(m))["consecutive_down_rounds"] == 1


async def test_a_seeded_round_gets_expired_results_under_its_seeded_ids(
    rig: Rig, settings: ControllerSettings
) -> None:
    """A round the scheduler sent with seeded ids, closed by an alerter whose own gate is still
    closed (or was closed since): the missing country's `expired` row carries the id that
    country was sent, as the countries that reported say, so its late result replaces it."""
    m = await rig.monitor()
    keyed = rig.job_ids
    rig.job_ids = JobIds.from_box(
        SecretBox(settings.secrets.secrets_key or ""), lambda: datetime(2000, 1, 1, tzinfo=UTC)
    )
    try:
        await rig.rounds(m, 0, [{"DE": "refused", "FR": "refused"}])  # US never reports
    finally:
        rig.job_ids = keyed
    (row,) = await expired_rows(rig, m)
    sent = JobIds.from_box(
        SecretBox(settings.secrets.secrets_key or ""), lambda: datetime(2000, 1, 1, tzinfo=UTC)
    )
    job_id = sent.make(str(m["public_id"]), "US", rig.at(0))
    assert row["job_id"] == job_id != keyed.make(str(m["public_id"]), "US", rig.at(0))
    await store_late_refused(rig, m, job_id)
    assert await expired_rows(rig, m) == []


async def test_an_expired_row_and_its_late_seeded_result_are_one_row_after_a_restart(
    rig: Rig, settings: ControllerSettings
) -> None:
    """A round nobody reported on, sent with seeded ids, closed by an alerter that has just
    started (its watch's five minutes not over): its `expired` row carries the seeded id, as it
    reads `seeded_from` like the scheduler, so the late result replaces it (one row). With
    each process's own gate (before `seeded_from`) the row was keyed and the late result
    was stored beside it: two rows for one round and country."""
    box = SecretBox(settings.secrets.secrets_key or "")
    async with rig.pool.acquire() as conn:
        since = await conn.fetchval(
            "UPDATE job_id_scheme SET seeded_from = now() - interval '1 hour' RETURNING seeded_from"
        )
    try:
        scheduler, restarted = SeededGate(open_after_s=0), SeededGate()
        for gate in (scheduler, restarted):
            assert await scheme_store.read(rig.pool, gate) == since
        rig.job_ids = JobIds.from_box(box, scheduler)
        rig.alerter = wired_alerter(
            rig.pool, rig.js, JobIds.from_box(box, restarted), clock=rig.clock
        )
        m = await rig.monitor(["US"])
        await rig.on_grid(m, rig.clock() - timedelta(seconds=120), sent=2)
        await rig.rounds(m, 0, [{"US": "up"}])  # round 1 was sent, and no result comes in time
        rig.clock.shift = timedelta(minutes=3)
        await rig.alerter.burst()
        (row,) = await expired_rows(rig, m)
        job_id = rig.job_ids.make(str(m["public_id"]), "US", rig.at(1))
        assert row["job_id"] == job_id and is_seeded(job_id)

        late = ResultRow(
            job_id=job_id,
            scheduled_at=rig.at(1),
            monitor_id=m["public_id"],
            monitor_type="smtp",
            country="US",
            agent_id="US-agent",
            status="down",
            error_kind="refused",
            message="connection refused",
        )
        async with rig.pool.acquire() as conn, conn.transaction():
            await results.store(conn, [late], now=utcnow())
        stored = await rig.fetch(
            "SELECT job_id, status FROM check_results WHERE monitor_id = $1 AND scheduled_at = $2",
            m["id"],
            rig.at(1),
        )
        assert [(r["job_id"], r["status"]) for r in stored] == [(job_id, "down")]
    finally:
        async with rig.pool.acquire() as conn:
            await conn.execute("UPDATE job_id_scheme SET seeded_from = NULL")


async def test_a_late_real_result_is_judged_again_and_opens_the_incident_it_proves(
    rig: Rig,
) -> None:
    """A real `down` that came after its round closed as `expired` is not lost: the replaced
    round is judged again, and two failing rounds in a row are an incident."""
    m = await rig.monitor(["DE"])
    await rig.rounds(m, 0, [{"DE": "refused"}, {"DE": "expired"}])
    state = await rig.state(m)
    assert (state["state"], state["consecutive_down_rounds"]) == ("missed", 1)
    assert await rig.incidents(m) == []

    async with rig.pool.acquire() as conn, conn.transaction():
        late = ResultRow(
            job_id=rig.job_ids.make(str(m["public_id"]), "DE", rig.at(1)),
            scheduled_at=rig.at(1),
            monitor_id=m["public_id"],
            monitor_type="smtp",
            country="DE",
            agent_id="DE-agent",
            status="down",
            error_kind="refused",
            message="connection refused",
        )
        assert await results.store(conn, [late], now=utcnow()) == 1
    await rig.alerter.burst()
    state = await rig.state(m)
    assert (state["state"], state["consecutive_down_rounds"]) == ("down", 2)
    assert state["down_since"] == rig.at(0)
    (incident,) = await rig.incidents(m)
    assert incident["countries"] == ["DE"] and incident["started_at"] == rig.at(0)
    assert {r["kind"] for r in await rig.outbox_rows(m)} == {"down"}
    assert (await rig.events(m))[-1].state == "down"
    assert (await rig.fetch("SELECT * FROM alert_queue WHERE revised_from IS NOT NULL")) == []

    # Judged once: evaluating again opens nothing more.
    await rig.round(m, 2, {"DE": "refused"})
    await rig.alerter.burst()
    assert len(await rig.incidents(m)) == 1
    assert (await rig.state(m))["consecutive_down_rounds"] == 3


async def test_a_late_real_up_after_an_expired_round_moves_the_recovery_on(rig: Rig) -> None:
    """A late real `up` counts as the passing round it was: with the next one, the incident
    closes (two passing rounds), not a round later."""
    m = await rig.monitor(["DE"])
    await rig.rounds(m, 0, [{"DE": "refused"}, {"DE": "refused"}, {"DE": "expired"}])
    assert len(await rig.incidents(m)) == 1
    async with rig.pool.acquire() as conn, conn.transaction():
        late = ResultRow(
            job_id=rig.job_ids.make(str(m["public_id"]), "DE", rig.at(2)),
            scheduled_at=rig.at(2),
            monitor_id=m["public_id"],
            monitor_type="smtp",
            country="DE",
            agent_id="DE-agent",
            status="up",
            error_kind=None,
            message="220 ready",
        )
        assert await results.store(conn, [late], now=utcnow()) == 1
    await rig.alerter.burst()
    state = await rig.state(m)
    assert (state["state"], state["consecutive_up_rounds"]) == ("down", 1)
    await rig.rounds(m, 3, [{"DE": "up"}])
    (incident,) = await rig.incidents(m)
    assert incident["ended_at"] == rig.at(2)
    assert (await rig.state(m))["state"] == "up"


async def test_a_round_nobody_reported_on_is_judged_missed_when_it_closes(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.on_grid(m, rig.clock() - timedelta(seconds=120), sent=2)
    await rig.rounds(m, 0, [UP])  # round 1 was sent, and no result ever comes
    assert (await rig.state(m))["state"] == "up"
    (queued,) = await rig.fetch("SELECT due_at FROM alert_queue WHERE monitor_id = $1", m["id"])
    assert queued["due_at"] == rig.at(1) + timedelta(seconds=60 + 10 + 5)  # when round 1 closes

    rig.clock.shift = timedelta(minutes=3)  # nothing arrives; the alerter comes back by itself
    await rig.alerter.burst()
    rows = await expired_rows(rig, m)
    assert [(r["scheduled_at"], r["country"]) for r in rows] == [
        (rig.at(1), "DE"),
        (rig.at(1), "FR"),
        (rig.at(1), "US"),
    ]
    state = await rig.state(m)
    assert (state["state"], state["last_round_at"]) == ("missed", rig.at(1))
    missed = (await rig.events(m))[-1]
    assert (missed.state, missed.countries) == ("missed", ["DE", "FR", "US"])
    assert "did not run in time" in missed.cause


async def test_no_expired_rows_for_rounds_before_the_grid_started(rig: Rig) -> None:
    """A monitor re-planned (new, re-enabled, interval changed) gets no rows for the time
    before its first planned round, however far back its last judged round is."""
    m = await rig.monitor()
    await rig.rounds(m, 0, [UP])
    await rig.on_grid(m, rig.clock() - timedelta(seconds=150), sent=2)
    rig.clock.shift = timedelta(minutes=3)  # past its wake-up: when its next round closes
    await rig.alerter.burst()
    rows = await expired_rows(rig, m)
    assert {r["scheduled_at"] for r in rows} == {rig.at(0), rig.at(1)}  # only the planned ones


async def test_a_triggered_round_finishing_first_waits_for_the_earlier_round(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.on_grid(m, rig.clock() - timedelta(seconds=60), sent=1)  # round 0, still open
    triggered = rig.at(0) + timedelta(seconds=1)  # triggered just after round 0 was sent
    await rig.round(m, 0, UP, at=triggered, trigger=True)
    await rig.alerter.burst()
    assert (await rig.state(m))["last_round_at"] is None  # round 0 is still running

    await rig.rounds(m, 0, [DOWN])  # its results come late, after the triggered round's
    state = await rig.state(m)
    assert state["last_round_at"] == triggered
    assert [(e.state, e.previous_state) for e in await rig.events(m)] == [
        ("degraded", None),
        ("up", "degraded"),
    ]


async def test_a_closed_triggered_round_is_completed_under_triggered_job_ids(rig: Rig) -> None:
    m = await rig.monitor()
    at = rig.at(0) + timedelta(seconds=17)
    await rig.round(m, 0, {"DE": "up", "FR": "up"}, at=at, trigger=True)
    await rig.alerter.burst()
    (row,) = await expired_rows(rig, m)
    assert row["job_id"] == rig.job_ids.make(str(m["public_id"]), "US", at, trigger=True)


async def test_disabling_closes_the_incident_silently_and_the_state_is_unknown(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, DOWN])
    assert len(await rig.outbox_rows(m)) == 2
    r = await api.patch(
        f"/api/smtp-monitors/{m['public_id']}",
        headers=rig.tenant.auth("readonly"),
        json={"status": "paused"},
    )
    assert r.status_code == 200, r.text
    before = rig.clock()
    await rig.alerter.burst()  # the status change queued the monitor

    (incident,) = await rig.incidents(m)
    assert incident["end_reason"] == "monitoring disabled"
    assert before - timedelta(seconds=5) <= incident["ended_at"] <= rig.clock()
    assert len(await rig.outbox_rows(m)) == 2  # no recovery
    state = await rig.state(m)
    assert (state["state"], state["open_incident_id"]) == ("unknown", None)
    assert state["consecutive_down_rounds"] == 0
    event = (await rig.events(m))[-1]
    assert (event.state, event.previous_state, event.cause) == (
        "unknown",
        "down",
        "monitoring disabled",
    )
    r = await api.get(f"/api/smtp-monitors/{m['public_id']}/incidents", headers=rig.tenant.auth())
    assert r.json()["items"][0]["endReason"] == "monitoring disabled"
    assert (await rig.fetch("SELECT * FROM alert_queue WHERE monitor_id = $1", m["id"])) == []


async def test_a_monitor_failing_every_evaluation_never_stops_the_others(rig: Rig) -> None:
    broken = await rig.monitor(name="Broken")
    last_day = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)  # its round can never close
    await rig.round(broken, 0, {"DE": "up"}, at=last_day)
    fine = await rig.monitor(name="Fine")
    await rig.round(fine, 0, DOWN)
    await rig.round(fine, 1, DOWN)
    with capture_logs() as logs:
        await rig.alerter.burst()
    assert len(await rig.incidents(fine)) == 1
    (failed,) = [e for e in logs if e["event"].startswith("evaluation failed")]
    assert failed["log_level"] == "error"
    assert failed["monitor"] == broken["id"] and failed["exc_info"] is True
    (queued,) = await rig.fetch(
        "SELECT due_at FROM alert_queue WHERE monitor_id = $1", broken["id"]
    )
    assert queued["due_at"] > rig.clock()  # leased: retried when the lease ends


async def test_two_alerters_at_once_open_one_incident_and_queue_once(rig: Rig) -> None:
    other = wired_alerter(
        rig.pool, rig.js, rig.job_ids, notify_reminder_minutes=30, clock=rig.clock
    )
    many = [
        await rig.monitor(name=f"Relay {i}", hostname=f"relay{i}.customer.test") for i in range(8)
    ]
    for m in many:
        await rig.round(m, 0, DOWN)
        await rig.round(m, 1, DOWN)
    await asyncio.gather(rig.alerter.burst(), other.burst(), rig.alerter.burst())
    for m in many:
        assert len(await rig.incidents(m)) == 1
        assert len(await rig.outbox_rows(m)) == 2

    m = await rig.monitor(name="Both at once")  # the same monitor, in two transactions at once
    await rig.round(m, 0, DOWN)
    await rig.round(m, 1, DOWN)

    async def evaluate(alerter: Alerter) -> None:
        async with rig.pool.acquire() as conn, conn.transaction():
            await alerter.evaluator.evaluate(conn, m["id"], rig.clock())

    await asyncio.gather(evaluate(rig.alerter), evaluate(other))
    assert len(await rig.incidents(m)) == 1
    assert len(await rig.outbox_rows(m)) == 2
    assert [e.state for e in await rig.events(m)] == []  # written, not published yet
    await other.events.publish()
    assert [e.state for e in await rig.events(m)] == ["degraded", "down"]


async def test_events_leave_one_publisher_at_a_time_in_the_order_written(rig: Rig) -> None:
    m = await rig.monitor()
    for n, outcome in enumerate([DOWN, DOWN, UP, UP, DOWN, UP]):
        await rig.round(m, n, outcome)
        async with rig.pool.acquire() as conn, conn.transaction():
            await rig.alerter.evaluator.evaluate(conn, m["id"], rig.clock())
    other = wired_alerter(rig.pool, rig.js, rig.job_ids, batch=1, clock=rig.clock)
    async with rig.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", events_db.EVENTS_LOCK)
        assert await other.events.publish() == 0  # another replica is publishing
    one, two = (wired_alerter(rig.pool, rig.js, rig.job_ids, batch=1) for _ in range(2))
    await asyncio.gather(one.events.publish(), two.events.publish(), other.events.publish())
    assert [e.state for e in await rig.events(m)] == ["degraded", "down", "up", "degraded", "up"]
