"""The scheduling grid, job ids and country picks (controller.scheduling.rules)."""

import itertools
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from controller.jobs import rules as job_rules
from controller.scheduling import rules as schedule
from shared.streams import JOBS_MAX_AGE_S
from shared.subjects import _TOKEN

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_phases_of_10000_monitors_spread_over_the_interval() -> None:
    """10,000 monitors created at once: no second of a 60 s interval gets twice its share."""
    ids = [str(uuid.uuid4()) for _ in range(10_000)]
    seconds = Counter(schedule.phase_ms(i, 60) // 1000 for i in ids)
    assert set(seconds) == set(range(60))
    assert max(seconds.values()) < 2 * 10_000 / 60


def test_phase_is_deterministic_and_inside_the_interval() -> None:
    mid = "0b7e8d3a-6f0e-4a43-9c55-2f1d8e0f6a01"
    assert schedule.phase_ms(mid, 300) == schedule.phase_ms(mid, 300)
    assert 0 <= schedule.phase_ms(mid, 10) < 10_000


def test_next_due_is_the_first_grid_point_strictly_after() -> None:
    phase = 1_500
    first = schedule.next_due(phase, 60, T0)
    assert first == T0 + timedelta(milliseconds=1_500)
    assert schedule.next_due(phase, 60, first) == first + timedelta(seconds=60)
    assert schedule.next_due(phase, 60, first - timedelta(milliseconds=1)) == first


def test_after_downtime_one_catch_up_round_not_a_burst() -> None:
    """Down for an hour at 60 s: one round at the latest passed grid point, then the grid."""
    phase = 7_000
    due = schedule.next_due(phase, 60, T0)
    now = due + timedelta(hours=1, seconds=20)
    scheduled, next_at = schedule.round_times(phase, 60, due, now)
    assert scheduled == due + timedelta(hours=1)
    assert scheduled <= now < next_at
    assert next_at - scheduled == timedelta(seconds=60)
    # Claimed again at next_at: the next round, not another missed one.
    assert schedule.round_times(phase, 60, next_at, next_at)[0] == next_at


def test_round_on_time_keeps_its_due_time() -> None:
    due = schedule.next_due(0, 30, T0)
    scheduled, next_at = schedule.round_times(0, 30, due, due + timedelta(milliseconds=40))
    assert (scheduled, next_at) == (due, due + timedelta(seconds=30))


IDS = job_rules.JobIds([b"k" * 32])


def test_job_id_is_deterministic_and_a_subject_token() -> None:
    mid = str(uuid.uuid4())
    a = IDS.make(mid, "DE", T0)
    assert a == job_rules.JobIds([b"k" * 32]).make(mid, "DE", T0)  # another replica, same key
    assert _TOKEN.fullmatch(a) and uuid.UUID(a).version == 4
    others = {
        IDS.make(mid, "US", T0),
        IDS.make(mid, "DE", T0 + timedelta(milliseconds=1)),
        IDS.make(str(uuid.uuid4()), "DE", T0),
        IDS.make(mid, "DE", T0, trigger=True),
    }
    assert a not in others and len(others) == 4


def test_job_ids_cannot_be_made_without_the_key() -> None:
    """Another key (an agent does not have SECRETS_KEY) gives other ids: a country's agent
    cannot compute the id of another country's round."""
    mid = str(uuid.uuid4())
    assert job_rules.JobIds([b"x" * 32]).make(mid, "US", T0) != IDS.make(mid, "US", T0)


def test_job_id_matches_only_its_own_round_under_any_configured_key() -> None:
    mid = str(uuid.uuid4())
    scheduled, triggered = IDS.make(mid, "DE", T0), IDS.make(mid, "DE", T0, trigger=True)
    assert IDS.matches(scheduled, mid, "DE", T0) and IDS.matches(triggered, mid, "DE", T0)
    assert not IDS.matches(scheduled, mid, "US", T0)
    assert not IDS.matches(scheduled, mid, "DE", T0 + timedelta(milliseconds=1))
    assert not IDS.matches(str(uuid.uuid4()), mid, "DE", T0)
    # After a key rotation (a new key prepended), ids made with the old key still match.
    rotated = job_rules.JobIds([b"n" * 32, b"k" * 32])
    assert rotated.matches(scheduled, mid, "DE", T0)
    assert rotated.make(mid, "DE", T0) != scheduled


def test_a_job_expires_at_the_next_round_or_before_jobs_drops_it() -> None:
    assert schedule.expires_at(T0, 60) == T0 + timedelta(seconds=60)
    assert schedule.expires_at(T0, 86_400) == T0 + job_rules.JOB_EXPIRY_MAX
    assert timedelta(seconds=JOBS_MAX_AGE_S) > job_rules.JOB_EXPIRY_MAX


def test_country_pick_is_stable_and_moves_little_when_a_country_goes() -> None:
    live = {"DE", "US", "FR", "JP", "BR"}
    ids = [str(uuid.uuid4()) for _ in range(2_000)]
    picks = {i: schedule.pick_countries(i, live, 2) for i in ids}
    assert all(len(p) == 2 and set(p) <= live for p in picks.values())
    assert picks == {i: schedule.pick_countries(i, sorted(live), 2) for i in ids}
    # Every country gets a fair share of the monitors.
    load = Counter(cc for p in picks.values() for cc in p)
    assert min(load.values()) > 0.6 * 2 * len(ids) / len(live)
    # JP goes away: only monitors that had JP change, and they keep their other country.
    after = {i: schedule.pick_countries(i, live - {"JP"}, 2) for i in ids}
    for i in ids:
        if "JP" not in picks[i]:
            assert after[i] == picks[i]
        else:
            assert set(picks[i]) - {"JP"} <= set(after[i])


def test_country_pick_with_fewer_live_countries_than_wanted() -> None:
    assert schedule.pick_countries("m", {"DE"}, 2) == ["DE"]
    assert schedule.pick_countries("m", set(), 2) == []


def test_mail_dns_rides_on_one_round_per_window_spread_over_monitors() -> None:
    """With checks every 60 s and DNS every hour, exactly one round an hour carries the DNS
    probe, whichever hour; monitors' probes fall in different minutes; checks as rare as the
    DNS interval carry it every round."""
    ids = [str(uuid.uuid4()) for _ in range(20)]
    firsts = set()
    for mid in ids:
        grid = schedule.phase_ms(mid, 60)
        start = schedule.next_due(grid, 60, T0)
        rounds = [start + timedelta(minutes=n) for n in range(6 * 60)]
        due = [at for at in rounds if schedule.dns_due(mid, at, 60, 3600)]
        assert len(due) in (6, 7)  # six hours of rounds: one per hour-long window
        assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(due))
        firsts.add(due[0].minute)
    assert len(firsts) > 5
    assert all(schedule.dns_due(ids[0], T0 + timedelta(hours=n), 3600, 3600) for n in range(5))


@pytest.mark.parametrize(
    ("last", "dns_interval_s", "expected", "why"),
    [
        (None, 3600, True, "never resolved"),
        (timedelta(minutes=1), 3600, False, "resolved a minute ago: within the floor"),
        (timedelta(minutes=5), 3600, True, "the floor has passed"),
        (timedelta(minutes=2), 120, True, "a DNS interval shorter than the floor wins"),
        (timedelta(minutes=1), 120, False, "within that shorter floor"),
    ],
)
def test_a_trigger_resolves_mail_dns_at_most_once_per_floor(
    last: timedelta | None, dns_interval_s: int, expected: bool, why: str
) -> None:
    """Pins `trigger_dns`, off and on the minute a scheduled round would probe (`dns_due`): a
    trigger there within the floor probed too, so a monitor's trigger-checks in that minute of
    each hour all resolved its domain (and a test of the floor failed one run in sixty)."""
    mid = "5f0c6b9e-0000-4000-8000-000000000001"
    times = [T0 + timedelta(seconds=s) for s in range(0, 7200, 7)]
    off = next(at for at in times if not schedule.dns_due(mid, at, 60, dns_interval_s))
    on = next(at for at in times if schedule.dns_due(mid, at, 60, dns_interval_s))
    for at in (off, on):
        seen = None if last is None else at - last
        assert schedule.trigger_dns(mid, at, 60, dns_interval_s, seen) is expected, why


@pytest.mark.parametrize(
    ("jobs", "since_last_s", "gather_s", "spacing"),
    [
        # 400 jobs/s (the scale bench): 200 jobs take 0.5 s to fall due
        (10, 0.025, 0.5, 0.5),
        (200, 0.5, 0.5, 0.5),
        # 10,000 jobs/s: passes as often as they may, each full anyway
        (250, 0.025, 0.5, schedule.MIN_PASS_S),
        # 2,000 jobs/s: 0.1 s
        (100, 0.05, 0.5, 0.1),
        # capped by the gather time
        (10, 0.025, 0.2, 0.2),
        # nothing sent, or no pass before: the gather time (a later due time is slept to)
        (0, 0.5, 0.5, 0.5),
        (5, 0.0, 0.5, 0.5),
        # gather 0: a pass as soon as anything is due, at most every MIN_PASS_S
        (10, 0.025, 0.0, schedule.MIN_PASS_S),
        (0, 1.0, 0.0, schedule.MIN_PASS_S),
    ],
)
def test_passes_are_spaced_to_carry_pass_jobs_within_the_gather_time(
    jobs: int, since_last_s: float, gather_s: float, spacing: float
) -> None:
    assert schedule.pass_spacing(jobs, since_last_s, gather_s) == pytest.approx(spacing)


@pytest.mark.parametrize(
    ("jobs", "since_last_s", "draw", "spacing"),
    [
        (10, 0.025, 0.0, 0.25),
        (10, 0.025, 0.5, 0.375),
        (100, 0.05, 0.0, 0.05),
        # never below MIN_PASS_S
        (250, 0.025, 0.0, schedule.MIN_PASS_S),
    ],
)
def test_a_pass_spacing_is_drawn_between_half_and_all_of_it(
    jobs: int, since_last_s: float, draw: float, spacing: float
) -> None:
    assert schedule.pass_spacing(jobs, since_last_s, 0.5, draw) == pytest.approx(spacing)


@pytest.mark.parametrize("given", ["", "é" * 36, "x" * 10_000, "\x00"])
def test_a_job_id_of_any_text_is_refused_not_raised(given: str) -> None:
    assert not IDS.matches(given, str(uuid.uuid4()), "DE", T0)


@pytest.mark.parametrize(
    ("earliest", "now", "nothing"),
    [
        (None, T0, True),  # the last pass saw no due time at all
        (T0 + timedelta(milliseconds=1), T0, True),  # before the earliest due time
        (T0, T0, False),  # due now
        (T0 - timedelta(seconds=5), T0, False),  # overdue
    ],
)
def test_a_pass_claims_only_once_something_can_be_due(
    earliest: datetime | None, now: datetime, nothing: bool
) -> None:
    assert schedule.nothing_due(earliest, now) is nothing


def _overdue_taken_literally(
    phase: int, interval_s: int, due: datetime, now: datetime, first_due: datetime | None
) -> tuple[list[datetime], datetime | None, datetime]:
    """`overdue_rounds` as the rule says it, on datetimes only, for every case."""
    since = now - max(schedule.LOOKBACK, timedelta(seconds=3 * interval_s))
    off_grid = schedule.last_due(phase, interval_s, due) <= due - timedelta(milliseconds=1)
    if due == first_due and off_grid:
        # off the grid: a first round sent at once, then the grid from over half an interval on
        first = schedule.next_due(phase, interval_s, due + timedelta(seconds=interval_s / 2))
        if now < first:
            if _can_run_taken_literally(due, interval_s, now):
                return [], due, first
            return [due], None, first
        over, run, next_at = _overdue_taken_literally(phase, interval_s, first, now, None)
        return [due, *over] if due >= since else over, run, next_at
    scheduled = max(due, schedule.last_due(phase, interval_s, now))
    next_at = schedule.next_due(phase, interval_s, now)
    over = []
    at = (
        due
        if due >= since
        else schedule.next_due(phase, interval_s, since - timedelta(milliseconds=1))
    )
    while at < scheduled:
        over.append(at)
        at = schedule.next_due(phase, interval_s, at)
    if _can_run_taken_literally(scheduled, interval_s, now):
        return over, scheduled, next_at
    return [*over, scheduled], None, next_at


def _can_run_taken_literally(scheduled: datetime, interval_s: int, now: datetime) -> bool:
    expires = scheduled + min(timedelta(seconds=interval_s), job_rules.JOB_EXPIRY_MAX)
    return schedule.can_start(scheduled, expires, now)


def test_can_run_is_can_start_at_the_round_s_expiry() -> None:
    """50,000 random sends (seed 71) around the last moment a round can start, to the
    microsecond, for intervals from a second to a day."""
    rng = random.Random(71)
    sent: Counter[bool] = Counter()
    for _ in range(50_000):
        interval = rng.choice(
            [1, 2, 5, 10, 59, 60, 61, 300, 3599, 3600, 86_400, rng.randrange(1, 90_000)]
        )
        at = T0 + timedelta(microseconds=rng.randrange(10**9))
        edge = schedule.start_window(at, schedule.expires_at(at, interval))
        now = (
            at
            + edge
            + timedelta(microseconds=rng.choice([-2, -1, 0, 1, 2, rng.randrange(-(10**7), 10**7)]))
        )
        got = schedule.can_run(at, interval, now)
        assert got == _can_run_taken_literally(at, interval, now), (at, interval, now)
        sent[got] += 1
    assert min(sent.values()) > 10_000, sent


def test_overdue_rounds_is_the_rule_taken_literally() -> None:
    """20,000 random claims (seed 70): on the grid or off it (a monitor's first round sent at
    once, its grid's next point near or far, or a later due time), on time, a little late (the
    round still runs or not), rounds over after an outage, claimed early; the integer path for
    the routine case agrees with the rule on datetimes."""
    rng = random.Random(70)
    kinds: Counter[str] = Counter()
    for _ in range(20_000):
        interval = rng.choice([10, 30, 60, 300, 3600, 86_400])
        phase = rng.randrange(interval * 1000)
        grid = schedule.next_due(phase, interval, T0 + timedelta(seconds=rng.randrange(86_400)))
        due = (
            grid
            if rng.random() < 0.7
            else grid + timedelta(microseconds=rng.randrange(10**6))
            if rng.random() < 0.5
            else grid + timedelta(microseconds=rng.randrange(interval * 10**6))
        )
        late = rng.choice([0.0, 0.001, 0.5, 0.79, 0.81, 0.99, 1.0, 1.5, 3.2, 50.0, -0.3])
        now = due + timedelta(seconds=interval * late, microseconds=rng.randrange(1000))
        first_due = due if rng.random() < 0.7 else None  # its first due time, or a later one
        got = schedule.overdue_rounds(phase, interval, due, now, since=first_due)
        assert got == _overdue_taken_literally(phase, interval, due, now, first_due), (
            phase,
            interval,
            due,
            now,
        )
        kinds["over" if got[0] else "sent" if got[1] else "none runs"] += 1
        first = schedule.first_grid_round(phase, interval, due)
        if first != due and first_due:
            skipped = schedule.next_due(phase, interval, due) < first
            kinds[f"off the grid, {'before' if now < first else 'after'} its grid's first"] += 1
            kinds["off the grid, a point within half an interval skipped"] += skipped
    assert min(kinds.values()) > 1_000, kinds


@pytest.mark.parametrize(
    ("first_ms", "interval", "grid_first_ms"),
    [
        (7_000, 10, 7_000),  # on the grid: its first round is the grid's
        (86_407_000, 10, 86_407_000),
        (7_001, 10, 17_000),  # off the grid, the next point 9.999 s on: more than 5 s
        (11_999, 10, 17_000),  # 5.001 s to the next point
        (12_000, 10, 27_000),  # exactly half an interval: not more, so the one after
        (12_001, 10, 27_000),
        (16_999, 10, 27_000),  # the next point a millisecond on: skipped
        (1_000, 3600, 3_607_000),  # an hour's interval, created 6 s before its grid point
    ],
)
def test_a_first_round_off_the_grid_is_followed_over_half_an_interval_later(
    first_ms: int, interval: int, grid_first_ms: int
) -> None:
    """A new monitor's first round goes at once; its grid starts at its first point more than
    half an interval later (phase 7 s), never seconds after the first round."""
    phase = 7_000
    first = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=first_ms)
    got = schedule.first_grid_round(phase, interval, first)
    assert got == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=grid_first_ms)
    if grid_first_ms != first_ms:
        _, run, next_at = schedule.overdue_rounds(phase, interval, first, first, since=first)
        assert (run, next_at) == (first, got)
        # a due time off the grid that is not the monitor's first goes on at the grid's next
        _, _, next_at = schedule.overdue_rounds(phase, interval, first, first, since=None)
        assert next_at == schedule.next_due(phase, interval, first)


@pytest.mark.parametrize("live", [set(), {"DE"}, {"DE", "US"}, {"US", "DE", "JP"}])
def test_country_pick_of_every_live_country_is_them_all(live: set[str]) -> None:
    """A count that takes every live country picks them all, sorted: no ranking needed."""
    for count in range(len(live), len(live) + 3):
        assert schedule.pick_countries("m", live, count) == sorted(live)
