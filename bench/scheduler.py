"""Scheduler: MONITORS active monitors at a 60 s interval, one country each, against real NATS
and PostgreSQL (embedded, on this machine).

`python -m bench scheduler [--monitors N] [--interval S] [--countries DE,US] [--tenants N]
[--window S] [--profile FILE]` runs it at another size (no target then: it prints the figures
and the CPU per job, the measure of a change to the scheduler's cost, run side by side with the
code before). With flags its agents (one per country) report their tenants' load and take
bundles and `Preempt` requests, as agents do, so admission decides every job as in production;
`--tenants` spreads the monitors over that many organizations; `--profile` records the
scheduler process with py-spy over the window (`--native`, raw format).

Target (issue 3): 300,000 monitors at 60 s -> >= 5,000 jobs/s from one controller process at
<= 50% of a core, lateness (publish - due) p99 <= 100 ms.

The scheduler runs alone in a child process (its CPU is that process's CPU time over the measured
window). Every monitor is due once per 60 s, so over a 60 s window each one must be published
exactly once: jobs/s = jobs in JOBS (read back after the run) whose scheduledAt falls in the
window / 60 s, and a job missing from the window fails the run. Lateness = when a core NATS
subscriber in this process received the job - its scheduledAt (a core subscription may drop
messages under load, so it is not what the rate counts).
"""

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from controller.db.pool import connect, create_pool
from controller.fleet.live import LiveAgents
from controller.monitors.validation import COUNTRIES
from controller.runtime.pipeline import PUBLISH_ASYNC_MAX_PENDING
from controller.scheduling import rules as schedule
from controller.scheduling.plan import TENANT_PURPOSE, tenant
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from shared.clock import WALL
from shared.loop import run_loop
from shared.messages import (
    FEATURE_BUNDLES,
    FEATURE_PREEMPT,
    FEATURE_PREEMPT_CARRY,
    FEATURE_TENANT_LOADS,
    AgentHeartbeat,
    TenantLoad,
    bundle_parts,
    encode,
)
from shared.pulling import StandingPull
from shared.streams import ensure_jobs_consumers, ensure_streams, jobs_consumer_name
from shared.subjects import JOBS_STREAM, heartbeats_subject
from shared.timefmt import iso_ms, utcnow
from testkit.campaigns import scale_profile
from testkit.common import Pipes, discard_logs, machine, percentile, seed_monitors, verdict
from testkit.scheduling import wired_scheduler

MONITORS = 300_000
INTERVAL = 60
COUNTRY = "DE"
LEAD_S = 8.0  # the first monitors fall due this long after seeding (planning takes a few s)
WARMUP_S = 2.0  # from then to the measured window
WINDOW_S = 60.0
BEAT_S = 1.0  # the bench agent's heartbeat interval
TARGET_RATE = 5_000
TARGET_CPU = 0.5
TARGET_LATE_P99_MS = 100.0
SECRETS_KEY = "Aq1QnlR2gU7GxwqZ6fZ7Y8Yk5o3wB8vQ1bq0yVJf2lE="
AGENT_CAPACITY = 500  # AGENT_CONCURRENCY's default: an agent's slots
# What each organization's checks hold at an agent, as a beat says (a 50 ms check at 10 s).
TENANT_HELD, TENANT_USAGE, TENANT_CHECKS = 2, 30.0, 600.0


@dataclass(frozen=True)
class Size:
    """What the run schedules; `agents_like`: its agents beat as agents do (tenant loads,
    bundles, preemption), else as the target's run has them (a plain beat)."""

    monitors: int = MONITORS
    interval: int = INTERVAL
    countries: tuple[str, ...] = (COUNTRY,)
    tenants: int = 1
    window_s: float = WINDOW_S
    agents_like: bool = False
    profile: Path | None = None
    features: list[str] = field(default_factory=list)

    @property
    def jobs_per_window(self) -> float:
        return self.monitors * len(self.countries) * self.window_s / self.interval


class _Due(msgspec.Struct, rename="camel"):
    scheduled_at: str


def _dues(data: bytes, decoder: msgspec.json.Decoder[_Due]) -> list[float]:
    """The scheduledAt (epoch seconds) of the jobs a JOBS message carries (one, or a bundle)."""
    parts = bundle_parts(data) or [data]
    return [datetime.fromisoformat(decoder.decode(p).scheduled_at).timestamp() for p in parts]


async def _plan(database_url: str, ids: list[str], first: datetime, interval: int) -> None:
    """next_due_at as the scheduler's plan_new sets it (the monitor's grid), from `first` on."""
    dues = [
        schedule.next_due(schedule.phase_ms(public_id, interval), interval, first)
        for public_id in ids
    ]
    conn = await connect(database_url)
    try:
        await conn.execute(
            "UPDATE monitors m SET next_due_at = u.due"
            " FROM unnest($1::uuid[], $2::timestamptz[]) AS u(public_id, due)"
            " WHERE m.public_id = u.public_id",
            ids,
            dues,
        )
        await conn.execute("VACUUM ANALYZE monitors")
    finally:
        await conn.close()


def _child(
    database_url: str,
    nats_url: str,
    window: tuple[float, float],
    countries: tuple[str, ...],
    out: Connection,
) -> None:
    discard_logs()
    out.send(run_loop(_schedule(database_url, nats_url, window, countries)))


async def _schedule(
    database_url: str, nats_url: str, window: tuple[float, float], countries: tuple[str, ...]
) -> float:
    """Run the scheduler until the window has passed; its CPU seconds inside the window."""
    pool = await create_pool(database_url, 4)
    nc = await nats.connect(nats_url)
    js = nc.jetstream(publish_async_max_pending=PUBLISH_ASYNC_MAX_PENDING)
    await ensure_streams(js)
    await ensure_jobs_consumers(js, sorted(COUNTRIES))  # as the controller has them
    # The bench's agent beats every BEAT_S: the view is complete after one and a half.
    agents = LiveAgents(nc, warmup_s=1.5 * BEAT_S, wall=WALL.now)
    await agents.start()
    # No key directory: these monitors have no credentials (bench/seal.py measures sealing).
    scheduler = wired_scheduler(
        pool, js, agents, SecretBox(SECRETS_KEY), CountryKeys(None), default_countries=2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    await asyncio.sleep(max(0.0, window[0] - time.time()))
    cpu0 = time.process_time()
    await asyncio.sleep(max(0.0, window[1] - time.time()))
    cpu = time.process_time() - cpu0
    await asyncio.sleep(1.0)  # let the jobs due at the window's end go out
    stop.set()
    await task
    await nc.drain()
    await pool.close()
    return cpu


async def _published(
    nc: NATS, js: nats.js.JetStreamContext, size: Size, decoder: msgspec.json.Decoder[_Due]
) -> list[float]:
    """The scheduledAt (epoch seconds) of every job in JOBS: what was published, whatever a
    live subscriber may have missed. No agent ran here, so all of them are still there; they
    are read (and acked, as an agent would) through the countries' consumers."""
    dues: list[float] = []
    for cc in size.countries:
        info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name(cc))
        total = info.num_pending + info.num_ack_pending
        puller = StandingPull(nc, JOBS_STREAM, jobs_consumer_name(cc), expires_s=2.0)
        read = 0
        while read < total:
            msgs = await puller.take(1000, 2.0)
            if not msgs:
                raise SystemExit(f"JOBS holds {total} messages for {cc}, only {read} read")
            for msg in msgs:
                dues += _dues(msg.data, decoder)
                await msg.ack()
            read += len(msgs)
        await puller.close()
    return dues


async def _heartbeats(nc: NATS, size: Size, orgs: list[int], stop: asyncio.Event) -> None:
    """One live agent per country, as agents heartbeat: with `agents_like`, saying what each
    organization (`orgs`, their ids) holds there and what its checks take, as agents do."""
    now = iso_ms(utcnow())
    tenants = []
    if size.agents_like:
        key = SecretBox(SECRETS_KEY).subkeys(TENANT_PURPOSE)[0]
        tenants = [
            TenantLoad(tenant(key, org), TENANT_HELD, TENANT_USAGE * (1 + n % 3), TENANT_CHECKS)
            for n, org in enumerate(orgs)
        ]
    beats = {
        cc: encode(
            AgentHeartbeat(
                agent_id=f"bench-{cc}",
                country=cc,
                started_at=now,
                seen_at=now,
                capacity=AGENT_CAPACITY if size.agents_like else 0,
                features=size.features,
                tenants=tenants,
            )
        )
        for cc in size.countries
    }
    while not stop.is_set():
        for cc, beat in beats.items():
            await nc.publish(heartbeats_subject(cc, f"bench-{cc}"), beat)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), BEAT_S)


async def _organizations(database_url: str) -> list[int]:
    conn = await connect(database_url)
    try:
        return [r["id"] for r in await conn.fetch("SELECT id FROM organizations ORDER BY id")]
    finally:
        await conn.close()


async def _seed(database_url: str, size: Size) -> list[str]:
    """The monitors, spread over `size.tenants` organizations."""
    ids: list[str] = []
    for n in range(size.tenants):
        count = size.monitors // size.tenants + (1 if n < size.monitors % size.tenants else 0)
        ids += await seed_monitors(
            database_url,
            count,
            interval=size.interval,
            countries=list(size.countries),
            organization="bench" if n == 0 else f"bench {n}",
        )
    return ids


async def _run(size: Size) -> bool:
    pipes = Pipes()
    try:
        t0 = time.perf_counter()
        ids = await _seed(pipes.database_url, size)
        setup_at = utcnow()
        await _plan(pipes.database_url, ids, setup_at + timedelta(seconds=LEAD_S), size.interval)
        setup_s = time.perf_counter() - t0
        begin = setup_at.timestamp() + LEAD_S + WARMUP_S
        window = (begin, begin + size.window_s)
        received: list[tuple[float, float]] = []  # (scheduledAt, received at), epoch seconds
        decoder = msgspec.json.Decoder(_Due)

        async def on_job(msg: Msg) -> None:
            at = time.time()
            received.extend((due, at) for due in _dues(msg.data, decoder))

        nc = await nats.connect(pipes.nats_url)
        js = nc.jetstream()
        stop = asyncio.Event()
        await ensure_streams(js)
        orgs = await _organizations(pipes.database_url)
        beats = asyncio.create_task(_heartbeats(nc, size, orgs, stop))
        await nc.subscribe("mon.jobs.>", cb=on_job, pending_msgs_limit=1_000_000)
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_child,
            args=(pipes.database_url, pipes.nats_url, window, size.countries, child),
            daemon=True,
        )
        proc.start()
        loop = asyncio.get_running_loop()
        got = loop.run_in_executor(None, parent.recv)
        spy = None
        if size.profile is not None and proc.pid is not None:
            await asyncio.sleep(max(0.0, window[0] - time.time()))
            spy = scale_profile.start(proc.pid, size.window_s, size.profile)
        load_before = os.getloadavg()
        cpu: float = await got
        load_after = os.getloadavg()
        await loop.run_in_executor(None, proc.join, 30)
        if spy is not None:
            await loop.run_in_executor(None, spy.wait)
        await asyncio.sleep(0.5)
        stop.set()
        await beats
        published = await _published(nc, js, size, decoder)
        await nc.drain()
    finally:
        pipes.close()
    window_s = size.window_s
    in_window = [(due, at) for due, at in received if window[0] <= due < window[1]]
    late_ms = [(at - due) * 1000 for due, at in in_window]
    stored = sum(1 for due in published if window[0] <= due < window[1])
    rate = stored / window_s
    complete = stored >= size.jobs_per_window * 0.999
    p50, p99, worst = percentile(late_ms, 50), percentile(late_ms, 99), max(late_ms, default=0)
    share = cpu / window_s
    start = datetime.fromtimestamp(window[0], UTC)
    print(
        f"scheduler ({machine()}; {size.monitors:,} active monitors every {size.interval} s,"
        f" {'+'.join(size.countries)}, {size.tenants} organizations, set up in {setup_s:.0f} s;"
        f" window {iso_ms(start)} + {window_s:.0f} s; load average"
        f" {load_before[0]:.1f} to {load_after[0]:.1f})"
    )
    if size != Size():
        print(
            f"  jobs due in the window published (in JOBS): {stored:,} = {rate:,.0f} jobs/s"
            f" ({'complete' if complete else 'INCOMPLETE'})"
        )
        print(
            f"  scheduler process CPU: {cpu:.2f} s in {window_s:.0f} s = {share:.1%} of a core,"
            f" {cpu / max(stored, 1) * 1e6:.1f} us a job"
        )
        print(f"  lateness (received - scheduledAt): p50 {p50:.0f} ms  p99 {p99:.0f} ms")
        return complete
    rate_ok = rate >= TARGET_RATE and complete
    cpu_ok = share <= TARGET_CPU
    late_ok = p99 <= TARGET_LATE_P99_MS
    print(
        f"  jobs due in the window published (in JOBS): {stored:,} = {rate:,.0f} jobs/s"
        f"   target >= {TARGET_RATE:,}/s: {verdict(rate_ok)}"
    )
    if len(in_window) < stored:
        print(f"  (the live subscriber saw {len(in_window):,} of them; lateness is theirs)")
    print(
        f"  scheduler process CPU: {cpu:.1f} s in {window_s:.0f} s = {share:.0%} of a core"
        f"   target <= {TARGET_CPU:.0%}: {verdict(cpu_ok)}"
    )
    print(
        f"  lateness (received - scheduledAt): p50 {p50:.0f} ms  p99 {p99:.0f} ms"
        f"  max {worst:.0f} ms   target p99 <= {TARGET_LATE_P99_MS:.0f} ms: {verdict(late_ok)}"
    )
    return rate_ok and cpu_ok and late_ok


def size_of(argv: list[str]) -> Size:
    """The run's size from its flags (none: the target's run)."""
    if not argv:
        return Size()
    parser = argparse.ArgumentParser(prog="bench scheduler")
    parser.add_argument("--monitors", type=int, default=2000)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--countries", default="DE,US")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args(argv)
    return Size(
        monitors=args.monitors,
        interval=args.interval,
        countries=tuple(args.countries.split(",")),
        tenants=max(1, args.tenants),
        window_s=args.window,
        agents_like=True,
        profile=args.profile,
        features=[FEATURE_TENANT_LOADS, FEATURE_BUNDLES, FEATURE_PREEMPT, FEATURE_PREEMPT_CARRY],
    )


def run(argv: list[str] | None = None) -> bool:
    discard_logs()
    return asyncio.run(_run(size_of(argv or [])))


if __name__ == "__main__":
    sys.exit(0 if run(sys.argv[1:]) else 1)
