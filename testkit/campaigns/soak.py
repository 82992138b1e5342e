"""`make soak`: the fault campaign of issue 13 on this machine, loopback only.

Embedded PostgreSQL and NATS, a healthy SMTP server (testkit.smtp_target) in its own process,
MONITORS SMTP monitors every INTERVAL seconds checked from DE and US, agents DE-1, DE-2 and US-1
(`python -m agent`) and the controller (`python -m controller serve`) as real processes. Each
fault in turn, by PID, then a quiet spell; each fault's window runs until the next one starts.
After the last, the rig waits for the alerter to close every round, then prints per fault: grid
cells expected / stored / missing / duplicated, `down` results (the target is healthy: all false),
spurious `no_agent` (the country had a live agent), real results dropped (RESULTS stream against
the stored rows), alerts sent, recovery time, catch-up rate, max in-flight per agent. Exits 1
when a target is missed; prints every figure either way.

`python -m testkit.campaigns.soak` runs the full campaign (~15 minutes); `--short` an agent, the
controller and NATS killed in turn on 60 monitors (about a minute, what
tests/soak/test_soak_short.py runs under `make soak`, asserting every target but the recovery
time).
"""

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller.db.pool import connect
from testkit.campaigns import soak_run
from testkit.campaigns.soak_figures import (
    LIVE_GRACE_S,
    Figures,
    Window,
    alerts,
    figures,
    grid,
    normal_lateness,
    published_results,
    read_when_settled,
    stored_rows,
)
from testkit.campaigns.soak_rig import Rig, now
from testkit.campaigns.soak_run import INTERVAL
from testkit.common import discard_logs, machine, verdict

COUNTRIES = ("DE", "US")
AGENTS = (("DE-1", "DE"), ("DE-2", "DE"), ("US-1", "US"))
# The alerter closes a round that has no result 2.5 intervals after it is due: by then every
# cell of the last window has its row. The figures are read once no cell lacks a row and no
# published result lacks its own (nothing is still on its way), at the latest after DRAIN_S.
DRAIN_S = 2.5 * INTERVAL + 10


@dataclass
class Fault:
    name: str
    # applies the fault and brings the part back; returns the time it was back
    apply: Callable[[Rig], float]
    # the scheduling path (controller, NATS, PostgreSQL) was down meanwhile
    away: bool
    observe_s: float


def _sleep_until(at: float) -> None:
    time.sleep(max(0.0, at - now()))


def agent_kill(down_s: float) -> Callable[[Rig], float]:
    def apply(rig: Rig) -> float:
        rig.signal_agent("DE-1", signal.SIGKILL)
        time.sleep(down_s)
        rig.start_agent("DE-1")
        return now()

    return apply


def agent_stop(stopped_s: float) -> Callable[[Rig], float]:
    def apply(rig: Rig) -> float:
        rig.signal_agent("DE-2", signal.SIGSTOP)
        time.sleep(stopped_s)
        rig.signal_agent("DE-2", signal.SIGCONT)
        return now()

    return apply


def controller_kill(rig: Rig) -> float:
    rig.signal_controller("A", signal.SIGKILL)
    return rig.start_controller("A")


def two_replicas(held_s: float) -> Callable[[Rig], float]:
    def apply(rig: Rig) -> float:
        started = now()
        rig.start_controller("B")
        _sleep_until(started + held_s)
        rig.signal_controller("B", signal.SIGTERM)
        return started  # nothing was broken: every cell from the start on must be normal

    return apply


def nats_down(sig: signal.Signals, down_s: float) -> Callable[[Rig], float]:
    def apply(rig: Rig) -> float:
        started = now()
        rig.stop_nats(sig)
        _sleep_until(started + down_s)
        rig.start_nats()
        return now()

    return apply


def postgres_down(kill: bool) -> Callable[[Rig], float]:
    def apply(rig: Rig) -> float:
        if kill:
            rig.kill_postgres()
        else:
            rig.stop_postgres_immediate()
        rig.start_postgres()
        return now()

    return apply


def country_gone(gone_s: float) -> Callable[[Rig], float]:
    def apply(rig: Rig) -> float:
        started = now()
        rig.signal_agent("US-1", signal.SIGTERM)
        _sleep_until(started + gone_s)
        rig.start_agent("US-1")
        return now()

    return apply


FULL = [
    Fault("agent kill -9 (DE-1, back after 15 s)", agent_kill(15), False, 30),
    Fault("agent SIGSTOP 60 s (DE-2)", agent_stop(60), False, 30),
    Fault("controller kill -9, restarted", controller_kill, True, 30),
    Fault("two controller replicas (60 s)", two_replicas(60), False, 20),
    Fault("NATS SIGTERM, 20 s down", nats_down(signal.SIGTERM, 20), True, 40),
    Fault("NATS kill -9, 30 s down", nats_down(signal.SIGKILL, 30), True, 40),
    Fault("PostgreSQL kill -9, restarted", postgres_down(kill=True), True, 30),
    Fault("PostgreSQL immediate stop, restarted", postgres_down(kill=False), True, 30),
    Fault("country US gone 2 min", country_gone(120), False, 30),
]
# make test's: each kind of part killed once, watched until some rounds after its return are
# checked (the heartbeat warm-up after a return, in which rounds may coalesce, is 1.5 s).
SHORT = [
    Fault("agent kill -9 (DE-1, back after 3 s)", agent_kill(3), False, 4),
    Fault("controller kill -9, restarted", controller_kill, True, 6),
    Fault("NATS kill -9, 6 s down", nats_down(signal.SIGKILL, 6), True, 7),
]


@dataclass
class Campaign:
    monitors: int
    faults: list[Fault]
    warmup_s: float
    concurrency: int = 200
    agents: tuple[tuple[str, str], ...] = AGENTS


CAMPAIGNS = {
    "full": Campaign(1000, FULL, warmup_s=30),
    # A low concurrency, so the jobs a NATS outage piles up overrun it at this small scale too
    # when the agent lets them (issue 13 #1): 6 checks/s per country need far less.
    "short": Campaign(60, SHORT, warmup_s=2, concurrency=10),
}


def run_campaign(c: Campaign, say: Callable[[str], None] = print) -> list[Figures]:
    """Run the campaign; each fault window's figures."""
    with soak_run.folder("mailprobe-soak-", say) as tmp:
        # Results in bundles (RESULT_BUNDLES), so the ingester takes them apart under every
        # fault; the tests cover one result per message under the faults they inject.
        rig = Rig(tmp, concurrency=c.concurrency, result_bundles=True)
        try:
            monitors = asyncio.run(soak_run.seed_healthy(rig, c.monitors, COUNTRIES))
            windows = soak_run.fault_windows(
                rig,
                monitors=c.monitors,
                agents=c.agents,
                controllers=("A",),
                warmup_s=c.warmup_s,
                faults=c.faults,
                apply=lambda fault: fault.apply(rig),
                say=say,
            )
            say(f"  waiting for the last rounds to close (at most {DRAIN_S:.0f} s)")
            return read_when_settled(
                lambda: asyncio.run(_figures(rig, monitors, windows)),
                lambda found: not any(f.missing or f.dropped for f in found),
                DRAIN_S,
            )
        finally:
            rig.close()


async def _figures(rig: Rig, monitors: list[str], windows: list[Window]) -> list[Figures]:
    published = await published_results(rig.nats_url)
    conn = await connect(rig.database_url)
    try:
        rows = await stored_rows(conn, windows[0].start, windows[-1].end)
        normal_s = normal_lateness(rows, windows[0].start, windows[0].end)
        found = []
        for w in windows:
            cells = grid(monitors, COUNTRIES, INTERVAL, w)
            f = figures(
                w,
                cells,
                rows,
                published,
                lambda cc, at: rig.country_live(cc, at, LIVE_GRACE_S),
                rig.in_flight,
                normal_s,
            )
            f.normal_s = normal_s
            f.alerts, f.incidents = await alerts(conn, w.start, w.end)
            found.append(f)
        return found
    finally:
        await conn.close()


def report(found: list[Figures], concurrency: int, say: Callable[[str], None] = print) -> bool:
    ok = True
    for f in found:
        missed = f.misses(concurrency)
        ok = ok and not missed
        in_flight = ", ".join(f"{a} {n}" for a, n in sorted(f.in_flight.items())) or "none"
        say(
            f"  {f.name}\n"
            f"    cells expected {f.expected:,}, stored {f.stored:,}, missing {f.missing:,},"
            f" duplicated {f.duplicated:,} (coalesced while away, by design: {f.coalesced:,})\n"
            f"    down (false) {f.down:,}, no_agent {f.no_agent:,}"
            f" (phantom {f.phantom_no_agent:,}),"
            f" expired {f.expired:,}, real results dropped {f.dropped:,}\n"
            f"    alerts queued {f.alerts:,}, incidents {f.incidents:,},"
            f" recovery {f.recovery_s:.1f} s (normal: up and stored within {f.normal_s:.1f} s),"
            f" catch-up {f.catch_up_per_s:,} rows/s,"
            f" max in-flight {in_flight} (concurrency {concurrency})\n"
            f"    {verdict(not missed)}" + (f": {', '.join(missed)}" if missed else "")
        )
        for example in f.dropped_examples:
            say(f"    dropped: {example}")
        if f.late_seconds:
            say(f"    last seconds not back to normal: {'; '.join(f.late_seconds)}")
    return ok


def run(name: str = "full") -> bool:
    c = CAMPAIGNS[name]
    discard_logs()
    print(
        f"soak ({machine()}; {c.monitors:,} SMTP monitors every {INTERVAL} s from"
        f" {' and '.join(COUNTRIES)}, agents {', '.join(a for a, _ in AGENTS)}, results in"
        f" bundles, {len(c.faults)} faults)",
        flush=True,
    )
    ok = report(run_campaign(c, lambda s: print(s, flush=True)), c.concurrency)
    print("all soak targets met" if ok else "soak targets missed")
    return ok


if __name__ == "__main__":
    sys.exit(0 if run("short" if "--short" in sys.argv[1:] else "full") else 1)
