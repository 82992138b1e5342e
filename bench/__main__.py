"""`make bench`: every benchmark with its target; exits 1 when a target is missed.

`python -m bench NAME ...` runs only the named ones (api, probers, agent, scheduler, seal, ingest,
e2e, login, agents-scale, roundtrip, confirm, console, metrics, lists, exporter, storage,
store, runs, reads, jobs, saturation, scale);
`python -m bench scale --help` lists the scale benchmark's flags (monitors, interval, window,
...), which follow its name; `python -m bench saturation --help` the saturation one's.
"""

import sys
import time
from collections.abc import Callable

from bench import (
    agent,
    agents_scale,
    api,
    confirm,
    console,
    e2e,
    exporter,
    ingest,
    jobs,
    lists,
    login,
    metrics,
    probers,
    reads,
    roundtrip,
    runs,
    saturation,
    scale,
    scheduler,
    seal,
    storage,
    store,
)
from bench.common import discard_logs, machine

BENCHMARKS: dict[str, Callable[[], bool]] = {
    "api": api.run,
    "probers": probers.run,
    "agent": agent.run,
    "exporter": exporter.run,
    "scheduler": scheduler.run,
    "seal": seal.run,
    "ingest": ingest.run,
    "e2e": e2e.run,
    "login": login.run,
    "agents-scale": agents_scale.run,
    "roundtrip": roundtrip.run,
    "confirm": confirm.run,
    "console": console.run,
    "metrics": metrics.run,
    "lists": lists.run,
    "storage": storage.run,
    "store": store.run,
    "runs": runs.run,
    "reads": reads.run,
    "jobs": jobs.run,
    "saturation": lambda: saturation.run([]),
    "scale": lambda: scale.run([]),
}


def main(argv: list[str]) -> int:
    names = argv
    if argv[:1] == ["scale"] and len(argv) > 1:
        # its flags follow its name
        BENCHMARKS["scale"] = lambda: scale.run(argv[1:])
        names = ["scale"]
    if argv[:1] == ["saturation"] and len(argv) > 1:
        BENCHMARKS["saturation"] = lambda: saturation.run(argv[1:])
        names = ["saturation"]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
        return 2
    discard_logs()
    print(f"machine: {machine()}", flush=True)
    results: dict[str, bool] = {}
    for name in names or list(BENCHMARKS):
        started = time.monotonic()
        results[name] = BENCHMARKS[name]()
        print(f"  ({name}: {time.monotonic() - started:.0f} s)\n", flush=True)
    missed = [name for name, ok in results.items() if not ok]
    print("targets missed: " + ", ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
