"""Scheduler: MONITORS active monitors at a 60 s interval, one country each, against real NATS
and PostgreSQL (embedded, on this machine).

Target (issue 3): 300,000 monitors at 60 s -> >= 5,000 jobs/s from one controller process at
<= 50% of a core, lateness (publish - due) p99 <= 100 ms.

The scheduler runs alone in a child process (its CPU is that process's CPU time over the measured
window). Every monitor is due once per 60 s, so over a 60 s window each one must be published
exactly once: jobs/s = jobs in JOBS (read back after the run) whose scheduledAt falls in the
window / 60 s, and a job missing from the window fails the run. Lateness = when a core NATS
subscriber in this process received the job - its scheduledAt (a core subscription may drop
messages under load, so it is not what the rate counts).
"""

import asyncio
import contextlib
import multiprocessing
import sys
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from controller.db.pool import connect, create_pool
from controller.fleet.live import LiveAgents
from controller.monitors.validation import COUNTRIES
from controller.runtime.pipeline import PUBLISH_ASYNC_MAX_PENDING
from controller.scheduling import rules as schedule
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from shared.messages import AgentHeartbeat, encode
from shared.pulling import StandingPull
from shared.streams import ensure_jobs_consumers, ensure_streams, jobs_consumer_name
from shared.subjects import JOBS_STREAM, heartbeats_subject
from shared.timefmt import iso_ms, utcnow
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


class _Due(msgspec.Struct, rename="camel"):
    scheduled_at: str


async def _plan(database_url: str, ids: list[str], first: datetime) -> None:
    """next_due_at as the scheduler's plan_new sets it (the monitor's grid), from `first` on."""
    dues = [
        schedule.next_due(schedule.phase_ms(public_id, INTERVAL), INTERVAL, first)
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


def _child(database_url: str, nats_url: str, window: tuple[float, float], out: Connection) -> None:
    discard_logs()
    out.send(asyncio.run(_schedule(database_url, nats_url, window)))


async def _schedule(database_url: str, nats_url: str, window: tuple[float, float]) -> float:
    """Run the scheduler until the window has passed; its CPU seconds inside the window."""
    pool = await create_pool(database_url, 4)
    nc = await nats.connect(nats_url)
    js = nc.jetstream(publish_async_max_pending=PUBLISH_ASYNC_MAX_PENDING)
    await ensure_streams(js)
    await ensure_jobs_consumers(js, sorted(COUNTRIES))  # as the controller has them
    # The bench's agent beats every BEAT_S: the view is complete after one and a half.
    agents = LiveAgents(nc, warmup_s=1.5 * BEAT_S)
    await agents.start()
    # No key directory: these monitors have no credentials (bench/seal.py measures sealing).
    scheduler = wired_scheduler(pool, js, agents, SecretBox(SECRETS_KEY), CountryKeys(None))
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
    nc: NATS, js: nats.js.JetStreamContext, decoder: msgspec.json.Decoder[_Due]
) -> list[float]:
    """The scheduledAt (epoch seconds) of every job in JOBS: what was published, whatever a
    live subscriber may have missed. No agent ran here, so all of them are still there; they
    are read (and acked, as an agent would) through the country's consumer."""
    total = (await js.stream_info(JOBS_STREAM)).state.messages
    puller = StandingPull(nc, JOBS_STREAM, jobs_consumer_name(COUNTRY), expires_s=2.0)
    dues: list[float] = []
    while len(dues) < total:
        msgs = await puller.take(1000, 2.0)
        if not msgs:
            raise SystemExit(f"JOBS holds {total} jobs but only {len(dues)} could be read")
        for msg in msgs:
            at = datetime.fromisoformat(decoder.decode(msg.data).scheduled_at)
            dues.append(at.timestamp())
            await msg.ack()
    await puller.close()
    return dues


async def _heartbeats(nc: NATS, stop: asyncio.Event) -> None:
    """One live agent in COUNTRY, as agents heartbeat."""
    now = iso_ms(utcnow())
    beat = encode(AgentHeartbeat(agent_id="bench", country=COUNTRY, started_at=now, seen_at=now))
    while not stop.is_set():
        await nc.publish(heartbeats_subject(COUNTRY, "bench"), beat)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), BEAT_S)


async def _run() -> bool:
    pipes = Pipes()
    try:
        t0 = time.perf_counter()
        ids = await seed_monitors(
            pipes.database_url, MONITORS, interval=INTERVAL, countries=[COUNTRY]
        )
        setup_at = utcnow()
        await _plan(pipes.database_url, ids, setup_at + timedelta(seconds=LEAD_S))
        setup_s = time.perf_counter() - t0
        begin = setup_at.timestamp() + LEAD_S + WARMUP_S
        window = (begin, begin + WINDOW_S)
        received: list[tuple[float, float]] = []  # (scheduledAt, received at), epoch seconds
        decoder = msgspec.json.Decoder(_Due)

        async def on_job(msg: Msg) -> None:
            at = time.time()
            due = datetime.fromisoformat(decoder.decode(msg.data).scheduled_at)
            received.append((due.timestamp(), at))

        nc = await nats.connect(pipes.nats_url)
        js = nc.jetstream()
        stop = asyncio.Event()
        await ensure_streams(js)
        beats = asyncio.create_task(_heartbeats(nc, stop))
        await nc.subscribe("mon.jobs.>", cb=on_job, pending_msgs_limit=1_000_000)
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_child, args=(pipes.database_url, pipes.nats_url, window, child), daemon=True
        )
        proc.start()
        loop = asyncio.get_running_loop()
        cpu: float = await loop.run_in_executor(None, parent.recv)
        await loop.run_in_executor(None, proc.join, 30)
        await asyncio.sleep(0.5)
        stop.set()
        await beats
        published = await _published(nc, js, decoder)
        await nc.drain()
    finally:
        pipes.close()
    in_window = [(due, at) for due, at in received if window[0] <= due < window[1]]
    late_ms = [(at - due) * 1000 for due, at in in_window]
    stored = sum(1 for due in published if window[0] <= due < window[1])
    rate = stored / WINDOW_S
    complete = stored >= MONITORS * WINDOW_S / INTERVAL * 0.999
    p50, p99, worst = percentile(late_ms, 50), percentile(late_ms, 99), max(late_ms, default=0)
    share = cpu / WINDOW_S
    rate_ok = rate >= TARGET_RATE and complete
    cpu_ok = share <= TARGET_CPU
    late_ok = p99 <= TARGET_LATE_P99_MS
    start = datetime.fromtimestamp(window[0], UTC)
    print(
        f"scheduler ({machine()}; {MONITORS:,} active monitors every {INTERVAL} s, 1 country,"
        f" set up in {setup_s:.0f} s; window {iso_ms(start)} + {WINDOW_S:.0f} s)"
    )
    print(
        f"  jobs due in the window published (in JOBS): {stored:,} = {rate:,.0f} jobs/s"
        f"   target >= {TARGET_RATE:,}/s: {verdict(rate_ok)}"
    )
    if len(in_window) < stored:
        print(f"  (the live subscriber saw {len(in_window):,} of them; lateness is theirs)")
    print(
        f"  scheduler process CPU: {cpu:.1f} s in {WINDOW_S:.0f} s = {share:.0%} of a core"
        f"   target <= {TARGET_CPU:.0%}: {verdict(cpu_ok)}"
    )
    print(
        f"  lateness (received - scheduledAt): p50 {p50:.0f} ms  p99 {p99:.0f} ms"
        f"  max {worst:.0f} ms   target p99 <= {TARGET_LATE_P99_MS:.0f} ms: {verdict(late_ok)}"
    )
    return rate_ok and cpu_ok and late_ok


def run() -> bool:
    discard_logs()
    return asyncio.run(_run())


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
