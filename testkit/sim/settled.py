"""The settled path's model (issue 79): a settled monitor's routine rounds skipped while the
world leaves it alone, its rows moved as those rounds would have moved them.

A monitor is **settled** when the product has judged every round it sent and found nothing to
carry on: up, no incident open, no run of missed rounds, no posture streak, no revision waiting,
and its alert queue row waiting on its next round only. That row is either `settled`
(controller.alerting.batch.settled: the batch path's, watching the next round) or, for a monitor
the batch path leaves to the full one (one with a maintenance window), due at the next round's
close with the alerter's cursor on the last round. None of its results may wait in the driver
(the simulated monitors have no logins, so no back-off). The world leaves it alone from now
until `resume` (`quiet_until`): no fault of its server from `TAIL` intervals ago to `LEAD`
intervals before `resume`; no agent away and no controller restart now or over under `TAIL`
intervals ago, and `resume` at least `LEAD` intervals before either or `TAIL` after it. An
absence between is spanned whole: a settled monitor's rounds with one country missing move its
rows as routine ones do (the other countries still judge it up, its queue row stays settled),
except that country's successes, which its missing rounds do not count. So is a controller
restart: a round falling in it goes late when the new process starts, or is recorded missed
past its start window; for a monitor up with no incident neither opens, closes or tells
anything, and the model moves its rows as a routine round's. So is its maintenance window: a
window holds notices only (docs/alerts.md), and a settled monitor owes none, not even a
recovery the window held (`incidents.recovery_held`: not settled).

Its rounds from its next due time to `resume` are then skipped, and its rows moved as the
settled path moves them (`SKIP`, one statement for a batch of monitors):

| row | a routine round moves it (the settled path) | `n` skipped rounds, the model |
| --- | --- | --- |
| `monitor_due` | an interval on (scheduler, `due_move`) | `n` intervals on (`due_move`) |
| `monitor_country_state` | its time, a success more (ingester) | the last one's, `n` more |
| the same, its agent away | missed: successes kept | `n` more less those (`away_rounds`) |
| `alert_queue` | due at the next round's close (`push_settled`) | due at the resumed one's |
| `monitor_alert_state` | cursor, up rounds on (alerter) | cursor to the last skipped round |
| `posture_state` | cursor on (alerter) | cursor to the last skipped round |

No result row is written for a skipped round (nothing reads them back for a verdict: uptime
and reports would show a gap). `make sim`'s `--settled` turns the model on; the seeds are held
to the same verdicts, incidents and notices with it on and off (tests/sim/test_settled.py).
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.db.pool import Conn
from testkit.campaigns.verdict_truth import Incident, Observed
from testkit.sim.world import World

# Rounds of calm asked before a skip (after the last thing that touched the monitor) and kept
# before the next one (its rounds run again that many intervals before it).
TAIL = 1
LEAD = 1
# A skip shorter than this many rounds is not worth its statement.
MIN_ROUNDS = 6


def quiet_until(world: World, target: str, now: float) -> float | None:
    """The offset (seconds of the history) up to which nothing in `world` touches `target`'s
    rounds but agents away, controller restarts and its maintenance windows, `LEAD` intervals
    before the next thing that does (the history's end at most); None when something touched
    it in the last `TAIL` intervals, touches it now, or the calm ahead is shorter than
    `MIN_ROUNDS` intervals. A skip may span an agent's absence (`away_rounds`) or a restart
    whole, never end within `LEAD` intervals before one or `TAIL` after it: it ends before it
    then. Its windows it spans whole. Pure."""
    step = float(world.shape.interval)
    since = now - TAIL * step
    touches = world.servers.get(target, ())
    spanned = [*world.agents, *world.restarts]
    ahead = world.shape.seconds
    for s in [*touches, *spanned]:
        if s.start <= now and s.end > since:
            return None
    for s in touches:
        if s.start > now:
            ahead = min(ahead, s.start)
    until = ahead - LEAD * step
    for a in sorted(spanned, key=lambda a: a.start, reverse=True):
        if a.start - LEAD * step < until < a.end + TAIL * step:
            until = a.start - LEAD * step
    return until if until - now >= MIN_ROUNDS * step else None


def away_rounds(world: World, due: float, n: int) -> dict[str, int]:
    """Of `n` rounds from `due` (seconds of the history), an interval apart, how many each
    country's agent was away for (scheduled within its absence): those rounds' checks there
    never ran, and the country's successes do not count them. Pure."""
    step = float(world.shape.interval)
    found: dict[str, int] = {}
    for a in world.agents:
        if a.country is None:
            continue
        first = max(0, math.ceil((a.start - due) / step))
        last = min(n, math.ceil((a.end - due) / step))
        if last > first:
            found[a.country] = found.get(a.country, 0) + last - first
    return found


# The settled monitors no skip holds already (their next due time is within an interval): the
# conditions of the module's docstring that the database holds. The monitors are found from the
# due times' index first (those a skip holds are due far ahead), then each row by its key.
CANDIDATES = """
WITH d AS MATERIALIZED (
    SELECT monitor_id, next_due_at FROM monitor_due WHERE next_due_at <= $2::timestamptz
)
SELECT m.id, m.public_id::text AS public_id, m.name, d.next_due_at
FROM d
JOIN alert_queue q ON q.monitor_id = d.monitor_id
JOIN monitors m ON m.id = d.monitor_id
JOIN monitor_alert_state a ON a.monitor_id = d.monitor_id
JOIN posture_state p ON p.monitor_id = q.monitor_id
WHERE q.revised_from IS NULL
    AND (q.settled AND q.watch_step = m.check_interval AND q.watch_at = d.next_due_at
        OR NOT q.settled
            AND a.last_round_at = d.next_due_at - make_interval(secs => m.check_interval)
            AND q.due_at = d.next_due_at
                + round_closes_after(m.check_interval, m.timeout_seconds))
    AND d.next_due_at <= $1::timestamptz + make_interval(secs => m.check_interval)
    AND m.status = 'active'
    AND a.state = 'up' AND a.open_incident_id IS NULL AND a.missed_rounds = 0
    AND p.streaks = '{}'::jsonb
    AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.monitor_id = q.monitor_id AND i.recovery_held)
"""

# `n` rounds skipped from the next due time `due` (`rounds`, counted by the caller); the next
# one is then `next_at`, the last skipped one `next_at - step`.
SKIP = """
WITH u AS (
    SELECT u.id, d.next_due_at AS due, make_interval(secs => m.check_interval) AS step,
        u.n, u.away
    FROM unnest($1::bigint[], $2::int[], $3::jsonb[]) AS u(id, n, away)
    JOIN monitor_due d ON d.monitor_id = u.id
    JOIN monitors m ON m.id = u.id
), k AS (
    SELECT id, n, step, due, due + n * step AS next_at, due + (n - 1) * step AS last_at, away
    FROM u
    WHERE n > 0
), countries AS (
    UPDATE monitor_country_state s
    SET last_scheduled_at = k.last_at,
        consecutive_successes = s.consecutive_successes + k.n
            - coalesce((k.away ->> s.country)::int, 0),
        last_checked_at = s.last_checked_at + k.n * k.step,
        updated_at = s.updated_at + k.n * k.step
    FROM k WHERE s.monitor_id = k.id
), queue AS (
    UPDATE alert_queue q
    SET due_at = q.due_at + (k.next_at - k.due),
        watch_at = CASE WHEN q.settled THEN k.next_at END
    FROM k WHERE q.monitor_id = k.id
), states AS (
    UPDATE monitor_alert_state a
    SET consecutive_up_rounds = a.consecutive_up_rounds
            + (extract(epoch FROM k.last_at - a.last_round_at)
               / extract(epoch FROM k.step))::int,
        last_round_at = k.last_at,
        updated_at = greatest(a.updated_at, k.last_at)
    FROM k WHERE a.monitor_id = k.id
), posture AS (
    UPDATE posture_state p SET last_round_at = k.last_at,
        updated_at = greatest(p.updated_at, k.last_at)
    FROM k WHERE p.monitor_id = k.id
)
SELECT coalesce(sum(n), 0)::bigint FROM k,
    LATERAL (SELECT due_move(ARRAY[k.id], ARRAY[k.next_at])) AS moved
"""


@dataclass(frozen=True)
class Candidate:
    id: int
    public_id: str
    name: str
    next_due_at: datetime


async def candidates(conn: Conn, now: datetime, longest: float) -> list[Candidate]:
    """The settled monitors no skip holds yet (`CANDIDATES`); `longest`: the monitors' longest
    interval, in seconds."""
    horizon = now + timedelta(seconds=longest)
    return [Candidate(**dict(r)) for r in await conn.fetch(CANDIDATES, now, horizon)]


def rounds_until(due: float, until: float, step: float) -> int:
    """How many rounds a skip spans: those from the next due time `due` to the first at or
    after `until` (seconds of the history), an interval `step` apart. Pure."""
    return max(0, math.ceil((until - due) / step))


async def skip(
    conn: Conn,
    ids: Sequence[int],
    rounds: Sequence[int],
    away: Sequence[Mapping[str, int]],
) -> int:
    """Skip each monitor's next `rounds` rounds from its next due time (`SKIP`; `rounds_until`
    counts them), `away` of them each country's agent was away for (`away_rounds`); the rounds
    skipped."""
    if not ids:
        return 0
    skipped: int = await conn.fetchval(
        SKIP, list(ids), list(rounds), [json.dumps(dict(a)) for a in away]
    )
    return skipped


@dataclass(frozen=True)
class Edges:
    """Where two histories of one world may part (`differences`), in epoch seconds: each
    target's instants where what its checks meet changes (its server's faults' edges, every
    agent's going and coming back), and the controller's own faults (a kill where it struck, a
    failover at its instant, a restart over its span)."""

    rounds: dict[str, list[float]]
    controller: list[tuple[float, float]]


def edges(world: World, struck: Sequence[float]) -> Edges:
    """`world`'s `Edges`, its kills at the instants they struck in either history (`struck`,
    epoch seconds): a kill counts its part's statements from its instant, and with the model
    on that part may send none for hours."""
    base = world.start.timestamp()
    agents = [base + t for s in world.agents for t in (s.start, s.end)]
    rounds = {
        t: sorted([base + e for s in world.servers.get(t, ()) for e in (s.start, s.end)] + agents)
        for t in world.targets
    }
    controller = [(at, at) for at in struck]
    controller += [(base + f.at, base + f.at) for f in world.failovers]
    controller += [(base + r.start, base + r.end) for r in world.restarts]
    return Edges(rounds, sorted(controller))


def differences(
    off: Observed, on: Observed, tolerance: float, interval: float, edges: Edges
) -> list[str]:
    """Where a history with the model on (`on`) said something else than the same history
    with it off (`off`): each monitor's incidents (the same start and end; opened within
    `tolerance` seconds), each incident's notices (the same kinds, each within `tolerance`)
    and each monitor's final state. Empty when they agree.

    With fewer rounds run, the parts' passes wake at other instants, up to a quantum apart,
    and that is all that may part the two histories:

    - `tolerance` is three quanta, one for each wake an incident's opening waits for (its
      failing round's checks sent, that round judged, its confirmation round judged);
    - a round's checks run at the pass that sends it, so where the world changes within
      `tolerance` after a round's time, that round may see either side: an incident may start
      or end a round (`interval`) later in one history, its notices with it, or (a fault
      shorter than a round) be in one history only;
    - a controller's fault up to an `interval` before an opening or a notice (the passes that
      lead to it) may strike one of those passes in one history and not the other, which then
      waits out the restart or the alerter's lease: up to an `interval` more."""
    found: list[str] = []
    paired: list[tuple[Incident, Incident]] = []
    for target in sorted({i.target for i in off.incidents} | {i.target for i in on.incidents}):
        a = sorted((i for i in off.incidents if i.target == target), key=lambda i: i.started_at)
        b = sorted((i for i in on.incidents if i.target == target), key=lambda i: i.started_at)
        near = edges.rounds.get(target, [])
        pairs, alone = _paired(a, b, interval, tolerance, near)
        for x in alone:
            if not any(x.started_at <= e <= x.started_at + tolerance for e in near):
                side = "off" if x in a else "on"
                found.append(f"{target}: an incident {_spans([x])} {side} only")
        for x, y in pairs:
            moved = abs(x.started_at - y.started_at)
            if not _same(x.ended_at, y.ended_at, interval, tolerance, near):
                found.append(f"{target}: an incident {_spans([x])} off, {_spans([y])} on")
            if not _close(x.opened_at, y.opened_at, moved + tolerance, interval, edges):
                found.append(f"{target}: incident opened at {x.opened_at} off, {y.opened_at} on")
        paired += pairs
    for x, y in paired:
        shifted = abs(x.started_at - y.started_at) > 0.001 or _end(x.ended_at) != _end(y.ended_at)
        slack = tolerance + (interval if shifted else 0.0)
        for kind in sorted({n.kind for n in off.notices + on.notices}):
            a_at = sorted(n.at for n in off.notices if n.incident_id == x.id and n.kind == kind)
            b_at = sorted(n.at for n in on.notices if n.incident_id == y.id and n.kind == kind)
            if len(a_at) != len(b_at) or not all(
                _close(p, q, slack, interval, edges) for p, q in zip(a_at, b_at, strict=False)
            ):
                found.append(f"{x.target}: {kind} notices at {a_at} off, {b_at} on")
    for target, kind in sorted({(n.target, n.kind) for n in off.notices + on.notices}):
        a_at = sorted(
            n.at for n in off.notices if (n.target, n.kind, n.incident_id) == (target, kind, None)
        )
        b_at = sorted(
            n.at for n in on.notices if (n.target, n.kind, n.incident_id) == (target, kind, None)
        )
        if len(a_at) != len(b_at) or not all(
            _close(p, q, tolerance, interval, edges) for p, q in zip(a_at, b_at, strict=False)
        ):
            found.append(f"{target}: {kind} notices of no incident at {a_at} off, {b_at} on")
    for target in sorted(set(off.final_states) | set(on.final_states)):
        if off.final_states.get(target) != on.final_states.get(target):
            found.append(
                f"{target}: final state {off.final_states.get(target)} off,"
                f" {on.final_states.get(target)} on"
            )
    return found


def _paired(
    a: Sequence[Incident],
    b: Sequence[Incident],
    interval: float,
    tolerance: float,
    near: Sequence[float],
) -> tuple[list[tuple[Incident, Incident]], list[Incident]]:
    """One monitor's incidents in the two histories, in order of start: those that start at
    the same round (or a round apart at an edge, `_same`) paired, the others alone."""
    pairs: list[tuple[Incident, Incident]] = []
    alone: list[Incident] = []
    i = j = 0
    while i < len(a) and j < len(b):
        if _same(a[i].started_at, b[j].started_at, interval, tolerance, near):
            pairs.append((a[i], b[j]))
            i, j = i + 1, j + 1
        elif a[i].started_at < b[j].started_at:
            alone.append(a[i])
            i += 1
        else:
            alone.append(b[j])
            j += 1
    return pairs, alone + list(a[i:]) + list(b[j:])


def _close(x: float, y: float, slack: float, interval: float, edges: Edges) -> bool:
    """Two instants within `slack`, or within an `interval` more where a controller's fault
    came up to an `interval` before the earlier one, or between them (`differences`)."""
    lo, hi = min(x, y), max(x, y)
    if hi - lo <= slack:
        return True
    return hi - lo <= slack + interval and any(
        a <= hi and b >= lo - interval for a, b in edges.controller
    )


def _same(
    x: float | None, y: float | None, interval: float, tolerance: float, near: Sequence[float]
) -> bool:
    """Two rounds' times are the same, or a round apart where the world changed within
    `tolerance` after the first (`differences`)."""
    if x is None or y is None:
        return x is y
    if abs(x - y) < 0.001:
        return True
    first = min(x, y)
    return abs(abs(x - y) - interval) < 0.001 and any(first <= e <= first + tolerance for e in near)


def _end(at: float | None) -> float | None:
    return None if at is None else round(at, 3)


def _spans(incidents: Sequence[Incident]) -> list[tuple[float, float | None]]:
    return [(round(i.started_at, 3), _end(i.ended_at)) for i in incidents]
