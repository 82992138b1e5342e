"""HA idle: what a 3-node JetStream cluster with the product's R3 streams spends doing nothing,
with a `jobs-CC` for every configured country against one for the countries in use only.

Three embedded nats-servers on loopback (`shared.embedded.start_nats_cluster`, one Go thread
each), JOBS, RESULTS and EVENTS at R3 (`ensure_streams`). Measured in turn, each over WINDOW_S
seconds after SETTLE_S, with no client doing anything: the streams alone; CONFIGURED countries'
`jobs-CC` (what a controller wrote at start before consumers followed the countries in use);
IN_USE countries' (what it writes now when IN_USE countries have agents; JetStream removed the
others after their idle time, done here by deleting them). Then the same three on one server
at R1 beside it. Printed: each server's CPU in ms per second (/proc), the cluster's total, and
the consumers' share per consumer. Target: the in-use set costs the cluster at most half of the
configured set (`make bench ha-idle`; bench/results/ha-idle.md)."""

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import nats
from nats.js import JetStreamContext

from controller.runtime.stream_snapshots import Moved, move_streams
from shared import embedded
from shared.streams import (
    ensure_jobs_consumers,
    ensure_streams,
    ingest_consumer_config,
    jobs_consumer_name,
)
from shared.subjects import JOBS_STREAM, RESULTS_STREAM
from testkit.common import cpu_s, discard_logs, machine

CONFIGURED = 50
IN_USE = 5
SETTLE_S = 5.0
WINDOW_S = 20.0
# Country codes for the consumers' names; only their count matters.
COUNTRIES = [f"{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(CONFIGURED)]


def _idle_ms_per_s(pids: Sequence[int], window_s: float) -> list[float]:
    """Each process's CPU in ms per second over `window_s`, after SETTLE_S."""
    time.sleep(SETTLE_S)
    before = [cpu_s(pid) for pid in pids]
    started = time.monotonic()
    time.sleep(window_s)
    elapsed = time.monotonic() - started
    return [(cpu_s(pid) - b) * 1000 / elapsed for pid, b in zip(pids, before, strict=True)]


async def _consumers(js: JetStreamContext, countries: Sequence[str]) -> None:
    """Exactly `countries`' `jobs-CC` on JOBS."""
    wanted = {jobs_consumer_name(cc) for cc in countries}
    for info in await js.consumers_info(JOBS_STREAM):
        if info.name not in wanted:
            await js.delete_consumer(JOBS_STREAM, info.name)
    await ensure_jobs_consumers(js, countries)


def _measure(url: str, pids: Sequence[int], replicas: int, window_s: float) -> list[list[float]]:
    """Per phase (streams only, configured, in use): each server's ms/s."""

    async def setup(countries: Sequence[str] | None) -> None:
        nc = await nats.connect(url.split(","))
        try:
            js = nc.jetstream(timeout=10)
            if countries is None:
                await ensure_streams(js, replicas=replicas)
            else:
                await _consumers(js, countries)
        finally:
            await nc.close()

    phases: list[list[float]] = []
    for countries in (None, COUNTRIES, COUNTRIES[:IN_USE]):
        asyncio.run(setup(countries))
        phases.append(_idle_ms_per_s(pids, window_s))
    return phases


def run(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(prog="python -m bench ha-idle")
    parser.add_argument("--window", type=float, default=WINDOW_S, help="seconds per phase")
    args = parser.parse_args(argv or [])
    discard_logs()
    with TemporaryDirectory(prefix="mailprobe-ha-idle-") as tmp:
        nodes, url = embedded.start_nats_cluster(Path(tmp) / "cluster")
        try:
            pids = [n.proc.pid for n in nodes if n.proc is not None]
            r3 = _measure(url, pids, 3, args.window)
        finally:
            for node in nodes:
                node.kill()
        proc, single_url = embedded.start_nats(Path(tmp) / "single")
        try:
            r1 = _measure(single_url, [proc.pid], 1, args.window)
        finally:
            embedded.stop(proc)
    labels = (
        "streams only",
        f"{CONFIGURED} jobs-CC (every configured country)",
        f"{IN_USE} jobs-CC (countries in use)",
    )
    print(f"\nHA idle: CPU of nats-server doing nothing ({machine()}; {args.window:.0f} s each)")
    print(f"{'':48} {'R3: per server (ms/s)':>26} {'R3 total':>9} {'R1 one server':>14}")
    for label, servers, single in zip(labels, r3, r1, strict=True):
        each = " ".join(f"{v:5.1f}" for v in servers)
        print(f"{label:48} {each:>26} {sum(servers):9.1f} {single[0]:14.1f}")
    base, configured, in_use = (sum(p) for p in r3)
    per_consumer = (configured - base) / CONFIGURED
    print(f"R3: each jobs-CC costs the cluster {per_consumer:.2f} ms/s when idle")
    ok = in_use <= configured / 2
    print(
        f"target: the in-use set at most half the configured set's idle CPU"
        f" ({in_use:.1f} vs {configured:.1f} ms/s): {'ok' if ok else 'MISSED'}"
    )
    return ok


# `python -m bench ha-move`: what `controller streams-move` takes per stored result.
MOVE_RESULTS = 200_000
RESULT_BYTES = 300  # about a routine SMTP result as an agent publishes it


def run_move(argv: list[str] | None = None) -> bool:
    """Time `move_streams` of a RESULTS of MOVE_RESULTS results (and its `ingest` halfway
    through) from one server onto a 3-node cluster at R3; the downtime a move costs is this
    per stream, controllers and agents stopped meanwhile."""
    parser = argparse.ArgumentParser(prog="python -m bench ha-move")
    parser.add_argument("--results", type=int, default=MOVE_RESULTS)
    args = parser.parse_args(argv or [])
    discard_logs()
    payload = b"x" * RESULT_BYTES

    async def fill(url: str) -> int:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream(timeout=30)
            await ensure_streams(js, replicas=1)
            for start in range(0, args.results, 1000):
                acks = [
                    await js.publish_async(f"mon.results.DE.smtp.m{i % 997}", payload)
                    for i in range(start, min(start + 1000, args.results))
                ]
                await asyncio.gather(*acks)
            await js.add_consumer(RESULTS_STREAM, ingest_consumer_config())
            info = await js.stream_info(RESULTS_STREAM)
            return info.state.bytes

        finally:
            await nc.close()

    async def move(source_url: str, target_url: str, workdir: Path) -> list[Moved]:
        source, target = await nats.connect(source_url), await nats.connect(target_url.split(","))
        try:
            return await move_streams(source, target, 3, [RESULTS_STREAM], workdir)
        finally:
            await source.close()
            await target.close()

    with TemporaryDirectory(prefix="mailprobe-ha-move-") as tmp:
        proc, single = embedded.start_nats(Path(tmp) / "single")
        nodes, cluster = embedded.start_nats_cluster(Path(tmp) / "cluster")
        try:
            stored = asyncio.run(fill(single))
            started = time.monotonic()
            [moved] = asyncio.run(move(single, cluster, Path(tmp) / "work"))
            took = time.monotonic() - started
        finally:
            embedded.stop(proc)
            for node in nodes:
                node.kill()
    mib = stored / 2**20
    print(f"\nHA move: RESULTS from one server onto three at R3 ({machine()})")
    print(
        f"  {moved.messages:,} results, {mib:.0f} MiB stored: {took:.1f} s"
        f" ({mib / took:.1f} MiB/s, {took / mib:.2f} s per MiB)"
    )
    ok = moved.messages == args.results and moved.replicas == 3
    print(f"  every result moved, on 3 servers: {'ok' if ok else 'MISSED'}")
    return ok
