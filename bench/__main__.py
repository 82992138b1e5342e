"""`make bench`: every benchmark with its target; exits 1 when a target is missed.

`python -m bench NAME ...` runs only the named ones (api, probers, agent, scheduler, seal, ingest,
ingest-cost, e2e, login, agents-scale, roundtrip, confirm, console, metrics, lists, blocklists,
dead-list,
exporter, storage, store, runs, reads, jobs, reports, saturation, scale, verdicts, ha-soak, ha-idle,
ha-move, report-rows, notice-failover, uptime-keep, readiness-turns, nats-cost,
due-moves, handoff-cost, hostile-dns, hostile-mail, fair-notices, first-page, siblings-cost,
sim);
`python -m bench scale --help` lists the scale benchmark's flags (monitors, interval, window,
...), which follow its name; so do the saturation benchmark's (`python -m bench saturation
--help`), the verdict campaign's (`python -m bench verdicts --seed N --minutes M`) and the HA
campaign's (`python -m bench ha-soak --help`) and the notice failovers' (`python -m bench
notice-failover --seeds N`).
"""

import sys
import time
from collections.abc import Callable

from bench import (
    agent,
    agents_scale,
    api,
    blocklists,
    confirm,
    console,
    dead_list,
    due_moves,
    e2e,
    exporter,
    fair_notices,
    first_page,
    ha_idle,
    handoff_cost,
    hostile_dns,
    hostile_mail,
    ingest,
    ingest_cost,
    jobs,
    lists,
    login,
    metrics,
    nats_cost,
    nats_sync,
    probers,
    readiness_turns,
    reads,
    report_rows,
    reports,
    roundtrip,
    runs,
    scheduler,
    seal,
    siblings_cost,
    storage,
    store,
    uptime_keep,
)
from testkit.campaigns import ha_soak, notice_failover, saturation, scale, verdicts
from testkit.common import discard_logs, machine
from testkit.sim import cli as sim_cli

# issue 79's target's shape (1,000 monitors, 3 countries) for half an hour, wakes 5 s apart
SIM_AT_SCALE = ["--seed", "1", "--monitors", "1000", "--hours", "0.5", "--quantum", "5"]
# The target's shape in a calm world (a server's faults days apart) with the settled path's
# model on (testkit.sim.settled): routine rounds of settled monitors skipped.
SIM_SETTLED = ["--seed", "1", "--monitors", "1000", "--hours", "24", "--calm", "--settled"]

BENCHMARKS: dict[str, Callable[[], bool]] = {
    "api": api.run,
    "probers": probers.run,
    "agent": agent.run,
    "exporter": exporter.run,
    "scheduler": scheduler.run,
    "seal": seal.run,
    "ingest": ingest.run,
    "ingest-cost": lambda: ingest_cost.run([]),
    "e2e": e2e.run,
    "login": login.run,
    "agents-scale": agents_scale.run,
    "roundtrip": roundtrip.run,
    "confirm": confirm.run,
    "first-page": first_page.run,
    "siblings-cost": siblings_cost.run,
    "console": console.run,
    "metrics": metrics.run,
    "lists": lists.run,
    "blocklists": blocklists.run,
    "dead-list": dead_list.run,
    "storage": storage.run,
    "store": store.run,
    "runs": runs.run,
    "reads": reads.run,
    "reports": reports.run,
    "jobs": jobs.run,
    "saturation": lambda: saturation.run([]),
    "scale": lambda: scale.run([]),
    "verdicts": lambda: verdicts.run([]),
    "ha-soak": lambda: ha_soak.run([]),
    "ha-idle": lambda: ha_idle.run([]),
    "ha-move": lambda: ha_idle.run_move([]),
    "report-rows": report_rows.run,
    "notice-failover": lambda: notice_failover.run([]),
    "uptime-keep": uptime_keep.run,
    "readiness-turns": readiness_turns.run,
    "due-moves": due_moves.run,
    "nats-cost": lambda: nats_cost.run([]),
    "nats-sync": lambda: nats_sync.run([]),
    "handoff-cost": handoff_cost.run,
    "hostile-dns": hostile_dns.run,
    "hostile-mail": hostile_mail.run,
    "fair-notices": fair_notices.run,
    # issue 79's simulation, its speed against the target: one history of 100 monitors, one
    # of the target's 1,000 monitors in 3 countries with wakes 5 s apart, and one of them in a
    # calm world with the settled path's model
    "sim": lambda: all(
        [
            sim_cli.run(["--seed", "1", "--monitors", "100", "--hours", "2", "--target"]),
            sim_cli.run([*SIM_AT_SCALE, "--target"]),
            sim_cli.run([*SIM_SETTLED, "--target"]),
        ]
    ),
}


def main(argv: list[str]) -> int:
    names = argv
    flagged: dict[str, Callable[[list[str]], bool]] = {
        "scale": scale.run,
        "scheduler": scheduler.run,
        "ingest-cost": ingest_cost.run,
        "saturation": saturation.run,
        "verdicts": verdicts.run,
        "ha-soak": ha_soak.run,
        "ha-idle": ha_idle.run,
        "ha-move": ha_idle.run_move,
        "notice-failover": notice_failover.run,
        "nats-cost": nats_cost.run,
        "nats-sync": nats_sync.run,
        "sim": sim_cli.run,
    }
    if argv[:1] and argv[0] in flagged and len(argv) > 1:
        # its flags follow its name
        chosen = flagged[argv[0]]
        BENCHMARKS[argv[0]] = lambda: chosen(argv[1:])
        names = argv[:1]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
        return 2
    discard_logs()
    print(f"machine: {machine()}", flush=True)
    results: dict[str, bool] = {}
    # the verdict and HA campaigns are `make soak`'s (minutes), nats-cost a study of settings
    # (ten minutes, no target): run by name only
    soaks = ("verdicts", "ha-soak", "notice-failover", "nats-cost")
    for name in names or [n for n in BENCHMARKS if n not in soaks]:
        started = time.monotonic()
        results[name] = BENCHMARKS[name]()
        print(f"  ({name}: {time.monotonic() - started:.0f} s)\n", flush=True)
    missed = [name for name, ok in results.items() if not ok]
    print("targets missed: " + ", ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
