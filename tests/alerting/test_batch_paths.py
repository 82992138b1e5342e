"""Which way each leased monitor goes in a batch pass (controller.alerting.batch): routine
ones are written by the batch's statements; every other case takes the evaluator's full path
(`Evaluator.evaluate`), in a savepoint of the batch's transaction, or alone after it when it
creates its state row. One whose closed rounds want `expired` results has them stored after the
batch and goes through a second pass its own way. What each produces is what the full path
alone produces."""

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from controller.alerting import state_store as alert_state
from controller.alerting.evaluator import LEASE_S, FillsWanted
from controller.ingest import alert_queue_store as alert_queue
from controller.posture import store as posture_db
from tests.alerting.conftest import DOWN, UP, Rig
from tests.plan_modes import pool_plan_modes, trace_plan_modes

DE_ONLY = {"DE": "up"}
Ms = list[asyncpg.Record]


async def _judged(rig: Rig, ms: Ms) -> None:
    """Two passing rounds judged: a state, a posture cursor and baselines."""
    for m in ms:
        await rig.round(m, 0, UP)
        await rig.round(m, 1, UP)
    await rig.alerter.burst()


async def _rounds(rig: Rig, ms: Ms, n: int, outcome: dict[str, str]) -> None:
    for m in ms:
        await rig.round(m, n, outcome)


async def routine(rig: Rig, ms: Ms) -> None:
    await _judged(rig, ms)
    await _rounds(rig, ms, 2, UP)


async def state_changes(rig: Rig, ms: Ms) -> None:  # StateChanged
    await _judged(rig, ms)
    await _rounds(rig, ms, 2, DOWN)


async def incident_opens(rig: Rig, ms: Ms) -> None:  # IncidentOpened, Notice
    await state_changes(rig, ms)
    await rig.alerter.burst()
    await _rounds(rig, ms, 3, DOWN)


async def open_incident(rig: Rig, ms: Ms) -> None:  # an incident to read
    await incident_opens(rig, ms)
    await rig.alerter.burst()
    await _rounds(rig, ms, 4, DOWN)


async def backoff(rig: Rig, ms: Ms) -> None:  # BackoffChanged
    await _judged(rig, ms)
    await _rounds(rig, ms, 2, {"DE": "auth", "FR": "auth", "US": "auth"})


async def fills(rig: Rig, ms: Ms) -> None:  # a closed round with countries missing
    await _judged(rig, ms)
    await _rounds(rig, ms, 2, DE_ONLY)
    rig.clock.shift = timedelta(minutes=5)


async def fills_failing(rig: Rig, ms: Ms) -> None:  # the one country that answered failed
    await _judged(rig, ms)
    await _rounds(rig, ms, 2, {"DE": "auth"})
    rig.clock.shift = timedelta(minutes=5)


async def revision(rig: Rig, ms: Ms) -> None:
    await routine(rig, ms)
    await _sql(rig, "UPDATE alert_queue SET revised_from = $2 WHERE monitor_id = $1", ms, 1)


async def disabled(rig: Rig, ms: Ms) -> None:
    await routine(rig, ms)
    await _sql(rig, "UPDATE monitors SET status = 'disabled' WHERE id = $1", ms)


async def maintenance(rig: Rig, ms: Ms) -> None:  # a window to read (tomorrow's)
    await _window(rig, ms, timedelta(days=1))


async def window_over(rig: Rig, ms: Ms) -> None:  # a one-off window that ended yesterday
    await _window(rig, ms, -timedelta(days=1))


async def weekly_window(rig: Rig, ms: Ms) -> None:  # a weekly one comes round again
    await routine(rig, ms)
    await _sql(
        rig,
        "INSERT INTO maintenance_windows (organization_id, monitor_id, kind, weekday,"
        " start_time, duration_minutes, timezone)"
        " SELECT organization_id, id, 'weekly', 1, '03:00', 60, 'UTC' FROM monitors"
        " WHERE id = $1",
        ms,
    )


async def _window(rig: Rig, ms: Ms, starts: timedelta) -> None:
    """A one-off window of an hour starting `starts` from the test's clock."""
    await routine(rig, ms)
    opens = rig.clock() + starts
    async with rig.pool.acquire() as conn:
        for m in ms:
            await conn.execute(
                "INSERT INTO maintenance_windows (organization_id, monitor_id, kind, starts_at,"
                " ends_at) SELECT organization_id, id, 'once', $2, $3 FROM monitors WHERE id = $1",
                m["id"],
                opens,
                opens + timedelta(hours=1),
            )


async def config_error(rig: Rig, ms: Ms) -> None:
    await routine(rig, ms)
    await _sql(rig, """UPDATE monitors SET config = '{"secure": "no"}' WHERE id = $1""", ms)


async def posture_finding(rig: Rig, ms: Ms) -> None:  # an open finding held
    await routine(rig, ms)
    await _sql(
        rig,
        "INSERT INTO posture_findings (monitor_id, code, country, severity, detail,"
        " appeared_at, last_seen_at) VALUES ($1, 'starttls_missing', 'DE', 'critical', 'x',"
        " now(), now())",
        ms,
    )


async def first_round(rig: Rig, ms: Ms) -> None:  # no state row yet
    await _rounds(rig, ms, 0, UP)


async def _sql(rig: Rig, sql: str, ms: Ms, round_: int | None = None) -> None:
    async with rig.pool.acquire() as conn:
        for m in ms:
            args: list[Any] = [m["id"]] + ([] if round_ is None else [rig.at(round_)])
            await conn.execute(sql, *args)


Case = Callable[[Rig, Ms], Awaitable[None]]
CASES: list[tuple[Case, str]] = [
    (routine, "batch"),
    (state_changes, "savepoint"),
    (incident_opens, "savepoint"),
    (open_incident, "savepoint"),
    (backoff, "savepoint"),
    (fills, "batch"),
    (fills_failing, "savepoint"),
    (revision, "savepoint"),
    (disabled, "savepoint"),
    (maintenance, "savepoint"),
    (window_over, "batch"),
    (weekly_window, "savepoint"),
    (config_error, "savepoint"),
    (posture_finding, "savepoint"),
    (first_round, "alone"),
]


async def _pass(rig: Rig, lease: alert_queue.Lease, now: datetime) -> str:
    """One batch pass over the leased monitor as the alerter's lane runs it; the way it went."""
    ways: list[str] = []
    evaluate = rig.alerter.evaluator.evaluate

    async def traced(*args: Any, **kwargs: Any) -> datetime | None:
        try:
            due = await evaluate(*args, **kwargs)
        except FillsWanted:
            ways.append("wants fills")
            raise
        ways.append("savepoint" if kwargs.get("fills") is False else "alone")
        return due

    rig.alerter.evaluator.evaluate = traced  # type: ignore[method-assign]
    try:
        await rig.alerter.evaluator._evaluate_lane([lease], now)
    finally:
        del rig.alerter.evaluator.evaluate
    return ways[-1] if ways else "batch"


@pytest.mark.parametrize(("case", "way"), CASES, ids=[c.__name__ for c, _ in CASES])
async def test_each_case_goes_its_way_and_ends_where_the_full_path_ends(
    rig: Rig, case: Case, way: str
) -> None:
    # the same monitor twice: one through the batch pass, one through the full path alone
    # (on two hosts: one server would make them one flow incident, told once)
    batched = await rig.monitor(hostname="a.customer.test")
    alone = await rig.monitor(hostname="b.customer.test")
    await case(rig, [batched, alone])
    now = rig.clock()
    async with rig.pool.acquire() as conn:
        leases = {
            lease.monitor_id: lease for lease in await alert_queue.claim(conn, now, 1000, LEASE_S)
        }

    went = await _pass(rig, leases[batched["id"]], now)
    lease = leases[alone["id"]]
    async with rig.pool.acquire() as conn, conn.transaction():
        await rig.alerter.evaluator.evaluate(
            conn, alone["id"], now, lease.revised_from, lease=lease.lease
        )

    assert went == way
    assert await _outcome(rig, batched) == await _outcome(rig, alone)


async def _outcome(rig: Rig, m: asyncpg.Record) -> dict[str, Any]:
    """What an evaluation wrote of the monitor, without its ids."""
    (state,) = await rig.fetch(
        "SELECT state, consecutive_down_rounds, consecutive_up_rounds, down_since, up_since,"
        " last_round_at, open_incident_id IS NOT NULL AS open, last_notified_at IS NOT NULL"
        " AS notified, missed_rounds, missed_since FROM monitor_alert_state"
        " WHERE monitor_id = $1",
        m["id"],
    )
    queued = await rig.fetch(
        "SELECT due_at > now() AS later, revised_from FROM alert_queue WHERE monitor_id = $1",
        m["id"],
    )
    return {
        "state": dict(state),
        "queue": [dict(q) for q in queued],
        "incidents": [
            (r["started_at"], r["ended_at"], r["cause_kind"], r["notified"])
            for r in await rig.incidents(m)
        ],
        "outbox": sorted((r["kind"], r["channel"]) for r in await rig.outbox_rows(m)),
        "results": [
            tuple(r)
            for r in await rig.fetch(
                "SELECT scheduled_at, country, status FROM check_results WHERE monitor_id = $1"
                " AND hour >= now() - interval '1 day' ORDER BY 1, 2",
                m["id"],
            )
        ],
        "posture": [
            tuple(r)
            for r in await rig.fetch(
                "SELECT last_round_at, streaks FROM posture_state WHERE monitor_id = $1",
                m["id"],
            )
        ],
        "backoff": [
            tuple(r)
            for r in await rig.fetch(
                "SELECT failures, notified FROM login_backoff WHERE monitor_id = $1", m["id"]
            )
        ],
        "events": [
            r["subject"].split(".")[-1] == str(m["public_id"])
            for r in await rig.fetch(
                "SELECT subject FROM event_outbox WHERE subject LIKE '%' || $1 ORDER BY id",
                str(m["public_id"]),
            )
        ],
    }


@pytest.mark.parametrize(
    ("case", "way"),
    [(routine, "batch"), (state_changes, "savepoint"), (first_round, "alone")],
    ids=["batch", "savepoint", "alone"],
)
async def test_a_pass_reads_results_on_generic_plans_and_leaves_no_setting_behind(
    rig: Rig, case: Case, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # controller.db.pool.plan_generically: the reads of recent results take the generic plan,
    # and the setting ends with each transaction (the pool hands connections on as they were)
    (m,) = [await rig.monitor()]
    await case(rig, [m])
    seen = trace_plan_modes(
        monkeypatch,
        [
            (alert_state, "results_after"),
            (alert_state, "batch_results_after"),
            (posture_db, "rounds_after"),
        ],
    )
    now = rig.clock()
    async with rig.pool.acquire() as conn:
        (lease,) = await alert_queue.claim(conn, now, 1000, LEASE_S)

    assert await _pass(rig, lease, now) == way
    assert seen and set().union(*seen.values()) == {"force_generic_plan"}
    assert await pool_plan_modes(rig.pool) == {"auto"}
