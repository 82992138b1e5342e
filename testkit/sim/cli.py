"""`python -m testkit.sim` (`make sim`, `make bench sim`): seeded histories of the simulated
control plane, their figures and each failing seed's replay command.

    python -m testkit.sim [--seed N | SIM_SEEDS=1-20] [--monitors 10] [--hours 24]
        [--countries DE,FR,US] [--busy | --calm] [--settled | --compare] [--at HH:MM:SS ...]
        [--target]

PostgreSQL is an embedded server of its own (or SIM_DATABASE_URL's); one database is migrated
once and copied for each seed. `--at` runs each seed once per time of day given (UTC; the
history starts then on its anchor's date: `make clock-sweep`). `--target` also prints the speed
against issue 79's target: a 30-day history of 1,000 monitors in 3 countries checked in under
2 minutes of one core. `--settled` runs the settled path's model (testkit.sim.settled);
`--compare` plays each seed with it off and on, and a difference fails the seed. SIGTERM stops
it as Ctrl-C does: the histories are cancelled, the embedded server stopped and its folder
removed, and it exits 1. It runs on the loop `serve` runs on (shared.loop.run_loop: uvloop, the
garbage collector tuned), so its CPU is the control plane's as deployed."""

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import asyncpg
import psutil
import structlog

from controller.db.migrate import migrate
from controller.db.pool import connect
from shared import embedded
from shared.loop import run_loop
from testkit.sim import settled
from testkit.sim.run import Run, _with_database, describe, env_seeds, simulate
from testkit.sim.world import Shape, World

# Issue 79's target: monitor-days (30 days x 1,000 monitors) per 2 minutes of one core.
TARGET_MONITOR_DAYS_PER_CPU_MINUTE = 30 * 1000 / 2
CPU_READS = 20


def _server_cpu(pgdata: Path) -> float:
    """CPU seconds the embedded server's processes used so far: its postmaster's, its children's
    alive now, and those of the children it has reaped (counted in the postmaster's). A child
    that ends while it is read is read again: it is then either listed or reaped, never both."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return 0.0
    server = psutil.Process(int(pid_file.read_text().split()[0]))
    for _ in range(CPU_READS):
        try:
            children = server.children(recursive=True)
            total = 0.0
            for p in [server, *children]:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            return total
        except psutil.NoSuchProcess:  # a zombie too, until the postmaster reaps it
            time.sleep(0.05)
    raise RuntimeError(f"the server's CPU read {CPU_READS} times, a process ending each time")


async def _histories(
    url: str, pgdata: Path, shape: Shape, seeds: list[int], args: argparse.Namespace
) -> tuple[list[Run], float, float, float]:
    """Every seed's history (at each time of day asked) on the server at `url`, each printed as
    it ends: the runs, the wall seconds, this process's CPU and the server's."""
    template = "sim_template"
    admin = await asyncpg.connect(url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{template}"')
    await admin.execute(f'CREATE DATABASE "{template}"')
    await admin.close()
    conn = await connect(_with_database(url, template))
    await migrate(conn)
    await conn.close()
    runs: list[Run] = []
    started, cpu, server = time.perf_counter(), time.process_time(), _server_cpu(pgdata)
    shapes = [replace(shape, at=at) for at in args.at] if args.at else [shape]
    for seed, each in ((seed, each) for each in shapes for seed in seeds):
        played = [
            await simulate(url, seed, each, template=template, quantum=args.quantum, settled=on)
            for on in ((False, True) if args.compare else (args.settled,))
        ]
        if args.compare:
            compare(played[0], played[1], World.of(seed, each), args.quantum)
        runs += played
        for run in played:
            _print(run, " --compare" if args.compare else "")
    wall = time.perf_counter() - started
    return runs, wall, time.process_time() - cpu, _server_cpu(pgdata) - server


def compare(off: Run, on: Run, world: World, quantum: float) -> None:
    """The same history with the settled path's model off and on: where they part is a miss of
    the run with it on (`settled.differences`, three quanta for an opening's three wakes)."""
    assert off.observed is not None and on.observed is not None
    found = settled.differences(
        off.observed,
        on.observed,
        3 * quantum,
        world.shape.interval,
        settled.edges(world, off.struck + on.struck),
    )
    on.misses += [f"with the model on, not as off: {line}" for line in found]


def _print(run: Run, replay: str) -> None:
    """One history's figures, and what it got wrong with its replay command."""
    print(describe(run), flush=True)
    if not run.ok:
        for line in (run.misses + run.lost)[:20]:
            print(f"  {line}")
        for name, items in run.figures.findings():
            for line in items[:5]:
                print(f"    {name}: {line}")
        print(f"  replay: {run.replay()}{replay}", flush=True)


async def _main(args: argparse.Namespace) -> bool:
    seeds = [args.seed] if args.seed is not None else env_seeds("1-3")
    shape = Shape(
        monitors=args.monitors, hours=args.hours, countries=tuple(args.countries.split(","))
    )
    if args.busy:
        shape = shape.made_busy()
    if args.calm:
        shape = shape.made_calm()
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    with tempfile.TemporaryDirectory(prefix="mailprobe-sim-") as tmp:
        pgdata = Path(tmp) / "pg"
        handle = None
        url = os.environ.get("SIM_DATABASE_URL")
        if not url:
            handle, url = embedded.start_postgres(pgdata, throwaway=True)
        try:
            runs, wall, own, pg = await _histories(url, pgdata, shape, seeds, args)
        finally:
            if handle is not None:  # stopped on an error or a signal too, not left running
                handle.cleanup()
    failed = [r for r in runs if not r.ok]
    monitor_days = sum(r.shape.monitors * r.shape.hours / 24 for r in runs)
    cpu_min = (own + pg) / 60
    print(
        f"sim: {len(runs)} histories, {len(failed)} failed; checks: "
        f"{sum(r.figures.outages for r in runs)} outages owed, "
        f"{sum(r.figures.monitor_incidents for r in runs)} incidents, "
        f"{sum(r.results for r in runs)} results judged; "
        f"{monitor_days:.1f} monitor-days ({sum(r.shape.hours for r in runs) / 24:.2f} days of"
        f" {shape.monitors} monitors) in {wall:.1f} s wall, CPU {own:.1f} s here +"
        f" {pg:.1f} s PostgreSQL ({own / max(own + pg, 1e-9):.0%} Python) ="
        f" {monitor_days / max(cpu_min, 1e-9):.1f} monitor-days per CPU-minute,"
        f" {len(runs) / max(cpu_min, 1e-9):.2f} histories per CPU-minute"
    )
    if args.target:
        speed = monitor_days / max(cpu_min, 1e-9)
        print(
            f"target: 30 days x 1,000 monitors x 3 countries in 2 CPU-minutes ="
            f" {TARGET_MONITOR_DAYS_PER_CPU_MINUTE:.0f} monitor-days per CPU-minute; now"
            f" {speed:.1f} ({speed / TARGET_MONITOR_DAYS_PER_CPU_MINUTE:.2%} of it): such a"
            f" history would take {30 * 1000 / max(speed, 1e-9):.0f} CPU-minutes"
        )
    for r in failed:
        print(f"FAILED seed {r.seed}: {r.replay()}{' --compare' if args.compare else ''}")
    met = not args.target or monitor_days / max(cpu_min, 1e-9) >= TARGET_MONITOR_DAYS_PER_CPU_MINUTE
    return not failed and met


def _time_of_day(text: str) -> str:
    """`text` when it is a time of day as HH:MM:SS."""
    try:
        time.strptime(text, "%H:%M:%S")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--at takes HH:MM:SS times of day, not {text!r}"
        ) from None
    return text


def run(argv: list[str]) -> bool:
    """Run the histories `argv` asks for; True when every one passed (and, with `--target`,
    the speed target was met)."""
    # The product's info lines (a line per round batch) would drown the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(prog="python -m testkit.sim", description=__doc__)
    parser.add_argument("--seed", type=int, help="one seed (else SIM_SEEDS, default 1-3)")
    parser.add_argument("--monitors", type=int, default=10)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--countries", default="DE,FR,US")
    parser.add_argument("--busy", action="store_true", help="a fault every few intervals")
    parser.add_argument(
        "--calm", action="store_true", help="a server's faults days apart (the speed target's)"
    )
    parser.add_argument(
        "--settled",
        action="store_true",
        help="skip settled monitors' rounds while the world leaves them alone (the model)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="play each seed with the model off and on; a difference fails the seed",
    )
    parser.add_argument(
        "--at",
        nargs="+",
        type=_time_of_day,
        metavar="HH:MM:SS",
        help="start each seed at these times of day (UTC)",
    )
    parser.add_argument(
        "--quantum", type=float, default=1.0, help="seconds between the parts' passes at least"
    )
    parser.add_argument("--target", action="store_true", help="print the speed against the target")
    try:
        return run_loop(_main(parser.parse_args(argv)))
    except asyncio.CancelledError:
        print("sim: stopped by SIGTERM before its histories ended", file=sys.stderr)
        return False
