"""`make bench nats-cost`: what each result costs nats-server, and what each setting adds.

The result path alone, on embedded nats-servers (one, or a cluster of three at R3), with the
product's own code on both ends: two "agents" (one connection each, a country each) publish
results through `shared.publishing.Outbox` (as agent.worker does: a `Nats-Msg-Id`, its
`RESULT_LINGER_S`, fast-ingest batches) on `mon.results.CC.smtp.MONITOR`, in groups of
JOB_BUNDLE that finish within GROUP_SPREAD_S of each other (a bundle of jobs run together); an
"ingester" pulls from the durable `ingest` through `shared.pulling.StandingPull` (batch, linger
and expiry of controller.ingest.ingester) and acks each message. RESULTS and `ingest` are made
from `shared.streams` (`stream_configs`, `ingest_consumer_config`), and each variant changes one
thing of them (or of the publishing or the acking), so its figure beside the product's says what
that thing costs the server per result.

Variants are measured in turns, each on a RESULTS made anew: WARMUP_S of load, then the server
processes' CPU (/proc/PID/task/*/schedstat, in ns) over `--window` seconds, divided by the
results acked in it, in µs; the order of the variants turns every round, so the machine's load
falls on each alike. /varz gives messages in and out per result (a cluster's routes included).
`--pprof DIR` saves each server's Go CPU profile of every window there (nats-server
`--profile`; read with `go tool pprof -top FILE`).

`python -m bench nats-cost [--replicas 1|3] [--rate N] [--window S] [--rounds N] [--variants
a,b] [--pprof DIR]`. No target: it measures (bench/results/nats-cost.md).
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api
from nats.js.api import AckPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from agent.worker import RESULT_LINGER_S
from shared import embedded
from shared.publishing import Outbox, ReplyInbox, _Replies, takes_batches
from shared.pulling import StandingPull
from shared.streams import INGEST_CONSUMER, ingest_consumer_config, stream_configs
from shared.subjects import RESULTS_STREAM, RESULTS_SUBJECTS, results_subject
from testkit.common import discard_logs, machine

COUNTRIES = ("DE", "US")
MONITORS = 1000
JOB_BUNDLE = 50
GROUP_SPREAD_S = 0.05
WARMUP_S = 5.0
# About a routine SMTP result as an agent publishes it (bench scale: ~700 bytes in per check).
PAYLOAD = json.dumps({"v": 1, "status": "up", "pad": "x" * 560}).encode()


@dataclass(frozen=True)
class Variant:
    """One way of carrying results; `product` is what the product does now."""

    name: str
    what: str
    msg_id: bool = True
    republish: bool = True
    filtered: bool = True
    storage: StorageType = StorageType.FILE
    ack: bool = True
    batches: bool = True
    sub_per_batch: bool = False
    pull_every_s: float | None = None
    burst_pull: bool = False
    linger_s: float = RESULT_LINGER_S
    duplicate_window_s: float | None = None


VARIANTS = {
    v.name: v
    for v in (
        Variant("product", "as the product does"),
        Variant(
            "before",
            "as at 7be49fb: 20 ms linger, a reply subscription per batch",
            linger_s=0.02,
            sub_per_batch=True,
        ),
        Variant("linger-20ms", "agents gather results for 20 ms", linger_s=0.02),
        Variant("linger-50ms", "agents gather results for 50 ms", linger_s=0.05),
        Variant("linger-250ms", "agents gather results for 250 ms", linger_s=0.25),
        Variant(
            "sub-per-batch",
            "a reply subscription made and removed per batch",
            sub_per_batch=True,
        ),
        Variant("no-msg-id", "an empty Nats-Msg-Id (no duplicate tracked)", msg_id=False),
        Variant("window-30s", "duplicate window 30 s instead of 5 min", duplicate_window_s=30.0),
        Variant("no-republish", "RESULTS republishes nothing to live.results.>", republish=False),
        Variant("no-filter", "ingest with no filter subject", filtered=False),
        Variant("memory", "RESULTS in memory", storage=StorageType.MEMORY),
        Variant("no-ack", "ingest acks nothing (AckNone)", ack=False),
        Variant("one-by-one", "agents publish one by one (a PubAck each)", batches=False),
        Variant(
            "pull-every",
            "ingest asks every 0.1 s for what is there (no_wait), no standing request",
            pull_every_s=0.1,
        ),
        Variant(
            "burst-pull",
            "ingest waits for one result with a standing request, then after 0.1 s asks for"
            " the rest (no_wait): delivered together",
            burst_pull=True,
        ),
    )
}


def _stream(variant: Variant, replicas: int) -> StreamConfig:
    config = next(
        c for c in stream_configs(batched=True, replicas=replicas) if c.name == RESULTS_STREAM
    )
    config = replace(config, storage=variant.storage)
    if variant.storage == StorageType.MEMORY:
        config = replace(config, max_bytes=256 * 2**20)  # within the server's memory store
    if not variant.republish:
        config = replace(config, republish=None)
    if variant.duplicate_window_s is not None:
        config = replace(config, duplicate_window=variant.duplicate_window_s)
    return config


@dataclass
class Phase:
    variant: str
    results: int
    cpu_s: list[float]
    in_msgs: int
    out_msgs: int
    seconds: float

    @property
    def us_per_result(self) -> float:
        return sum(self.cpu_s) * 1e6 / max(self.results, 1)


def _cpu_s(pid: int) -> float:
    """CPU time of every thread of `pid` in seconds, from the scheduler's nanosecond counts
    (/proc/PID/task/*/schedstat; /proc/PID/stat counts 10 ms ticks, too coarse here)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended
    return total / 1e9


def _varz(ports: list[int]) -> tuple[int, int]:
    ins = outs = 0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=10) as resp:
            varz = json.load(resp)
        ins += varz["in_msgs"]
        outs += varz["out_msgs"]
    return ins, outs


def _profile(port: int, seconds: float, out: Path) -> threading.Thread:
    def fetch() -> None:
        url = f"http://127.0.0.1:{port}/debug/pprof/profile?seconds={int(seconds)}"
        with urllib.request.urlopen(url, timeout=seconds + 30) as resp:
            out.write_bytes(resp.read())

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    return thread


class _InboxPerBatch(ReplyInbox):
    """A subscription of its own for each batch's replies, removed after it."""

    def __init__(self, nc: NATS) -> None:
        super().__init__(nc)
        self._nc_ = nc
        self._subs: dict[str, Subscription] = {}

    async def open(self, batch: str) -> _Replies:
        replies = self._batches[batch] = _Replies()
        self._subs[batch] = await self._nc_.subscribe(f"{self.prefix}.{batch}.>", cb=self.arrived)
        return replies

    async def done(self, batch: str) -> None:
        await super().done(batch)
        await self._subs.pop(batch).unsubscribe()


class _Load:
    """Agents publishing at `rate` results a second, an ingester taking and acking them."""

    def __init__(self, agents: list[NATS], ingester: NATS, variant: Variant, rate: float) -> None:
        self._variant = variant
        self._rate = rate
        self._outboxes = [
            Outbox(nc.jetstream(), linger_s=variant.linger_s, timeout_s=10.0) for nc in agents
        ]
        for box, nc in zip(self._outboxes, agents, strict=True):
            if not variant.batches:
                box._publisher._refused_at = float("inf")
            if variant.sub_per_batch:
                box._publisher._inbox = _InboxPerBatch(nc)
        self._ingester = ingester
        self.acked = 0
        self.published = 0
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _one(self, box: Outbox, cc: str, monitor: int, delay: float) -> None:
        await asyncio.sleep(delay)
        # An empty Nats-Msg-Id is no id: the server tracks no duplicate for it.
        msg_id = str(uuid.uuid4()) if self._variant.msg_id else ""
        await box.publish(results_subject(cc, "smtp", f"m{monitor}"), PAYLOAD, msg_id)
        self.published += 1

    async def publish(self) -> None:
        rnd = random.Random(7)
        every = JOB_BUNDLE * len(COUNTRIES) / self._rate
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        monitor = 0
        while not self._stop.is_set():
            for box, cc in zip(self._outboxes, COUNTRIES, strict=True):
                for _ in range(JOB_BUNDLE):
                    monitor = (monitor + 1) % MONITORS
                    task = asyncio.create_task(
                        self._one(box, cc, monitor, rnd.uniform(0, GROUP_SPREAD_S))
                    )
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            next_at += every
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def ingest(self) -> None:
        if self._variant.pull_every_s is not None:
            await self._ingest_every(self._variant.pull_every_s)
            return
        if self._variant.burst_pull:
            await self._ingest_burst()
            return
        pull = StandingPull(self._ingester, RESULTS_STREAM, INGEST_CONSUMER, expires_s=10.0)
        while not self._stop.is_set():
            msgs = await pull.take(1000, 0.5, linger_s=0.1)
            if self._variant.ack:
                for msg in msgs:
                    await msg.ack()
            self.acked += len(msgs)
        await pull.close()

    async def _ingest_every(self, every_s: float) -> None:
        """A request for whatever is there every `every_s`, answered at once."""
        nc = self._ingester
        inbox = nc.new_inbox()
        arrived: list[Msg] = []

        async def cb(msg: Msg) -> None:
            arrived.append(msg)

        sub = await nc.subscribe(inbox, cb=cb)
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{RESULTS_STREAM}.{INGEST_CONSUMER}"
        request = json.dumps({"batch": 1000, "no_wait": True}).encode()
        while not self._stop.is_set():
            await nc.publish(subject, request, inbox)
            await asyncio.sleep(every_s)
            msgs = [m for m in arrived if not (m.headers and m.headers.get(api.Header.STATUS))]
            arrived.clear()
            if self._variant.ack:
                for msg in msgs:
                    await msg.ack()
            self.acked += len(msgs)
        await sub.unsubscribe()

    async def _ingest_burst(self, linger_s: float = 0.1) -> None:
        """A standing request for one result; once it came, after `linger_s`, a request for
        what is there (no_wait), delivered together and ended by a status."""
        nc = self._ingester
        inbox = nc.new_inbox()
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def cb(msg: Msg) -> None:
            queue.put_nowait(msg)

        sub = await nc.subscribe(f"{inbox}.*", cb=cb)
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{RESULTS_STREAM}.{INGEST_CONSUMER}"
        n = 0

        async def request(body: dict[str, object]) -> list[Msg]:
            """Send one request, return its messages once its end (all, or a status) came."""
            nonlocal n
            n += 1
            reply = f"{inbox}.{n}"
            await nc.publish(subject, json.dumps(body).encode(), reply)
            got: list[Msg] = []
            while len(got) < int(str(body["batch"])):
                try:
                    msg = await asyncio.wait_for(queue.get(), 2.0)
                except TimeoutError:
                    return got
                if not (msg.headers and msg.headers.get(api.Header.STATUS)):
                    got.append(msg)  # a result comes on its own subject, through the inbox
                elif msg.subject == reply:
                    return got  # this request's end (an earlier one's status is skipped)
            return got

        while not self._stop.is_set():
            msgs = await request({"batch": 1, "expires": int(1e9)})
            if msgs:
                await asyncio.sleep(linger_s)
                msgs += await request({"batch": 999, "no_wait": True})
            if self._variant.ack:
                for msg in msgs:
                    await msg.ack()
            self.acked += len(msgs)
        await sub.unsubscribe()

    def stop(self) -> None:
        self._stop.set()


async def _phase(
    url: str,
    pids: list[int],
    monitors: list[int],
    variant: Variant,
    replicas: int,
    rate: float,
    window_s: float,
    pprof: tuple[Path, list[int], int] | None,
) -> Phase:
    admin = await nats.connect(url.split(","))
    js = admin.jetstream(timeout=30)
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(RESULTS_STREAM)
    if not takes_batches(js):
        raise SystemExit("nats-server before 2.14: no fast-ingest batches")
    await js.add_stream(_stream(variant, replicas))
    consumer = ingest_consumer_config()
    consumer.filter_subject = RESULTS_SUBJECTS if variant.filtered else None
    if not variant.ack:
        consumer.ack_policy = AckPolicy.NONE
        consumer.max_ack_pending = None
    await js.add_consumer(RESULTS_STREAM, consumer)
    agents = [await nats.connect(url.split(",")) for _ in COUNTRIES]
    ingester = await nats.connect(url.split(","))
    load = _Load(agents, ingester, variant, rate)
    tasks = [asyncio.create_task(load.publish()), asyncio.create_task(load.ingest())]
    await asyncio.sleep(WARMUP_S)
    cpu0, acked0, traffic0 = [_cpu_s(p) for p in pids], load.acked, _varz(monitors)
    started = time.monotonic()
    profiles = (
        [
            _profile(port, window_s, pprof[0] / f"{variant.name}-r{pprof[2]}-n{i}.pprof")
            for i, port in enumerate(pprof[1])
        ]
        if pprof
        else []
    )
    await asyncio.sleep(window_s)
    cpu1, acked1, traffic1 = [_cpu_s(p) for p in pids], load.acked, _varz(monitors)
    seconds = time.monotonic() - started
    load.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    for nc in (*agents, ingester, admin):
        await nc.close()
    for thread in profiles:
        thread.join(60)
    return Phase(
        variant.name,
        acked1 - acked0,
        [b - a for a, b in zip(cpu0, cpu1, strict=True)],
        traffic1[0] - traffic0[0],
        traffic1[1] - traffic0[1],
        seconds,
    )


def _servers(
    root: Path, replicas: int, profiling: bool
) -> tuple[list[embedded.NatsNode] | None, list[object], list[int], list[int], list[int], str]:
    """(cluster nodes, processes, pids, monitoring ports, profiling ports, url)."""
    if replicas == 1:
        monitor, prof = embedded.free_port(), embedded.free_port()
        proc, url = embedded.start_nats(
            root / "nats",
            monitor_port=monitor,
            extra_args=["--profile", str(prof)] if profiling else None,
        )
        return None, [proc], [proc.pid], [monitor], [prof], url
    nodes, url = embedded.start_nats_cluster(root / "cluster", replicas, profile=profiling)
    procs = [n.proc for n in nodes if n.proc is not None]
    profs = [n.profile_port for n in nodes if n.profile_port is not None]
    return nodes, list(procs), [p.pid for p in procs], [n.monitor_port for n in nodes], profs, url


def run(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(prog="python -m bench nats-cost", description=__doc__)
    parser.add_argument("--replicas", type=int, default=1, help="1: one server; 3: a cluster")
    parser.add_argument("--rate", type=float, default=200.0, help="results a second")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured a phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="names, comma-separated")
    parser.add_argument("--pprof", type=Path, help="save Go CPU profiles here")
    args = parser.parse_args(argv or [])
    names = [n for n in args.variants.split(",") if n]
    for name in names:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    discard_logs()
    print(
        f"nats-cost ({machine()}): R{args.replicas}, {args.rate:.0f} results/s,"
        f" {args.window:.0f} s windows, {args.rounds} rounds;"
        f" load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        flush=True,
    )
    phases: list[Phase] = []
    with TemporaryDirectory(prefix="mailprobe-nats-cost-") as tmp:
        profiling = args.pprof is not None
        if profiling:
            args.pprof.mkdir(parents=True, exist_ok=True)
        nodes, procs, pids, monitors, profs, url = _servers(Path(tmp), args.replicas, profiling)
        try:
            for round_no in range(args.rounds):
                order = names[round_no % len(names) :] + names[: round_no % len(names)]
                for name in order:
                    phase = asyncio.run(
                        _phase(
                            url,
                            pids,
                            monitors,
                            VARIANTS[name],
                            args.replicas,
                            args.rate,
                            args.window,
                            (args.pprof, profs, round_no) if profiling else None,
                        )
                    )
                    phases.append(phase)
                    print(
                        f"  round {round_no + 1} {name:14} {phase.us_per_result:6.1f} µs/result"
                        f" ({phase.results:,} results, {phase.results / phase.seconds:.0f}/s;"
                        f" {phase.in_msgs / max(phase.results, 1):.2f} in,"
                        f" {phase.out_msgs / max(phase.results, 1):.2f} out per result)",
                        flush=True,
                    )
        finally:
            if nodes is not None:
                for node in nodes:
                    node.kill()
            else:
                for proc in procs:
                    embedded.stop(proc)  # type: ignore[arg-type]
    base = statistics.median(p.us_per_result for p in phases if p.variant == names[0])
    print(
        f"\nnats-server CPU per result, median of {args.rounds} (each value; beside {names[0]});"
        f" load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}:"
    )
    for name in names:
        values = [p.us_per_result for p in phases if p.variant == name]
        mine = [p for p in phases if p.variant == name]
        ins = sum(p.in_msgs for p in mine) / max(sum(p.results for p in mine), 1)
        outs = sum(p.out_msgs for p in mine) / max(sum(p.results for p in mine), 1)
        print(
            f"  {name:14} {statistics.median(values):6.1f} µs"
            f" ({', '.join(f'{v:.1f}' for v in values)}) {statistics.median(values) / base:5.2f}x;"
            f" {ins:.2f} in, {outs:.2f} out; {VARIANTS[name].what}"
        )
    return True
