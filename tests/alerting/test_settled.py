"""Evaluating only what changed (issue 24): once the alerter has judged a monitor up with nothing
pending (`batch.settled`), a batch of routine results (`up`, stored compact) leaves its queue
row as it is, and the round is judged at the row's due time, with whatever comes next; a result
that fails or says something new wakes the alerter at once, as before."""

from datetime import datetime

import asyncpg

from controller.ingest import store as results
from shared.messages import encode
from shared.timefmt import utcnow
from tests.alerting.conftest import Rig
from tests.pipeline.test_compact_results import routine

BOTH = ("DE", "FR")


async def _store(
    rig: Rig,
    m: asyncpg.Record,
    n: int,
    down: str | None = None,
    countries: tuple[str, ...] = BOTH,
) -> None:
    """Round `n` as agents publish it, through the ingester's store, in one batch: routine
    results (the second one of a country on is stored compact), or a refused connection from
    `down`."""
    ref = {"publicId": str(m["public_id"])}
    rows = []
    for cc in countries:
        r = routine(rig.job_ids, ref, cc, rig.at(n), n)
        if cc == down:
            r.status, r.error_kind, r.message = "down", "refused", "connection refused"
        rows.append(results.decode_result(encode(r)))
    async with rig.pool.acquire() as conn, conn.transaction():
        assert await results.store(conn, rows, now=utcnow()) == len(rows)


async def _monitor(rig: Rig) -> asyncpg.Record:
    rig.base = rig.base.replace(microsecond=0)  # results carry times to the millisecond
    return await rig.monitor(list(BOTH))


async def _queue(rig: Rig, m: asyncpg.Record) -> asyncpg.Record:
    (row,) = await rig.fetch(
        "SELECT due_at, settled, due_at <= now() AS due FROM alert_queue WHERE monitor_id = $1",
        m["id"],
    )
    return row


async def _cursor(rig: Rig, m: asyncpg.Record) -> datetime:
    at: datetime = (await rig.state(m))["last_round_at"]
    return at


async def test_routine_rounds_of_a_settled_monitor_wait_for_its_due_time(rig: Rig) -> None:
    m = await _monitor(rig)
    await _store(rig, m, 0)  # each country's first result: stored whole
    assert await rig.alerter.burst() == 1
    assert (await rig.state(m))["state"] == "up"
    assert not (await _queue(rig, m))["settled"]  # its first evaluation created its state

    await _store(rig, m, 1)  # routine, but the row is not settled yet: judged now
    assert await rig.alerter.burst() == 1
    assert await _cursor(rig, m) == rig.at(1)
    settled = await _queue(rig, m)
    assert settled["settled"] and not settled["due"]

    await _store(rig, m, 2)
    assert not (await _queue(rig, m))["due"]
    assert await rig.alerter.burst() == 0  # nothing to tell: round 2 waits
    assert await _cursor(rig, m) == rig.at(1)
    assert (await _queue(rig, m))["due_at"] == settled["due_at"]

    rig.clock.shift = settled["due_at"] - rig.clock() + (rig.at(1) - rig.at(0))
    assert await rig.alerter.burst() == 1  # its due time: round 2 judged
    assert await _cursor(rig, m) == rig.at(2)
    assert (await rig.state(m))["consecutive_up_rounds"] >= 3


async def test_a_failing_result_wakes_the_alerter_at_once_and_unsettles_the_monitor(
    rig: Rig,
) -> None:
    m = await _monitor(rig)
    for n in (0, 1):
        await _store(rig, m, n)
        assert await rig.alerter.burst() == 1
    assert (await _queue(rig, m))["settled"]
    await _store(rig, m, 2)  # waits
    assert await rig.alerter.burst() == 0

    await _store(rig, m, 3, down="DE")
    assert (await _queue(rig, m))["due"]
    assert await rig.alerter.burst() >= 1
    assert await _cursor(rig, m) == rig.at(3)  # rounds 2 and 3 judged together, in order
    assert not (await _queue(rig, m))["settled"]

    await _store(rig, m, 4)  # routine again, but not settled: judged at once
    assert (await _queue(rig, m))["due"]
    assert await rig.alerter.burst() >= 1
    assert await _cursor(rig, m) == rig.at(4)


async def test_a_monitor_that_is_not_up_is_never_settled(rig: Rig) -> None:
    m = await _monitor(rig)
    for n in range(4):
        await _store(rig, m, n, down="DE")
        await rig.alerter.burst()
        assert not (await _queue(rig, m))["settled"]
        assert await _cursor(rig, m) == rig.at(n)


async def test_one_countrys_routine_results_never_hide_anothers_failure(rig: Rig) -> None:
    """What counts is each batch's results of the monitor: a failure stored in a batch of its
    own, after the other country's routine result, still wakes the alerter at once."""
    m = await _monitor(rig)
    for n in (0, 1):
        await _store(rig, m, n)
        assert await rig.alerter.burst() == 1
    assert (await _queue(rig, m))["settled"]
    await _store(rig, m, 2, countries=("DE",))
    assert not (await _queue(rig, m))["due"]
    await _store(rig, m, 2, down="FR", countries=("FR",))
    assert (await _queue(rig, m))["due"]
    assert await rig.alerter.burst() >= 1
    assert await _cursor(rig, m) == rig.at(2)
