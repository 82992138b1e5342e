"""The soak's figures per fault window, from what was stored (check_results, the outbox,
incidents), what the agents published (the RESULTS stream) and the agents' in-flight samples.

A grid cell is (monitor, country, due time) on the scheduler's grid (controller.scheduling.rules);
the
target server is healthy throughout, so every real result should be `up`.
"""

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
import msgspec
import nats
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from controller.jobs.result_kinds import MISSED_KINDS
from controller.scheduling import rules as schedule
from shared.heartbeats import WARMUP_S
from shared.messages import CheckResult, result_parts
from shared.subjects import RESULTS_STREAM, RESULTS_SUBJECTS
from shared.timefmt import parse_iso

# A cell is normal when it is `up` and stored this soon after its due time, or as soon as the
# same rig stores 99 % of its results before any fault (`normal_lateness`), if that is later.
NORMAL_S = 5.0
# A second of due times is back to normal when this share of its cells is.
NORMAL_SHARE = 0.95
# An agent that started this long ago has heartbeated, and the controllers heard it.
LIVE_GRACE_S = 10.0
RECOVERY_TARGET_S = 10.0

Cell = tuple[str, str, int]  # monitor public id, country, due (epoch ms)


@dataclass
class Window:
    """One fault: it began at `start`, its part was back at `returned`, the next fault began
    at `end`. `away`: the scheduling path (controller, NATS or PostgreSQL) was down, so the
    rounds due meanwhile coalesce into one by design (schedule.round_times)."""

    name: str
    start: float
    returned: float
    end: float
    away: bool


@dataclass
class Row:
    job_id: str
    cell: Cell
    status: str
    error_kind: str | None
    stored: float


@dataclass
class Figures:
    name: str
    expected: int = 0
    stored: int = 0
    missing: int = 0
    coalesced: int = 0
    duplicated: int = 0
    down: int = 0
    no_agent: int = 0
    phantom_no_agent: int = 0
    expired: int = 0
    dropped: int = 0
    # the first few dropped results: job, what the agent said, what was stored
    dropped_examples: list[str] = field(default_factory=list)
    alerts: int = 0
    incidents: int = 0
    recovery_s: float = 0.0
    normal_s: float = NORMAL_S
    # the last seconds (by due time) that were not back to normal, for the report
    late_seconds: list[str] = field(default_factory=list)
    catch_up_per_s: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)

    def misses(self, concurrency: int) -> list[str]:
        """The targets this window missed, named."""
        checks = {
            "missing cells": self.missing == 0,
            "duplicated cells": self.duplicated == 0,
            "false down": self.down == 0,
            "phantom no_agent": self.phantom_no_agent == 0,
            "real results dropped": self.dropped == 0,
            "false alerts": self.alerts == 0 and self.incidents == 0,
            "in-flight over concurrency": max(self.in_flight.values(), default=0) <= concurrency,
            "recovery": self.recovery_s <= RECOVERY_TARGET_S,
        }
        return [name for name, ok in checks.items() if not ok]


def grid(
    monitors: Sequence[str], countries: Sequence[str], interval_s: int, w: Window
) -> set[Cell]:
    """Every cell due in [w.start, w.end)."""
    period = interval_s * 1000
    # the same bounds as the rows a window takes: w.start * 1000 <= due < w.end * 1000
    start, end = math.ceil(w.start * 1000), math.ceil(w.end * 1000)
    cells: set[Cell] = set()
    for m in monitors:
        phase = schedule.phase_ms(m, interval_s)
        t = start + (phase - start) % period
        while t < end:
            cells.update((m, cc, t) for cc in countries)
            t += period
    return cells


async def stored_rows(conn: asyncpg.Connection, since: float, until: float) -> list[Row]:
    rows = await conn.fetch(
        "SELECT job_id, monitor_public_id::text AS m, country,"
        " (extract(epoch FROM scheduled_at) * 1000)::bigint AS due, status, error_kind,"
        " extract(epoch FROM stored_at)::float8 AS stored FROM check_results"
        " WHERE scheduled_at >= to_timestamp($1) AND scheduled_at < to_timestamp($2)",
        since,
        until,
    )
    return [
        Row(
            r["job_id"], (r["m"], r["country"], r["due"]), r["status"], r["error_kind"], r["stored"]
        )
        for r in rows
    ]


T = TypeVar("T")


def read_when_settled(read: Callable[[], T], settled: Callable[[T], bool], within_s: float) -> T:
    """`read()` once a second until `settled` says nothing is on its way any more, or until
    `within_s` has passed (what it reads then is the answer). A read that fails while the
    servers settle after the last fault is tried again until then."""
    deadline = time.monotonic() + within_s
    while True:
        last = time.monotonic() >= deadline
        try:
            found = read()
        except (NatsError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if last:
                raise
        else:
            if last or settled(found):
                return found
        time.sleep(1)


async def published_results(nats_url: str) -> list[CheckResult]:
    """Every result the agents published that RESULTS still holds."""
    nc = await nats.connect(servers=[u.strip() for u in nats_url.split(",")])
    try:
        js = nc.jetstream()
        total = (await js.stream_info(RESULTS_STREAM)).state.messages
        sub = await js.pull_subscribe(
            RESULTS_SUBJECTS,
            stream=RESULTS_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        found: list[CheckResult] = []
        read = 0
        while read < total:
            for msg in await sub.fetch(1000, timeout=10):
                read += 1
                found += [
                    msgspec.json.decode(part, type=CheckResult)
                    for part in result_parts(msg.subject, msg.data)
                ]
        await sub.unsubscribe()
        return found
    finally:
        await nc.close()


async def alerts(conn: asyncpg.Connection, since: float, until: float) -> tuple[int, int]:
    """(notifications queued, incidents opened) in [since, until)."""
    queued = await conn.fetchval(
        "SELECT count(*) FROM notification_outbox"
        " WHERE created_at >= to_timestamp($1) AND created_at < to_timestamp($2)",
        since,
        until,
    )
    opened = await conn.fetchval(
        "SELECT count(*) FROM incidents"
        " WHERE opened_at >= to_timestamp($1) AND opened_at < to_timestamp($2)",
        since,
        until,
    )
    return int(queued), int(opened)


def figures(
    w: Window,
    cells: set[Cell],
    rows: Sequence[Row],
    published: Sequence[CheckResult],
    country_live: Callable[[str, float], bool],
    in_flight: Sequence[tuple[float, str, int]],
    normal_s: float = NORMAL_S,
) -> Figures:
    """The window's figures but alerts (a database count): pure, from the collected data.
    A cell is normal when it is `up` and stored within `normal_s` of its due time."""
    f = Figures(w.name, expected=len(cells))
    mine = [r for r in rows if w.start * 1000 <= r.cell[2] < w.end * 1000]
    per_cell = Counter(r.cell for r in mine)
    f.stored = sum(1 for c in cells if per_cell[c])
    f.duplicated = sum(1 for c, n in per_cell.items() if n > 1)
    # Rounds due while the scheduling path was away, and during the warm-up of the live
    # agents view after it came back, run once at the latest grid point (by design).
    coalesce_until = (w.returned + WARMUP_S + 2.0) * 1000 if w.away else w.start * 1000
    for c in cells - per_cell.keys():
        if c[2] < coalesce_until:
            f.coalesced += 1
        else:
            f.missing += 1
    f.down = sum(1 for r in mine if r.status == "down")
    for r in mine:
        if r.error_kind == "no_agent":
            f.no_agent += 1
            # Judged when it was written, as the scheduler did: a round due just before an
            # agent stops and sent just after had no agent indeed.
            if country_live(r.cell[1], r.stored):
                f.phantom_no_agent += 1
        elif r.error_kind == "expired":
            f.expired += 1
    # A real result (the agent ran the check) is dropped when its round's row says otherwise.
    # A result that never got a row at all is as lost.
    row_of = {r.job_id: r for r in mine}
    for p in published:
        due = parse_iso(p.scheduled_at).timestamp()
        # An agent's own `expired` (a job it got after its life ended) is `down` on the wire
        # but reports a check that did not run: stored as missed, it is no real result.
        if p.error_kind not in MISSED_KINDS and w.start <= due < w.end:
            got = row_of.get(p.job_id)
            if got is None or got.status != p.status:
                f.dropped += 1
                if len(f.dropped_examples) < 5:
                    stored = f"{got.status}/{got.error_kind}" if got else "no row"
                    f.dropped_examples.append(
                        f"job {p.job_id} {p.monitor_id} {p.country} due {p.scheduled_at}:"
                        f" {p.agent_id} published {p.status}/{p.error_kind}"
                        f" (finished {p.finished_at}), stored {stored}"
                    )
    # Recovery: from the part's return to the end of the last second (by due time) in which
    # fewer than NORMAL_SHARE of the cells were normal; a lone slow check is not an outage.
    by_cell = {r.cell: r for r in mine}
    seconds: dict[int, list[bool]] = {}
    for c in cells:
        # Cells that could still be on time when the next fault begins; later ones are its.
        if w.returned * 1000 <= c[2] < (w.end - normal_s) * 1000:
            got = by_cell.get(c)
            normal = got is not None and got.status == "up" and got.stored - c[2] / 1000 <= normal_s
            seconds.setdefault(c[2] // 1000, []).append(normal)
    bad = sorted(s for s, ok in seconds.items() if sum(ok) < NORMAL_SHARE * len(ok))
    f.recovery_s = max(0.0, bad[-1] + 1 - w.returned) if bad else 0.0
    for s in bad[-3:]:
        ok = seconds[s]
        f.late_seconds.append(f"due +{s - w.returned:.0f} s: {sum(ok)}/{len(ok)} normal")
    catching_up = min(w.end, w.returned + 30)
    per_second = Counter(int(r.stored) for r in rows if w.returned <= r.stored < catching_up)
    f.catch_up_per_s = max(per_second.values(), default=0)
    for at, agent, value in in_flight:
        if w.start <= at < w.end:
            f.in_flight[agent] = max(f.in_flight.get(agent, 0), value)
    return f


def normal_lateness(rows: Sequence[Row], since: float, until: float) -> float:
    """How late this rig stores results with no fault: the 99th percentile of stored minus due
    over the `up` rows due in [since, until), plus a second; NORMAL_S when that is less."""
    late = sorted(
        r.stored - r.cell[2] / 1000
        for r in rows
        if r.status == "up" and since * 1000 <= r.cell[2] < until * 1000
    )
    if not late:
        return NORMAL_S
    return max(NORMAL_S, late[int(0.99 * (len(late) - 1))] + 1.0)
