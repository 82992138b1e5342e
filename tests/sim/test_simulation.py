"""The simulated control plane (testkit/sim, issue 79): a few short seeded histories of the
real scheduler, results' record, alerter and outbox rows on the suite's PostgreSQL, in virtual
time, judged against each world's truth; `make sim` runs more and longer ones
(SIM_SEEDS, SIM_ARGS), `make soak` many.

Each history here is 6 monitors over 90 minutes of a busy world (a fault every few intervals,
agents gone and stalled, the controller restarted, the controller killed between two
statements of a pass, the database's connections all dropped within a pass, results published
twice and late), starting
near a month's end or a midnight; one starts at 23:59:00 on a month's last day, as `make
clock-sweep` runs seeds at each of its times of day. A failing seed prints the command that
replays it."""

import dataclasses
from datetime import UTC, datetime

import pytest

from controller.db.pool import create_pool
from shared.guards import BrokenInvariant
from testkit.campaigns.verdict_truth import Notice, Observed
from testkit.sim import budgets, windows
from testkit.sim.run import Run, database, describe, run_one, simulate
from testkit.sim.world import Shape, World

# two histories of ~15 s of this process's CPU: started first, with the wall a loaded host needs
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SHAPE = Shape(monitors=6, hours=1.5).made_busy()
# Seed 9 found a confirmation round's rows written at another time than its results'.
SEEDS = (2, 9)
# Seed 2 starts a minute before midnight (`make clock-sweep`'s first time of day).
AT: dict[int, str] = {2: "23:59:00"}
# Each seed's run, played once: the judge's own tests judge the first seed's again.
_RUNS: dict[int, Run] = {}


async def _run(database_url: str, seed: int) -> Run:
    if seed not in _RUNS:
        shape = dataclasses.replace(SHAPE, at=AT.get(seed))
        _RUNS[seed] = await simulate(database_url, seed, shape)
    return _RUNS[seed]


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_seeded_history_holds_to_its_worlds_truth(database_url: str, seed: int) -> None:
    run = await _run(database_url, seed)
    if seed in AT:
        assert run.replay().endswith(f"--at {AT[seed]}")
    assert run.failovers == run.world["database failover"] > 0, describe(run)
    # Each failover fails the one pass it strikes in (inside the record's transaction: its
    # commit, the batch stored later), retried at the next wake.
    assert run.db_errors == run.failovers, describe(run)
    world = World.of(seed, dataclasses.replace(SHAPE, at=AT.get(seed)))
    # Killed mid-pass and started again (each kill strikes a later pass of its part).
    assert 0 < run.kills <= len(world.kills), describe(run)
    print(describe(run))
    assert run.results > 0 and run.figures.monitor_incidents > 0, describe(run)
    assert run.ok, (run.misses, run.lost, f"replay: {run.replay()}")


async def test_a_seed_plays_the_same_history_each_time(database_url: str) -> None:
    """A seed replays its history: the same wakes, jobs, results, failed passes, incidents,
    notices and sampled states, a database failover and kills mid-pass included."""
    shape = dataclasses.replace(SHAPE, hours=0.5)
    first, second = [await simulate(database_url, 5, shape) for _ in range(2)]
    assert first.failovers == first.db_errors > 0 and first.kills > 0, describe(first)
    assert first.figures.monitor_incidents > 0, describe(first)
    figures = ("ticks", "jobs", "results", "duplicates", "late", "db_errors", "kills", "sent")
    assert [getattr(first, f) for f in figures] == [getattr(second, f) for f in figures]
    assert first.observed == second.observed


async def test_a_history_runs_with_due_times_kept_once(database_url: str) -> None:
    """A history plays this release's steady state (seeded ids, due times in `monitor_due`
    alone): sessions named without SEEDED_MARK, which keep due times in `monitors` too as
    while an older controller runs, are refused before anything is played."""
    async with database(database_url) as db:
        pool = await create_pool(db, 2)
        try:
            with pytest.raises(BrokenInvariant, match="SEEDED_MARK"):
                await run_one(pool, 1, SHAPE)
        finally:
            await pool.close()


async def test_the_judge_sees_an_incident_the_product_did_not_open(database_url: str) -> None:
    """The checks can fail: the same history with its incidents (and their notices) taken
    away is judged to have missed outages."""
    run = await _run(database_url, SEEDS[0])
    assert run.observed is not None and run.figures.outages > 0, describe(run)
    silent = dataclasses.replace(run.observed, incidents=[], notices=[])
    assert isinstance(silent, Observed)
    assert run.judged(silent).missing_notices


async def test_the_judge_sees_a_page_inside_a_maintenance_window(database_url: str) -> None:
    """A seed's monitors with a window are judged by the windows' rule: the same history with a
    `down` notice queued inside each window breaks it (tests/unit/test_sim_windows.py: the rest
    of the rule)."""
    for seed in SEEDS:
        run = await _run(database_url, seed)
        assert run.observed is not None
        world = World.of(seed, dataclasses.replace(SHAPE, at=AT.get(seed)))
        if not world.windows:
            continue
        base = world.start.timestamp()
        spans = {t: [(base + s.start, base + s.end) for s in ws] for t, ws in world.windows.items()}
        slack = run.rules.recover_bound + SHAPE.interval if run.rules else 0.0
        assert windows.judged(spans, run.observed.incidents, run.observed.notices, slack) == []
        paged = [
            Notice(t, None, "down", (start + end) / 2)
            for t, ss in spans.items()
            for start, end in ss
        ]
        planted = windows.judged(spans, run.observed.incidents, run.observed.notices + paged, slack)
        assert len(planted) >= len(paged), planted
        return
    pytest.fail("no seed drew a maintenance window")


async def test_one_organization_spends_its_budget_and_the_other_is_not_delayed(
    database_url: str,
) -> None:
    """Organization `a` spends its hourly budget of outage e-mails in the busy world (the rest
    dropped, each naming its setting), `b`'s are sent at once; a `b` notice planted as sent late
    breaks the rule."""
    run = await _run(database_url, SEEDS[0])
    assert run.dropped.get("a", 0) > 0 and run.sent.get("b", 0) > 0, describe(run)
    assert run.ok, (run.misses, f"replay: {run.replay()}")
    late = budgets.Row("b", "sent", datetime(2031, 1, 1, tzinfo=UTC), None, None)
    assert budgets.judged([late], SHAPE.budget, 2.0)


def test_a_world_is_its_seed() -> None:
    """The same seed draws the same world; another seed another."""
    assert World.of(7, SHAPE) == World.of(7, SHAPE)
    assert World.of(7, SHAPE).servers != World.of(8, SHAPE).servers
    days = {World.of(seed, SHAPE).start.day for seed in range(40)}
    assert {1, 28, 29, 30, 31} & days  # histories start at month ends


def test_a_world_starts_at_its_time_of_day() -> None:
    """A shape's `at` starts the history at that time of day on the drawn anchor's date: a
    minute before midnight on a month's last day crosses the month's end in its first minute."""
    for seed in range(20):
        plain = World.of(seed, SHAPE)
        swept = World.of(seed, dataclasses.replace(SHAPE, at="23:59:00"))
        assert swept.start.date() == plain.start.date()
        assert (swept.start.hour, swept.start.minute, swept.start.second) == (23, 59, 0)
        assert swept.servers == plain.servers  # the same faults, only started elsewhere in time
    morning = World.of(3, dataclasses.replace(SHAPE, at="09:30:00")).start
    assert (morning.hour, morning.minute) == (9, 30)


def test_a_worlds_failovers_are_drawn_apart_from_its_faults() -> None:
    """Failovers come within the history, each before one part's statements of a pass, drawn
    from a generator of their own: a shape without them has the same faults."""
    calm = dataclasses.replace(SHAPE, failovers_per_day=0.0)
    for seed in range(10):
        world = World.of(seed, SHAPE)
        assert len(world.failovers) == 3  # 48 a day over 90 minutes
        assert all(0 < f.at < SHAPE.seconds for f in world.failovers)
        assert {f.part for f in world.failovers} <= {"scheduler", "record", "alerter"}
        assert World.of(seed, calm).servers == world.servers
        assert World.of(seed, calm).failovers == []
