"""`python -m bench ha-soak`: the fault campaign of issue 57 on a deployment without a single
point of failure, on loopback (testkit.campaigns.ha_rig). Three nats-servers (STREAM_REPLICAS=3), a
PostgreSQL primary and a synchronous standby behind a multi-host DATABASE_URL, two `python -m
controller serve` replicas, agents DE-1, DE-2, US-1 and US-2, MONITORS SMTP monitors every 10 s
against a healthy server, and one more monitor whose own server the harness takes down during
the controller kill and the PostgreSQL failover: a real outage, which must be notified once.

Each fault in turn, by PID (SIGKILL): the node leading JOBS or RESULTS (started again 20 s
later), a node leading neither, one controller replica while the outage's incident is open,
one stopped for a second first (mid-ack: it holds results it has not acked; the store lag p99
while the fault lasts must stay within 10 s), the PostgreSQL primary 12 s into an outage and
again at the instant the outage's `down` e-mail reaches the harness's sink (mid-send; the
harness promotes the standby 5 s later, as a failover manager would, and makes a new standby
between the two), an agent. Per fault it prints results lost (grid cells with no row, real
results stored as something else), stored twice, false `down`, notices missed or doubled (the
outage's one `down` and one `recovered`; none for the healthy monitors), the outage's e-mails
not received at the sink or received more than 30 s after they were queued, the seconds until
rounds are on time again (testkit.campaigns.soak_figures) and the store lag p99 (stored - finished)
while the fault lasted and after. Exits 1 when a target is missed; prints every figure either way.
Many seeds of the instants of a PostgreSQL kill (mid-send, mid-commit, mid-claim) are
testkit.campaigns.notice_failover's, which `make soak` runs too.

`python -m bench ha-soak [--monitors N] [--warmup S] [--observe S] [--short]` (about 10
minutes; `--observe`: seconds each fault is watched once applied, 20-30 by default); `--short`
is what tests/soak/test_ha_soak_short.py runs under `make soak` (about 1.5 minutes: 50
monitors, an agent per country, a 5 s INCIDENT_GROUP_WAIT_SECONDS, and the leader kill, the
controller kill mid-ack and the failover mid-send in one fault, `failover_through_kills`),
asserting every target but those in seconds (e-mails late, store lag, on time again).
"""

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import asyncpg

from controller.db.pool import connect
from controller.notify.email import message_id
from testkit.campaigns import soak_run
from testkit.campaigns.ha_rig import HaRig
from testkit.campaigns.notice_sink import Received
from testkit.campaigns.soak_figures import (
    LIVE_GRACE_S,
    Figures,
    Window,
    figures,
    grid,
    normal_lateness,
    published_results,
    read_when_settled,
    stored_rows,
)
from testkit.campaigns.soak_rig import now
from testkit.campaigns.soak_run import INTERVAL, Say
from testkit.common import discard_logs, machine, percentile, verdict

COUNTRIES = ("DE", "US")
AGENTS = (("DE-1", "DE"), ("DE-2", "DE"), ("US-1", "US"), ("US-2", "US"))
# At most until the alerter has closed every round (testkit.campaigns.soak); the figures are
# read once nothing is on its way: every cell has its row, every published result its own, and
# the outage's every queued notice reached the sink.
DRAIN_S = 2.5 * INTERVAL + 10
# How long the outage's incident may take to open, and to close once the server is back: the
# rounds the default rules want (two failing, two passing, a confirmation) and a round's close.
INCIDENT_WITHIN_S = 120.0
# What a failover manager takes to decide the primary is gone and promote the standby.
PROMOTE_AFTER_S = 5.0
# A notice received later than this after it was queued is late (issue 69).
LATE_S = 30.0
# The store lag p99 of a fault that kills a controller holding results: within seconds, not
# the ack wait of old (30 s).
STORE_LAG_TARGET_S = 10.0


@dataclass
class Outage:
    """The monitor whose server the harness takes down."""

    rig: HaRig
    monitor: str

    def incident_open(self, want: bool, within: float = INCIDENT_WITHIN_S) -> float:
        """Until the monitor has an open incident (`want`) or none; the time it was so. Polls
        through a failover (a query that fails is tried again)."""
        deadline = now() + within
        while now() < deadline:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                if asyncio.run(self._open()) == want:
                    return now()
            time.sleep(0.5)
        raise RuntimeError(f"the outage's incident not {'open' if want else 'closed'} in time")

    async def _open(self) -> bool:
        conn = await connect(self.rig.database_url)
        try:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM incidents i JOIN monitors m ON m.id = i.monitor_id"
                    " WHERE m.public_id = $1 AND i.ended_at IS NULL",
                    self.monitor,
                )
            )
        finally:
            await conn.close()


# Applies a fault (and brings the part back, if it does); returns the moment the deployment
# should be whole again: recovery is counted from it.
Apply = Callable[[HaRig, "Outage", Say], float]


@dataclass
class Fault:
    name: str
    apply: Apply
    # rounds due meanwhile may coalesce by design (the scheduling path had no database)
    away: bool
    observe_s: float
    outage: bool = False  # the outage monitor's server was down during it
    # a controller died holding results it had not acked: their store lag p99 during the fault
    # must stay within STORE_LAG_TARGET_S
    lag_target: bool = False


def nats_kill(leader: bool, back_after_s: float) -> Apply:
    """SIGKILL a node: the one leading RESULTS (JOBS too, when one node leads both), or one
    leading neither; started again `back_after_s` later. Counted from the kill: the cluster
    needs no third node."""

    def apply(rig: HaRig, _: Outage, say: Say) -> float:
        leaders = rig.leaders()
        names = [n.name for n in rig.nodes]
        if leader:
            both = leaders["JOBS"] == leaders["RESULTS"]
            node = leaders["RESULTS"]
        else:
            node = next(n for n in names if n not in leaders.values())
        say(
            f"    leaders: JOBS {leaders['JOBS']}, RESULTS {leaders['RESULTS']};"
            f" killing {node}{' (both)' if leader and both else ''}"
        )
        killed = now()
        rig.kill_node(node)
        time.sleep(back_after_s)
        rig.start_node(node)
        return killed

    return apply


def controller_kill(rig: HaRig, outage: Outage, say: Say) -> float:
    """The outage begins; once its incident is open, replica A is killed; the server comes
    back 5 s later, A 15 s later: B alone carries the incident to its close."""
    began = rig.outage_down()
    opened = outage.incident_open(True)
    say(f"    incident open {opened - began:.0f} s into the outage; killing controller A")
    killed = now()
    rig.signal_controller("A", signal.SIGKILL)
    time.sleep(5)
    rig.outage_up()
    time.sleep(10)
    rig.start_controller("A")
    outage.incident_open(False)
    return killed


def controller_kill_mid_ack(rig: HaRig, _: Outage, say: Say) -> float:
    """Controller A stopped (SIGSTOP) for a second, so that it holds results delivered to it
    and not acked, then killed; started again 10 s later."""
    return _kill_mid_ack(rig, say, back_after_s=10)


def _kill_mid_ack(rig: HaRig, say: Say, back_after_s: float) -> float:
    proc = rig.controllers["A"].proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)
    time.sleep(1)
    killed = now()
    rig.signal_controller("A", signal.SIGKILL)
    say("    controller A killed holding what it was sent in its last second")
    time.sleep(back_after_s)
    rig.start_controller("A")
    return killed


def postgres_failover(rig: HaRig, outage: Outage, say: Say) -> float:
    """The outage begins; 12 s in (a failing round stored, none judged down yet) the primary is
    killed, the standby promoted 5 s later; the server comes back once the incident opened."""
    began = rig.outage_down()
    time.sleep(12)
    rig.kill_primary()
    time.sleep(PROMOTE_AFTER_S)
    rig.promote_standby()
    promoted = now()
    opened = outage.incident_open(True)
    say(f"    standby promoted; incident open {opened - began:.0f} s into the outage")
    rig.outage_up()
    outage.incident_open(False)
    return promoted


def postgres_failover_mid_send(rig: HaRig, outage: Outage, say: Say) -> float:
    """The outage begins; the primary is killed at the instant its `down` notice reaches the
    e-mail sink (the controller cannot write the outcome back), the standby promoted 5 s later
    and the server back at once: the `recovered` notice is queued behind the unrecorded `down`
    one. The pair is made whole first when an earlier fault used its standby."""
    return _failover_mid_send(rig, outage, say, lambda: None)


def failover_through_kills(rig: HaRig, outage: Outage, say: Say) -> float:
    """make test's one fault, the full campaign's mid-ack kill, leader kill and mid-send
    failover in one: controller A killed after a second stopped (back 3 s later); then the
    outage begins and, while its incident is being confirmed, the node leading RESULTS is
    killed (back 5 s later); the primary is killed as the `down` notice reaches the sink, the
    standby promoted, the server back. A is back before the outage: a controller starting
    while the primary is dead and not yet replaced would wait for it."""
    _kill_mid_ack(rig, say, back_after_s=3)
    return _failover_mid_send(rig, outage, say, lambda: nats_kill(True, 5)(rig, outage, say))


def _failover_mid_send(
    rig: HaRig, outage: Outage, say: Say, meanwhile: Callable[[], object]
) -> float:
    """The outage begins, `meanwhile` runs, and the primary is killed as the `down` notice
    reaches the sink (during `meanwhile` too); the standby promoted, the server back; the time
    of the promotion."""
    if not rig.whole:
        rig.renew_standby()
    killed = threading.Event()

    def tap(got: Received) -> None:
        if not killed.is_set() and got.subject.endswith("DOWN: outage"):
            killed.set()
            rig.kill_primary()

    rig.sink.tap = tap
    try:
        began = rig.outage_down()
        meanwhile()
        if not killed.wait(INCIDENT_WITHIN_S):
            raise RuntimeError("the outage's down notice never reached the sink")
    finally:
        rig.sink.tap = lambda _: None
    say(f"    primary killed as the down notice was sent, {now() - began:.0f} s into the outage")
    time.sleep(PROMOTE_AFTER_S)
    rig.promote_standby()
    promoted = now()
    rig.outage_up()
    outage.incident_open(False)
    return promoted


def agent_kill(rig: HaRig, _: Outage, __: Say) -> float:
    rig.signal_agent("DE-1", signal.SIGKILL)
    time.sleep(15)
    rig.start_agent("DE-1")
    return now()


MID_SEND = "PostgreSQL primary kill -9 as the down notice is sent, standby promoted"
MID_ACK = "controller A kill -9 holding results not acked (mid-ack), back after 10 s"
LEADER = Fault(
    "NATS kill -9: the node leading RESULTS, back after 20 s", nats_kill(True, 20), False, 30
)
FULL = [
    LEADER,
    Fault(
        "NATS kill -9: a node leading neither stream, back after 20 s",
        nats_kill(False, 20),
        False,
        30,
    ),
    Fault(
        "controller A kill -9 mid-incident (B carries on)",
        controller_kill,
        False,
        20,
        outage=True,
        lag_target=True,
    ),
    Fault(MID_ACK, controller_kill_mid_ack, False, 20, lag_target=True),
    Fault("PostgreSQL primary kill -9, standby promoted", postgres_failover, True, 30, outage=True),
    Fault(MID_SEND, postgres_failover_mid_send, True, 30, outage=True),
    Fault("agent kill -9 (DE-1, back after 15 s)", agent_kill, False, 30),
]
# make test's: the three faults whose figures its tests pin, at once (failover_through_kills).
SHORT = [
    Fault(
        "controller A kill -9 mid-ack; an outage begins with the NATS leader's kill -9; the"
        " PostgreSQL primary kill -9 as its down notice is sent, standby promoted",
        failover_through_kills,
        True,
        3,
        outage=True,
        lag_target=True,
    )
]


@dataclass
class Campaign:
    monitors: int
    faults: list[Fault]
    warmup_s: float
    concurrency: int = 200
    agents: tuple[tuple[str, str], ...] = AGENTS
    # INCIDENT_GROUP_WAIT_SECONDS: None, the default (10 s); the outage's monitor is alone,
    # nothing joins its incident
    group_wait_s: int | None = None


CAMPAIGNS = {
    "full": Campaign(1000, FULL, warmup_s=30),
    "short": Campaign(
        50, SHORT, warmup_s=2, agents=(("DE-1", "DE"), ("US-1", "US")), group_wait_s=5
    ),
}


@dataclass
class HaFigures:
    """A fault's figures: the soak's over the healthy monitors, and the outage's notices."""

    soak: Figures
    outage_expected: bool
    notices: dict[str, int] = field(default_factory=dict)  # the outage's, by kind
    outage_lost: int = 0  # the outage monitor's cells missing or real results dropped
    outage_doubled: int = 0
    # The outage's notices at the e-mail sink: never received, received more than LATE_S
    # after they were queued, and the longest from queued to received (None: none queued).
    not_received: int = 0
    late: int = 0
    slowest_s: float | None = None
    lag_target: bool = False  # the fault's store lag p99 during it has STORE_LAG_TARGET_S
    # None: no result finished in that part of the window
    lag_during_ms: float | None = None
    lag_after_ms: float | None = None

    @property
    def lost(self) -> int:
        return self.soak.missing + self.soak.dropped + self.outage_lost

    @property
    def doubled(self) -> int:
        return self.soak.duplicated + self.outage_doubled

    @property
    def notices_wrong(self) -> tuple[int, int]:
        """The outage's (missed, doubled) notices: one `down` and one `recovered` are owed when
        its server was down in this fault, none otherwise. (A healthy monitor's notice is a
        false alert, the soak's own figure.)"""
        want = 1 if self.outage_expected else 0
        got = [self.notices.get(kind, 0) for kind in ("down", "recovered")]
        others = sum(n for kind, n in self.notices.items() if kind not in ("down", "recovered"))
        return sum(max(0, want - n) for n in got), sum(max(0, n - want) for n in got) + others

    @property
    def lag_missed(self) -> bool:
        during = self.lag_during_ms
        return self.lag_target and during is not None and during > STORE_LAG_TARGET_S * 1000

    def misses(self, concurrency: int) -> list[str]:
        found = self.soak.misses(concurrency)
        found = [m for m in found if m not in ("missing cells", "duplicated cells")]
        checks = {
            "results lost": self.lost == 0,
            "stored twice": self.doubled == 0,
            "notices missed": self.notices_wrong[0] == 0,
            "notices doubled": self.notices_wrong[1] == 0,
            "notices not received": self.not_received == 0,
            f"notices late beyond {LATE_S:.0f} s": self.late == 0,
            f"store lag p99 beyond {STORE_LAG_TARGET_S:.0f} s": not self.lag_missed,
        }
        return [name for name, ok in checks.items() if not ok] + found


def run_campaign(c: Campaign, say: Say = print) -> list[HaFigures]:
    with soak_run.folder("mailprobe-ha-soak-", say) as tmp:
        rig = HaRig(
            tmp, concurrency=c.concurrency, result_bundles=True, group_wait_s=c.group_wait_s
        )
        try:
            healthy, outage = asyncio.run(_seed(rig, c.monitors))
            windows = soak_run.fault_windows(
                rig,
                monitors=c.monitors + 1,
                agents=c.agents,
                controllers=("A", "B"),
                warmup_s=c.warmup_s,
                faults=c.faults,
                apply=lambda fault: fault.apply(rig, Outage(rig, outage), say),
                say=say,
            )
            say(f"  waiting for the last rounds to close (at most {DRAIN_S:.0f} s)")
            outages = {f.name for f in c.faults if f.outage}
            lagged = {f.name for f in c.faults if f.lag_target}
            return read_when_settled(
                lambda: asyncio.run(_figures(rig, healthy, outage, windows, outages, lagged)),
                lambda found: not any(h.lost or h.not_received for h in found),
                DRAIN_S,
            )
        finally:
            rig.close()


async def _seed(rig: HaRig, count: int) -> tuple[list[str], str]:
    """`count` monitors of the healthy server and one of the outage's; every one with a
    recipient, so that any notice is queued and counted."""
    ids = await soak_run.seed_healthy(rig, count + 1, COUNTRIES)
    conn = await connect(rig.database_url)
    try:
        await conn.execute(
            "UPDATE monitors SET port = $1, name = 'outage' WHERE public_id = $2",
            rig.outage_port,
            ids[-1],
        )
    finally:
        await conn.close()
    return ids[:-1], ids[-1]


async def _figures(
    rig: HaRig,
    healthy: list[str],
    outage: str,
    windows: list[Window],
    outages: set[str],
    lagged: set[str],
) -> list[HaFigures]:
    published = await published_results(rig.nats_url)
    received: dict[str, float] = {}
    for got in rig.sink.received:
        received.setdefault(got.message_id, got.at)
    conn = await connect(rig.database_url)
    try:
        rows = await stored_rows(conn, windows[0].start, windows[-1].end)
        fine = [r for r in rows if r.cell[0] != outage]
        down = [r for r in rows if r.cell[0] == outage]
        normal_s = normal_lateness(fine, windows[0].start, windows[0].end)
        lags = await _store_lags(conn, outage, windows[0].start, windows[-1].end)
        found = []
        for w in windows:
            live = lambda cc, at: rig.country_live(cc, at, LIVE_GRACE_S)  # noqa: E731
            f = figures(
                w,
                grid(healthy, COUNTRIES, INTERVAL, w),
                fine,
                [p for p in published if p.monitor_id != outage],
                live,
                rig.in_flight,
                normal_s,
            )
            f.normal_s = normal_s
            f.alerts, f.incidents = await _alerts(conn, w.start, w.end, but=outage)
            o = figures(
                w,
                grid([outage], COUNTRIES, INTERVAL, w),
                down,
                [p for p in published if p.monitor_id == outage],
                live,
                [],
                normal_s,
            )
            h = HaFigures(f, w.name in outages, await _notices(conn, outage, w.start, w.end))
            h.outage_lost, h.outage_doubled = o.missing + o.dropped, o.duplicated
            h.lag_target = w.name in lagged
            waits = await _received(conn, received, outage, w.start, w.end)
            h.not_received = sum(1 for s in waits if s is None)
            h.late = sum(1 for s in waits if s is not None and s > LATE_S)
            h.slowest_s = max((s for s in waits if s is not None), default=None)
            over = max(w.returned + f.recovery_s, w.start + INTERVAL)
            during = [ms for at, ms in lags if w.start <= at < over]
            after = [ms for at, ms in lags if over <= at < w.end]
            h.lag_during_ms = percentile(during, 99) if during else None
            h.lag_after_ms = percentile(after, 99) if after else None
            found.append(h)
        return found
    finally:
        await conn.close()


async def _alerts(
    conn: asyncpg.Connection, since: float, until: float, *, but: str
) -> tuple[int, int]:
    """(notifications queued, incidents opened) in [since, until) for every monitor but `but`."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM notification_outbox o JOIN monitors m ON m.id = o.monitor_id"
        "  WHERE m.public_id <> $3 AND o.created_at >= to_timestamp($1)"
        "  AND o.created_at < to_timestamp($2)) AS queued,"
        " (SELECT count(*) FROM incidents i JOIN monitors m ON m.id = i.monitor_id"
        "  WHERE m.public_id <> $3 AND i.opened_at >= to_timestamp($1)"
        "  AND i.opened_at < to_timestamp($2)) AS opened",
        since,
        until,
        but,
    )
    assert row is not None
    return int(row["queued"]), int(row["opened"])


async def _notices(
    conn: asyncpg.Connection, monitor: str, since: float, until: float
) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT o.kind, count(*) AS n FROM notification_outbox o JOIN monitors m"
        " ON m.id = o.monitor_id WHERE m.public_id = $1 AND o.created_at >= to_timestamp($2)"
        " AND o.created_at < to_timestamp($3) GROUP BY o.kind",
        monitor,
        since,
        until,
    )
    return {r["kind"]: int(r["n"]) for r in rows}


async def _received(
    conn: asyncpg.Connection,
    received: dict[str, float],
    monitor: str,
    since: float,
    until: float,
) -> list[float | None]:
    """For each e-mail notice of `monitor` queued in [since, until): the seconds from queued to
    its first arrival at the sink (by its Message-ID), None when it never arrived."""
    rows = await conn.fetch(
        "SELECT o.dedupe_key, extract(epoch FROM o.created_at)::float8 AS at"
        " FROM notification_outbox o JOIN monitors m ON m.id = o.monitor_id"
        " WHERE m.public_id = $1 AND o.channel = 'email' AND o.created_at >= to_timestamp($2)"
        " AND o.created_at < to_timestamp($3)",
        monitor,
        since,
        until,
    )
    waits: list[float | None] = []
    for r in rows:
        at = received.get(message_id(r["dedupe_key"]))
        waits.append(None if at is None else at - r["at"])
    return waits


async def _store_lags(
    conn: asyncpg.Connection, outage: str, since: float, until: float
) -> list[tuple[float, float]]:
    """(finished, stored - finished in ms) of every real result of a healthy monitor."""
    rows = await conn.fetch(
        "SELECT extract(epoch FROM finished_at)::float8 AS at,"
        " extract(epoch FROM stored_at - finished_at)::float8 * 1000 AS lag FROM check_results"
        " WHERE finished_at >= to_timestamp($1) AND finished_at < to_timestamp($2)"
        " AND agent_id IS NOT NULL AND monitor_public_id::text <> $3",
        since,
        until,
        outage,
    )
    return [(r["at"], r["lag"]) for r in rows]


def report(found: list[HaFigures], concurrency: int, say: Say = print) -> bool:
    ok = True
    for h in found:
        f = h.soak
        missed = h.misses(concurrency)
        ok = ok and not missed
        notices_missed, notices_doubled = h.notices_wrong
        outage = (
            f"outage notified down {h.notices.get('down', 0)}, recovered"
            f" {h.notices.get('recovered', 0)} (want 1 each)"
            if h.outage_expected
            else f"outage notices {sum(h.notices.values())} (want 0)"
        )
        say(
            f"  {f.name}\n"
            f"    results lost {h.lost:,} (cells with no row, real results stored otherwise),"
            f" stored twice {h.doubled:,}, false down {f.down:,}"
            f" (of {f.expected:,} cells; coalesced by design {f.coalesced:,}; expired"
            f" {f.expired:,}, phantom no_agent {f.phantom_no_agent:,})\n"
            f"    notices missed {notices_missed}, doubled {notices_doubled}: {outage};"
            f" healthy monitors' alerts {f.alerts}, incidents {f.incidents}\n"
            f"    outage's e-mails at the sink: not received {h.not_received}, late beyond"
            f" {LATE_S:.0f} s {h.late}, slowest {_s(h.slowest_s)} from queued to received\n"
            f"    on time again after {f.recovery_s:.1f} s (on time: stored within"
            f" {f.normal_s:.1f} s of due); store lag p99 {_ms(h.lag_during_ms)} during,"
            f" {_ms(h.lag_after_ms)} after\n"
            f"    {verdict(not missed)}" + (f": {', '.join(missed)}" if missed else "")
        )
        for example in f.dropped_examples:
            say(f"    dropped: {example}")
        if f.late_seconds:
            say(f"    last seconds not on time: {'; '.join(f.late_seconds)}")
    return ok


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def run(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(prog="python -m bench ha-soak", description=__doc__)
    parser.add_argument("--short", action="store_true", help="make test's campaign")
    parser.add_argument("--monitors", type=int, help="healthy monitors (1,000; short: 200)")
    parser.add_argument("--warmup", type=float, help="seconds before the first fault")
    parser.add_argument("--observe", type=float, help="seconds each fault is watched")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    c = CAMPAIGNS["short" if args.short else "full"]
    c = replace(
        c,
        monitors=args.monitors or c.monitors,
        warmup_s=args.warmup or c.warmup_s,
        faults=[replace(f, observe_s=args.observe or f.observe_s) for f in c.faults],
    )
    discard_logs()
    print(
        f"ha-soak ({machine()}; 3 nats-servers at STREAM_REPLICAS=3, PostgreSQL primary and"
        f" synchronous standby, controllers A and B, agents {', '.join(a for a, _ in AGENTS)};"
        f" {c.monitors:,} SMTP monitors every {INTERVAL} s from {' and '.join(COUNTRIES)} and"
        f" one outage monitor; results in bundles; {len(c.faults)} faults)",
        flush=True,
    )
    ok = report(run_campaign(c, lambda s: print(s, flush=True)), c.concurrency)
    print("all ha-soak targets met" if ok else "ha-soak targets missed")
    return ok


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
