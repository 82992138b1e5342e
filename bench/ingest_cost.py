"""Ingest cost: the ingester's own CPU per result, in batches the size a live rate gives.

`bench/ingest.py` measures throughput (a backlog of 200,000 in batches of 1,000); at a live
rate (200 checks/s) the ingester stores batches of tens of results, where what a batch costs
whatever its size (a transaction, its statements, the fetch, the acks) and what each message
costs through nats-py weigh as much as the results' own decoding and encoding. This bench
stores RESULTS results of MONITORS SMTP monitors (DE and US, one in ten down, the rest saying
the same as their monitor's previous result, as routine rounds do), published before the
ingester starts, in batches of each of BATCHES (`Ingester`'s `batch`: deterministic, as a
backlog always fills a batch), and prints this process's CPU time per result over the drain
(only the ingester runs in it meanwhile: PostgreSQL and NATS are processes of their own, and
their CPU is not counted). Each batch size is run ROUNDS times in turns, the minimum kept.

`python -m bench ingest-cost [--results N] [--batches 50,1000] [--rounds 3] [--callgrind]
[--cprofile SORT] [--py-spy PREFIX]`: `--cprofile` and `--py-spy` profile the drains only;
`--callgrind` is for a run under `valgrind --tool=callgrind --instr-atstart=no`: the drains
(with `--alerter`: the alerter's passes) alone are counted (instrumentation switched on and off
around each with callgrind_control); for the drains, the instructions per result are the
difference of two drains (RESULTS and twice that) over RESULTS, so start-up falls out. No
target: it prints figures for bench/results.
"""

import argparse
import asyncio
import cProfile
import gc
import multiprocessing
import os
import pstats
import signal
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import asyncpg
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from bench.ingest import drained, publish
from controller.alerting.alerter import Alerter
from controller.db.pool import create_pool
from controller.ingest import ingester as ingest_worker
from controller.ingest.ingester import Ingester
from shared.clock import WALL
from shared.loop import run_loop
from shared.messages import Phases, encode
from shared.streams import ensure_streams
from shared.subjects import results_subject
from shared.timefmt import utcnow
from testkit.alerting.wired import wired_alerter
from testkit.common import (
    JOB_IDS,
    Pipes,
    cpu_s,
    discard_logs,
    machine,
    seed_monitors,
    smtp_result,
)

MONITORS = 1000
COUNTRIES = ("DE", "US")
RESULTS = 4000
BATCHES = (50, 1000)
ROUNDS = 3
# --live: a scheduler pass every PASS_S sends its jobs; their results come over SPREAD_S.
PASS_S = 0.5
SPREAD_S = 0.1


def _messages(
    ids: list[str], count: int, first: int, down: bool = True
) -> list[tuple[str, bytes, str]]:
    """Results `first`..`first + count`, every monitor and country in turn, round after round
    (a round every 10 s, the latest rounds a few minutes ago); one in ten down unless not
    `down`."""
    out = []
    per_round = len(ids) * len(COUNTRIES)
    base = utcnow().replace(microsecond=0) - timedelta(minutes=20)
    for i in range(first, first + count):
        public_id = ids[i % len(ids)]
        cc = COUNTRIES[(i // len(ids)) % len(COUNTRIES)]
        at = base + timedelta(seconds=10 * (i // per_round))
        up = not down or (i // per_round + i) % 10 != 0
        res = smtp_result(
            public_id,
            cc,
            at,
            status="up" if up else "down",
            error_kind=None if up else "refused",
            message="ok" if up else "connection refused by mx.example.com port 25",
            banner="220 mx.example.com ESMTP Postfix" if up else None,
            response_time_ms=41.5 + i % 7,
            phases=Phases(dns_ms=1.2, connect_ms=10.5, greeting_ms=15.0 + i % 5),
            address="192.0.2.10",
            capabilities=["PIPELINING", "SIZE 10240000", "8BITMIME"] if up else None,
        )
        out.append((results_subject(cc, "smtp", public_id), encode(res), res.job_id))
    return out


def _callgrind(on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
        check=True,
        capture_output=True,
    )


async def _spy(prefix: str | None, tag: str) -> subprocess.Popen[bytes] | None:
    """py-spy recording this process (raw) into PREFIX.TAG.N until `_unspy`."""
    if prefix is None:
        return None
    spy = subprocess.Popen(  # noqa: ASYNC220 (started once, before what it measures)
        [*("py-spy", "record", "--pid", str(os.getpid()), "--rate", "500", "--gil"),
         *("--format", "raw", "--output", f"{prefix}.{tag}.{time.monotonic_ns()}")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(1.0)  # attached
    return spy


async def _unspy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await asyncio.to_thread(spy.wait)


async def _drain(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    nc: NATS,
    batch: int,
    callgrind: bool,
    profile: cProfile.Profile | None = None,
    py_spy: str | None = None,
) -> float:
    """Store what is waiting in batches of `batch`: this process's CPU seconds."""
    ingester = Ingester(pool, nc, js, JOB_IDS, batch=batch, clock=WALL)
    stop = asyncio.Event()
    gc.collect()
    if callgrind:
        _callgrind(True)
    if profile is not None:
        profile.enable()
    spy = await _spy(py_spy, str(batch))
    cpu = time.process_time()
    task = asyncio.create_task(ingester.run(stop))
    await drained(js)
    cpu = time.process_time() - cpu
    await _unspy(spy)
    if profile is not None:
        profile.disable()
    if callgrind:
        _callgrind(False)
    stop.set()
    await task
    await ingester.close()
    return cpu


class _Counting(Ingester):
    """The ingester, counting the batches it stores."""

    batches = 0
    handling = 0.0  # CPU seconds of the process while a batch was being handled

    async def handle(self, msgs: list[Msg]) -> int:
        self.batches += 1
        cpu = time.process_time()
        try:
            return await super().handle(msgs)
        finally:
            self.handling += time.process_time() - cpu


def _publisher(url: str, msgs: list[tuple[str, bytes, str]], rate: float, ready: Any) -> None:
    """Publish `msgs` at `rate` a second as a scheduler's passes and two agents make them: a
    burst every PASS_S (a pass's jobs), its results spread over SPREAD_S (checks finishing)."""

    async def main() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream(publish_async_max_pending=10_000)
        per_pass = round(rate * PASS_S)
        step = SPREAD_S / 10
        ready.set()
        start = time.monotonic()
        futures = []
        for n, first in enumerate(range(0, len(msgs), per_pass)):
            burst = msgs[first : first + per_pass]
            for k in range(10):
                await asyncio.sleep(max(0.0, start + n * PASS_S + k * step - time.monotonic()))
                for subject, payload, job_id in burst[k::10]:
                    futures.append(
                        await js.publish_async(subject, payload, headers={"Nats-Msg-Id": job_id})
                    )
        await asyncio.gather(*futures)
        await nc.drain()

    asyncio.run(main())


async def _live(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    nc: NATS,
    url: str,
    msgs: list[tuple[str, bytes, str]],
    rate: float,
    py_spy: str | None,
    nats_pid: int,
) -> tuple[float, int, float, float]:
    """Store `msgs` published at `rate` by another process: this process's CPU seconds from
    the first publish until all is stored, the batches they took, its CPU seconds while they
    were being handled (decoded, stored, acked: `Ingester.handle`), and the NATS server's CPU
    seconds (the publisher's messages too)."""
    ingester = _Counting(pool, nc, js, JOB_IDS, clock=WALL)
    stop = asyncio.Event()
    task = asyncio.create_task(ingester.run(stop))
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    child = spawn.Process(target=_publisher, args=(url, msgs, rate, ready))
    child.start()
    spy = await _spy(py_spy, "live")
    await asyncio.to_thread(ready.wait)
    gc.collect()
    cpu, server = time.process_time(), cpu_s(nats_pid)
    await asyncio.to_thread(child.join)
    await drained(js)
    cpu, server = time.process_time() - cpu, cpu_s(nats_pid) - server
    await _unspy(spy)
    stop.set()
    await task
    await ingester.close()
    return cpu, ingester.batches, ingester.handling, server


async def _judge(alerter: Alerter, callgrind: bool = False) -> tuple[float, int]:
    """Evaluate every queued monitor (`Alerter.burst`): this process's CPU seconds, and how
    many evaluations."""
    gc.collect()
    if callgrind:
        _callgrind(True)
    cpu = time.process_time()
    evaluated = await alerter.burst()
    cpu = time.process_time() - cpu
    if callgrind:
        _callgrind(False)
    return cpu, evaluated


async def _count(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        n: int = await conn.fetchval("SELECT count(*) FROM check_results")
    return n


async def _run(args: argparse.Namespace) -> None:
    pipes = Pipes()
    live: list[tuple[float, int, float, float]] = []
    judged: list[tuple[float, int, int]] = []
    cpu: dict[tuple[int, int], list[float]] = {}
    counts = [args.results, 2 * args.results] if args.callgrind else [args.results]
    sizes = [int(b) for b in args.batches.split(",")]
    profiles = {size: cProfile.Profile() for size in sizes} if args.cprofile else {}
    try:
        ids = await seed_monitors(pipes.database_url, MONITORS, countries=list(COUNTRIES))
        pool = await create_pool(pipes.database_url, 10)
        nc = await nats.connect(pipes.nats_url)
        js = nc.jetstream(publish_async_max_pending=10_000)
        await ensure_streams(js)
        # A first drain (not counted) fills each monitor's state, as a running deployment has.
        first = len(ids) * len(COUNTRIES)
        await publish(js, _messages(ids, first, 0, not args.alerter))
        await _drain(js, pool, nc, 1000, False)
        sent = first
        if args.alerter:
            # Settled monitors come back an interval (60 s) after their evaluation: the
            # alerter's clock moves on by more than that before each pass.
            ahead = timedelta()
            alerter = wired_alerter(pool, js, JOB_IDS, clock=lambda: utcnow() + ahead)
            await _judge(alerter)  # each monitor's first evaluation: its state and cursors
            for _ in range(args.rounds):
                await publish(js, _messages(ids, args.results, sent, down=False))
                sent += args.results
                await _drain(js, pool, nc, 1000, False)
                ahead += timedelta(seconds=61)
                spy = await _spy(args.py_spy, "alerter")
                judged.append((*await _judge(alerter, args.callgrind), args.results))
                await _unspy(spy)
        if args.live:
            n = round(args.live * args.seconds)
            for _ in range(args.rounds):
                msgs = _messages(ids, n, sent)
                sent += n
                live.append(
                    await _live(
                        js, pool, nc, pipes.nats_url, msgs, args.live, args.py_spy, pipes.nats.pid
                    )
                )
        for _ in range(0 if args.live or args.alerter else 1 if args.callgrind else args.rounds):
            for size in sizes:
                for n in counts:
                    await publish(js, _messages(ids, n, sent))
                    sent += n
                    cpu.setdefault((size, n), []).append(
                        await _drain(
                            js, pool, nc, size, args.callgrind, profiles.get(size), args.py_spy
                        )
                    )
        stored = await _count(pool)
        await nc.drain()
        await pool.close()
    finally:
        pipes.close()
    print(f"ingest cost ({machine()}; load average {os.getloadavg()[0]:.2f})")
    print(f"  {stored:,} results stored, {sent:,} published")
    n = round((args.live or 0) * args.seconds)
    for used, batches, handling, server in live:
        print(
            f"  {n:,} results at {args.live:g}/s: CPU {used / n * 1e6:.1f} µs/result"
            f" ({handling / n * 1e6:.1f} handling batches, the rest fetching),"
            f" {batches} batches ({n / batches:.1f} results a batch); NATS server"
            f" {server / n * 1e6:.1f} µs/result"
        )
    for used, evaluated, n in judged:
        print(
            f"  alerter, {n:,} results of rounds complete: CPU {used / n * 1e6:.1f} µs/result,"
            f" {evaluated:,} evaluations"
        )
    for size in [] if args.live or args.alerter else sizes:
        for n in counts:
            runs = cpu[(size, n)]
            print(
                f"  batch {size:>4}, {n:,} results: CPU {min(runs) / n * 1e6:.1f} µs/result"
                f" (min of {len(runs)}: {', '.join(f'{c / n * 1e6:.1f}' for c in runs)})"
            )
    for size, profile in profiles.items():
        print(f"  cProfile, batch {size} (its overhead inflates what calls many functions):")
        pstats.Stats(profile).sort_stats(args.cprofile).print_stats(30)


def run(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(prog="python -m bench ingest-cost", description=__doc__)
    parser.add_argument("--results", type=int, default=RESULTS)
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument(
        "--live", type=float, metavar="RATE", help="results published at RATE/s meanwhile"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="with --live")
    parser.add_argument(
        "--linger", type=float, help="the ingester's LINGER_S instead of its own (with --live)"
    )
    parser.add_argument(
        "--alerter",
        action="store_true",
        help="the alerter's CPU per result instead: RESULTS stored (every one up, as most are),"
        " then every queued monitor evaluated (`Alerter.burst`)",
    )
    parser.add_argument(
        "--py-spy", metavar="PREFIX", help="py-spy each drain (raw) into PREFIX.BATCH.N"
    )
    parser.add_argument(
        "--cprofile", metavar="SORT", help="cProfile the drains; print by SORT (tottime, ...)"
    )
    args = parser.parse_args(sys.argv[2:] if argv is None else argv)
    if args.linger is not None:
        ingest_worker.LINGER_S = args.linger
    discard_logs()
    run_loop(_run(args))
    return True


if __name__ == "__main__":
    sys.exit(0 if run(sys.argv[1:]) else 1)
