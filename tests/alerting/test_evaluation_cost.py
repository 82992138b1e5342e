"""What a routine evaluation costs: the statements one round's judgement sends PostgreSQL (the
central CPU per check of issue 24 is mostly per statement), with nothing it decides given up."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from asyncpg.connection import LoggedQuery

from controller.alerting.evaluator import LEASE_S
from controller.ingest import alert_queue_store as alert_queue
from tests.alerting.conftest import DOWN, UP, Rig

# BEGIN; the monitor with its state, thresholds and back-off; the rounds; posture in a
# savepoint (SAVEPOINT, its state with findings and baselines, its cursor saved, RELEASE); the
# state saved with the queue row released; COMMIT. (It was 19 on 06450e1.)
ROUTINE_STATEMENTS = 10


async def _evaluate_logged(rig: Rig, monitor_id: int) -> tuple[list[str], datetime]:
    """Lease the monitor as the alerter does (for LEASE_S) and evaluate it; the statements sent
    and the evaluation's time."""
    sent: list[str] = []

    def logged(q: LoggedQuery) -> None:
        sent.append(q.query)

    now = rig.clock()
    async with rig.pool.acquire() as conn:
        async with conn.transaction():
            (lease,) = [
                lease
                for lease in await alert_queue.claim(conn, now, 100, LEASE_S)
                if lease.monitor_id == monitor_id
            ]
        conn.add_query_logger(logged)
        try:
            async with conn.transaction():
                await rig.alerter.evaluator.evaluate(conn, monitor_id, now, lease=lease.lease)
            await asyncio.sleep(0)  # loggers are called soon after
        finally:
            conn.remove_query_logger(logged)
    return sent, now


async def test_a_routine_round_is_judged_in_ten_statements(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [UP, UP])  # state, posture cursor and baselines in place
    await rig.round(m, 2, UP)

    sent, now = await _evaluate_logged(rig, m["id"])

    assert len(sent) <= ROUTINE_STATEMENTS, "\n".join(sent)
    state = await rig.state(m)
    assert state["last_round_at"] == rig.at(2) and state["state"] == "up"
    (posture,) = await rig.fetch(
        "SELECT last_round_at FROM posture_state WHERE monitor_id = $1", m["id"]
    )
    assert posture["last_round_at"] == rig.at(2)
    # released for when its next round closes (an interval from now at least: past the
    # lease), in the statement that saved its state
    (queued,) = await rig.fetch("SELECT due_at FROM alert_queue WHERE monitor_id = $1", m["id"])
    assert queued["due_at"] >= now + timedelta(seconds=m["check_interval"])


async def test_the_cheaper_evaluation_still_opens_the_incident_and_notifies(rig: Rig) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [UP, DOWN])
    await rig.round(m, 2, DOWN)

    await _evaluate_logged(rig, m["id"])

    (incident,) = await rig.incidents(m)
    assert incident["started_at"] == rig.at(1) and incident["notified"]
    assert sorted(r["channel"] for r in await rig.outbox_rows(m)) == ["email", "sms"]
    assert (await rig.state(m))["state"] == "down"


# A batch pass of routine monitors: BEGIN; their inputs (state rows locked in order); their
# rounds; their posture; their queue rows locked in order; their states saved with their queue
# rows released; their posture cursors; COMMIT. The same whatever their number.
BATCH_STATEMENTS = 8


async def _batch_logged(rig: Rig, ids: list[int]) -> tuple[list[str], list[str], datetime]:
    """Lease the monitors and evaluate them in one batch pass; the statements sent, the
    monitors it left to evaluate alone, and the pass's time."""
    sent: list[str] = []

    def logged(q: LoggedQuery) -> None:
        sent.append(q.query)

    now = rig.clock()
    async with rig.pool.acquire() as conn:
        async with conn.transaction():
            leases = [
                lease
                for lease in await alert_queue.claim(conn, now, 1000, LEASE_S)
                if lease.monitor_id in ids
            ]
        assert sorted(lease.monitor_id for lease in leases) == sorted(ids)
        conn.add_query_logger(logged)
        try:
            async with conn.transaction():
                alone = await rig.alerter.evaluator.evaluate_batch(conn, leases, now)
            await asyncio.sleep(0)
        finally:
            conn.remove_query_logger(logged)
    return sent, [str(lease.monitor_id) for lease in alone], now


async def _judged_twice(rig: Rig, size: int) -> list[asyncpg.Record]:
    """`size` new monitors, two passing rounds of each judged: their states, posture cursors
    and baselines in place."""
    ms = [await rig.monitor() for _ in range(size)]
    for m in ms:
        await rig.round(m, 0, UP)
        await rig.round(m, 1, UP)
    await rig.alerter.burst()
    return ms


async def test_a_batch_of_routine_monitors_costs_the_same_statements_whatever_its_size(
    rig: Rig,
) -> None:
    counts = []
    for size in (2, 12):
        ms = await _judged_twice(rig, size)
        for m in ms:
            await rig.round(m, 2, UP)

        sent, alone, now = await _batch_logged(rig, [m["id"] for m in ms])

        assert alone == []
        assert len(sent) <= BATCH_STATEMENTS, "\n".join(sent)
        counts.append(len(sent))
        for m in ms:
            state = await rig.state(m)
            assert state["last_round_at"] == rig.at(2) and state["state"] == "up"
            assert state["consecutive_up_rounds"] == 3
            (posture,) = await rig.fetch(
                "SELECT last_round_at FROM posture_state WHERE monitor_id = $1", m["id"]
            )
            assert posture["last_round_at"] == rig.at(2)
            (queued,) = await rig.fetch(
                "SELECT due_at, revised_from FROM alert_queue WHERE monitor_id = $1", m["id"]
            )
            assert queued["due_at"] >= now + timedelta(seconds=m["check_interval"])
        # judged once: nothing left to judge, nothing written twice
        assert await rig.alerter.burst() == 0
    assert counts[0] == counts[1]


# A lane whose monitors' rounds closed with a country missing: the batch pass that finds them
# wanting `expired` rows (BEGIN, generic plans, inputs, rounds, posture, queue rows, COMMIT);
# their rows stored (BEGIN, generic plans, inputs, rounds, the logins' ledger, the pack lock,
# the store, COMMIT); the batch pass again, which writes them (9 with its states and cursors).
# The same whatever their number: alone, each cost 16 (2 monitors 39, 12 monitors 199).
AWAY_STATEMENTS = 26


class _LoggedPool:
    """The evaluator's pool with every statement its connections send logged in `sent`."""

    def __init__(self, pool: Any, sent: list[str]) -> None:
        self._pool = pool
        self._sent = sent

    def _log(self, q: LoggedQuery) -> None:
        self._sent.append(q.query)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            conn.add_query_logger(self._log)
            try:
                yield conn
                await asyncio.sleep(0)  # loggers are called soon after
            finally:
                conn.remove_query_logger(self._log)


async def test_rounds_an_agent_away_left_short_cost_the_same_statements_whatever_their_number(
    rig: Rig,
) -> None:
    # US's agent away: each monitor's round closes with its country missing, and its `expired`
    # row is stored and judged with the others', not in a dozen statements per monitor
    evaluator = rig.alerter.evaluator
    counts = []
    for size in (2, 12):
        ms = await _judged_twice(rig, size)
        for m in ms:
            await rig.round(m, 2, {"DE": "up", "FR": "up"})
        rig.clock.shift = timedelta(minutes=5)  # the round closed
        now = rig.clock()
        async with rig.pool.acquire() as conn:
            leases = [
                lease
                for lease in await alert_queue.claim(conn, now, 1000, LEASE_S)
                if lease.monitor_id in {m["id"] for m in ms}
            ]
        assert len(leases) == size
        sent: list[str] = []
        pool = evaluator._pool
        evaluator._pool = _LoggedPool(pool, sent)  # type: ignore[assignment]
        try:
            await evaluator._evaluate_lane(leases, now)
        finally:
            evaluator._pool = pool
        counts.append(len(sent))
        for m in ms:
            state = await rig.state(m)
            assert state["last_round_at"] == rig.at(2) and state["state"] == "up"
            (us,) = await rig.fetch(
                "SELECT status, error_kind FROM check_results WHERE monitor_id = $1"
                " AND scheduled_at = $2 AND country = 'US'",
                m["id"],
                rig.at(2),
            )
            assert (us["status"], us["error_kind"]) == ("missed", "expired")
        rig.clock.shift = timedelta()
    assert counts[0] == counts[1], counts
    assert counts[1] <= AWAY_STATEMENTS, "\n".join(sent)
