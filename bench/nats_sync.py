"""`make bench nats-sync`: what JetStream's `sync_interval` costs a publisher of jobs and results.

nats-server writes file-stream messages to the page cache and fsyncs them every
`sync_interval` (2 minutes by default); `always` fsyncs every write before the PubAck. Each
variant runs on an embedded nats-server (loopback, its store on this machine's disk) made anew
with that setting, the product's streams (`shared.streams.ensure_streams`), and three loads of
PAYLOAD_BYTES messages:

- `one by one`: a publish awaits its PubAck before the next (the latency a single result or a
  trigger-check's job waits): median and 99th percentile, in ms;
- `pipelined`: SERIES messages to JOBS with PubAcks in flight (`publish_async`, as the
  scheduler's publisher), messages a second;
- `batches`: SERIES results in fast-ingest batches of BATCH (`shared.publishing.Publisher`, as
  the agents' outbox), results a second.

Beside them, the servers' CPU (all nodes', /proc/PID/task/*/schedstat) per message over the
three loads, in µs. The variants take turns for `--rounds` rounds so the machine's load falls
on each alike; the figures are the medians of the rounds. `--replicas 3` runs a cluster of
three at R3 instead.

    python -m bench nats-sync [--rounds N] [--replicas 1|3] [--variants 2m,1s,always]
"""

import argparse
import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import nats
from nats.js import JetStreamContext

from bench.nats_cost import _cpu_s
from shared import embedded
from shared.publishing import Outgoing, Publisher
from shared.streams import ensure_streams
from shared.subjects import jobs_subject, results_subject
from testkit.common import discard_logs, machine, machine_cpu_s

VARIANTS = ("2m", "1s", "always")  # 2m: nats-server's default, what deploy/ set before
PAYLOAD_BYTES = 900  # about a result's (and a sealed job's) size on the wire
LATENCY_N = 300
SERIES = 3000
BATCH = 50
ROUNDS = 3


def _config(root: Path, sync: str) -> Path:
    conf = root / "sync.conf"
    conf.write_text(f"jetstream {{\n  sync_interval: {sync}\n}}\n")
    return conf


async def _one_by_one(js: JetStreamContext, payload: bytes) -> list[float]:
    took = []
    for _ in range(LATENCY_N):
        subject = results_subject("DE", "smtp", uuid.uuid4().hex)
        started = time.perf_counter()
        await js.publish(subject, payload, headers={"Nats-Msg-Id": uuid.uuid4().hex})
        took.append((time.perf_counter() - started) * 1000)
    return took


async def _pipelined(js: JetStreamContext, payload: bytes) -> float:
    started = time.perf_counter()
    acks = [
        await js.publish_async(
            jobs_subject("DE"), payload, headers={"Nats-Msg-Id": uuid.uuid4().hex}
        )
        for _ in range(SERIES)
    ]
    await asyncio.gather(*acks)
    return SERIES / (time.perf_counter() - started)


async def _batches(js: JetStreamContext, payload: bytes) -> float:
    publisher = Publisher(js, timeout_s=30)
    started = time.perf_counter()
    for _ in range(SERIES // BATCH):
        out = [
            Outgoing(results_subject("US", "smtp", uuid.uuid4().hex), payload, uuid.uuid4().hex)
            for _ in range(BATCH)
        ]
        failed = [e for e in await publisher.publish(out) if e is not None]
        if failed:
            raise RuntimeError(f"batch publish failed: {failed[0]!r}")
    return SERIES // BATCH * BATCH / (time.perf_counter() - started)


async def _loads(url: str, replicas: int) -> tuple[list[float], float, float]:
    nc = await nats.connect(servers=url.split(","))
    try:
        js = nc.jetstream(publish_async_max_pending=SERIES)
        await ensure_streams(js, replicas=replicas)
        payload = os.urandom(PAYLOAD_BYTES // 2).hex().encode()
        return (
            await _one_by_one(js, payload),
            await _pipelined(js, payload),
            await _batches(js, payload),
        )
    finally:
        await nc.close()


Seen = tuple[list[float], float, float, float]  # latencies, two rates, server µs a message


def _measured(url: str, replicas: int, pids: list[int]) -> Seen:
    before = sum(_cpu_s(pid) for pid in pids)
    latencies, pipelined, batches = asyncio.run(_loads(url, replicas))
    spent = sum(_cpu_s(pid) for pid in pids) - before
    messages = LATENCY_N + SERIES + SERIES // BATCH * BATCH
    return latencies, pipelined, batches, spent / messages * 1e6


def _one_variant(root: Path, sync: str, replicas: int) -> Seen:
    conf = _config(root, sync)
    if replicas == 1:
        proc, url = embedded.start_nats(root / "nats", config=conf)
        try:
            return _measured(url, 1, [proc.pid])
        finally:
            embedded.stop(proc)
    nodes, url = embedded.start_nats_cluster(root / "cluster", replicas, config=conf)
    try:
        return _measured(url, replicas, [n.proc.pid for n in nodes if n.proc is not None])
    finally:
        for node in nodes:
            node.kill()


def run(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(prog="bench nats-sync", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--replicas", type=int, choices=(1, 3), default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv or [])
    variants = args.variants.split(",")
    discard_logs()
    seen: dict[str, list[Seen]] = {v: [] for v in variants}
    before = machine_cpu_s()
    load_before = os.getloadavg()[0]
    for turn in range(args.rounds):
        order = variants[turn % len(variants) :] + variants[: turn % len(variants)]
        for sync in order:
            with TemporaryDirectory(prefix="mailprobe-nats-sync-", dir=_disk()) as tmp:
                seen[sync].append(_one_variant(Path(tmp), sync, args.replicas))
    after = machine_cpu_s()
    busy = (after[0] - before[0]) / max(after[1] - before[1], 1e-9)
    print(
        f"nats-sync: {machine()}; R{args.replicas}; {args.rounds} rounds;"
        f" machine {busy:.0%} busy, load {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(
        f"  {'sync_interval':<14}{'p50 ms':>8}{'p99 ms':>8}{'pipelined/s':>13}{'batches/s':>11}"
        f"{'server µs/msg':>15}"
    )
    for sync in variants:
        rounds = seen[sync]
        lat = sorted(x for r in rounds for x in r[0])
        p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
        pipe = statistics.median(r[1] for r in rounds)
        batch = statistics.median(r[2] for r in rounds)
        cpu = statistics.median(r[3] for r in rounds)
        print(f"  {sync:<14}{p50:>8.2f}{p99:>8.2f}{pipe:>13.0f}{batch:>11.0f}{cpu:>15.1f}")
    return True


def _disk() -> str | None:
    """A folder on a real disk (fsync costs nothing on tmpfs): TMPDIR unless it is tmpfs."""
    tmp = os.environ.get("TMPDIR", "/tmp")
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[1] == tmp and fields[2] == "tmpfs":
                return str(Path.home())
    return None


if __name__ == "__main__":
    run()
