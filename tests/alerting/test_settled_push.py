"""A settled monitor judged once per several rounds (issue 24): a batch of routine results that
completes the round a settled queue row waits on moves the row on to the next round's close,
at most PUSH_ROUNDS past the alerter's cursor; a round a country misses is still judged at its
own close, and a triggered round, a changed interval or a marked row stops the moves."""

from datetime import UTC, datetime, time, timedelta

import asyncpg
import pytest

from controller.alerting.rules import CLOSE_GRACE
from controller.ingest import alert_queue_store as alert_queue
from controller.ingest import store as results
from controller.ingest.alert_queue_store import PUSH_ROUNDS
from shared.messages import encode
from shared.timefmt import utcnow
from tests.alerting.conftest import Rig
from tests.pipeline.test_compact_results import routine

BOTH = ("DE", "FR")
MIDDAY = time(12, tzinfo=UTC)


async def _store(rig: Rig, m: asyncpg.Record, n: int, countries: tuple[str, ...] = BOTH) -> None:
    """Round `n`'s routine results of `countries`, through the ingester's store, in one batch."""
    ref = {"publicId": str(m["public_id"])}
    rows = [
        results.decode_result(encode(routine(rig.job_ids, ref, cc, rig.at(n), n)))
        for cc in countries
    ]
    async with rig.pool.acquire() as conn, conn.transaction():
        assert await results.store(conn, rows, now=rig.clock()) == len(rows)


def _closes(m: asyncpg.Record, at: datetime) -> datetime:
    """`ready_rounds.closes` of a round of the rig's monitors (60 s interval, under 14 min)."""
    return at + timedelta(seconds=m["check_interval"] + m["timeout_seconds"]) + CLOSE_GRACE


async def _queue(rig: Rig, m: asyncpg.Record) -> asyncpg.Record:
    (row,) = await rig.fetch(
        "SELECT due_at, settled, watch_at, watch_step FROM alert_queue WHERE monitor_id = $1",
        m["id"],
    )
    return row


def _at_midday(rig: Rig) -> None:
    """Moves the rig's clock to 12:00 UTC of the wall's day. The rounds these tests write (from
    2 minutes before it to about 10 after, their closes included) then fall on one UTC day
    whenever they run: a compact row points at a full row of its own day only, so a round after
    midnight is stored full and is not routine."""
    wall = utcnow()
    rig.clock.shift = datetime.combine(wall.date(), MIDDAY) - wall


async def _settled_at_round_1(rig: Rig) -> asyncpg.Record:
    """A monitor of DE and FR on its grid (a round a minute), round 2 starting about now, with
    rounds 0 and 1 judged and the row settled, waiting on round 2."""
    _at_midday(rig)
    m = await rig.monitor(list(BOTH))
    await rig.on_grid(m, rig.clock() - timedelta(minutes=2), sent=12)
    for n in (0, 1):
        await _store(rig, m, n)
        assert await rig.alerter.burst() == 1
    q = await _queue(rig, m)
    assert q["settled"] and (q["watch_at"], q["watch_step"]) == (rig.at(2), 60)
    assert q["due_at"] == _closes(m, rig.at(2))
    return m


async def test_complete_routine_rounds_move_the_due_time_on_and_are_judged_together(
    rig: Rig,
) -> None:
    m = await _settled_at_round_1(rig)
    await _store(rig, m, 2)
    q = await _queue(rig, m)
    assert (q["watch_at"], q["due_at"]) == (rig.at(3), _closes(m, rig.at(3)))
    rig.clock.shift = _closes(m, rig.at(2)) - utcnow() + timedelta(seconds=1)
    assert await rig.alerter.burst() == 0  # round 2's close: nothing to judge there
    assert (await rig.state(m))["last_round_at"] == rig.at(1)

    await _store(rig, m, 3)
    await _store(rig, m, 4)
    q = await _queue(rig, m)
    assert (q["watch_at"], q["due_at"]) == (rig.at(5), _closes(m, rig.at(5)))
    await _store(rig, m, 5)
    rig.clock.shift = _closes(m, rig.at(6)) - utcnow() - timedelta(seconds=1)
    assert await rig.alerter.burst() == 0  # round 6 not closed yet: rounds 2 to 5 wait
    rig.clock.shift += timedelta(seconds=1)
    assert await rig.alerter.burst() >= 1  # round 6's close: rounds 2 to 6 judged, in order
    assert (await rig.state(m))["last_round_at"] == rig.at(6)
    rows = await rig.fetch(
        "SELECT scheduled_at, status FROM check_results WHERE monitor_id = $1"
        " AND scheduled_at >= $2 ORDER BY scheduled_at, country",
        m["id"],
        rig.at(2),
    )
    # Nobody reported round 6: it is missed at its close, as it would have been unsettled.
    assert [(r["scheduled_at"], r["status"]) for r in rows] == [
        *((rig.at(n), "up") for n in (2, 2, 3, 3, 4, 4, 5, 5)),
        (rig.at(6), "missed"),
        (rig.at(6), "missed"),
    ]


async def test_a_round_a_country_misses_is_judged_at_its_close(rig: Rig) -> None:
    m = await _settled_at_round_1(rig)
    await _store(rig, m, 2)
    await _store(rig, m, 3, countries=("DE",))  # FR never reports round 3
    await _store(rig, m, 4)
    q = await _queue(rig, m)
    assert (q["watch_at"], q["due_at"]) == (rig.at(3), _closes(m, rig.at(3)))
    rig.clock.shift = _closes(m, rig.at(3)) - utcnow()
    assert await rig.alerter.burst() >= 1
    rows = await rig.fetch(
        "SELECT country, status FROM check_results WHERE monitor_id = $1 AND scheduled_at = $2"
        " ORDER BY country",
        m["id"],
        rig.at(3),
    )
    assert [(r["country"], r["status"]) for r in rows] == [("DE", "up"), ("FR", "missed")]
    assert (await rig.state(m))["last_round_at"] >= rig.at(3)


async def test_the_moves_stop_a_few_rounds_past_the_cursor(rig: Rig) -> None:
    m = await _settled_at_round_1(rig)
    for n in range(2, 2 + PUSH_ROUNDS + 2):
        await _store(rig, m, n)
    q = await _queue(rig, m)
    cursor = (await rig.state(m))["last_round_at"]
    assert cursor == rig.at(1)
    assert q["watch_at"] == cursor + timedelta(minutes=PUSH_ROUNDS)
    assert q["due_at"] == _closes(m, q["watch_at"])


async def test_a_trigger_a_changed_interval_or_a_mark_stop_the_moves(rig: Rig) -> None:
    m = await _settled_at_round_1(rig)
    async with rig.pool.acquire() as conn:
        await conn.execute("UPDATE monitors SET check_interval = 120 WHERE id = $1", m["id"])
    await _store(rig, m, 2)
    assert (await _queue(rig, m))["watch_at"] == rig.at(2)  # not the interval it was set for
    async with rig.pool.acquire() as conn:
        await conn.execute("UPDATE monitors SET check_interval = 60 WHERE id = $1", m["id"])
        await conn.execute(
            "UPDATE alert_queue SET due_at = $2 WHERE monitor_id = $1",
            m["id"],
            rig.clock() + timedelta(seconds=1),
        )
    await _store(rig, m, 3)  # marked meanwhile: its due time is no longer the watched close
    assert (await _queue(rig, m))["watch_at"] == rig.at(2)

    m = await _settled_at_round_1(rig)
    async with rig.pool.acquire() as conn:
        await alert_queue.unwatch(conn, m["id"])
    await _store(rig, m, 2)
    q = await _queue(rig, m)
    assert (q["watch_at"], q["due_at"]) == (None, _closes(m, rig.at(2)))


@pytest.mark.parametrize(("default_countries", "moves"), [(2, False), (1, True)])
async def test_a_round_of_unknown_countries_expects_the_configured_default(
    rig: Rig, default_countries: int, moves: bool
) -> None:
    """A monitor with no list whose rounds' countries are not recorded: its round is complete
    with DEFAULT_CHECK_COUNTRIES answers, for the ingester's push as for the alerter (it
    counted one, whatever the setting)."""
    m = await _settled_at_round_1(rig)
    await rig.fetch(
        "UPDATE monitors SET allowed_country_codes = NULL, round_countries = NULL"
        " WHERE id = $1 RETURNING id",
        m["id"],
    )
    ref = {"publicId": str(m["public_id"])}
    row = results.decode_result(encode(routine(rig.job_ids, ref, "DE", rig.at(2), 2)))
    async with rig.pool.acquire() as conn, conn.transaction():
        assert await results.store(conn, [row], default_countries, now=rig.clock()) == 1
    q = await _queue(rig, m)
    at = 3 if moves else 2
    assert (q["watch_at"], q["due_at"]) == (rig.at(at), _closes(m, rig.at(at)))
