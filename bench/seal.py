"""Sealing: what a monitor with credentials costs the scheduler per job (decrypting its stored
secret, sealing its config to the country's key) and the agent (opening it), in one process,
on the scheduler's own code (`Planner.rounds`, which plans a claimed batch in a thread).

Targets: the scheduler's rate target (bench/scheduler.py, 5,000 jobs/s from one process) fits in
one core with every job credentialed, i.e. <= 200 us of CPU a job; planning a batch of 1,000
credentialed monitors from 2 countries leaves the event loop free (p99 gap <= 25 ms in a 1 ms
ticker), so the API and the other roles on that loop go on. The worst gap is printed too: it is
the thread holding the GIL when the OS takes its core, so it tells how busy the machine is.
"""

import asyncio
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from nats.aio.client import Client as NATS

from controller.fleet.live import LiveAgents
from controller.monitors.store import WatchedMonitor, decode_watched
from controller.scheduling.planner import Planner
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from shared.clock import WALL
from shared.messages import CheckJob, encode
from shared.sealing import OpeningKeys, generate
from shared.timefmt import utcnow
from testkit.common import machine, percentile, verdict
from testkit.scheduling import round_planner

MONITORS = 1000
COUNTRIES = ("DE", "US")
ROUNDS = 3
TARGET_JOB_US = 200.0
TARGET_GAP_MS = 25.0
SECRETS_KEY = "Aq1QnlR2gU7GxwqZ6fZ7Y8Yk5o3wB8vQ1bq0yVJf2lE="


def _monitors(box: SecretBox, credentialed: bool) -> list[WatchedMonitor]:
    """Claimed monitors as the scheduler reads them: IMAP with a password stored encrypted, or
    SMTP without AUTH."""
    now = utcnow()
    claimed = []
    for n in range(MONITORS):
        kind, config = (
            ("imap", {"user": f"box{n}@example.com", "password": box.seal(f"pw-{n}"), "tls": True})
            if credentialed
            else ("smtp", {"secure": False})
        )
        row = {
            "id": n,
            "public_id": uuid.uuid4(),
            "organization_id": 1,
            "customer_id": 1,
            "type": kind,
            "name": f"monitor {n}",
            "hostname": f"mx{n}.example.com",
            "port": None,
            "status": "active",
            "timeout_seconds": 30,
            "check_interval": 60,
            "allowed_country_codes": list(COUNTRIES),
            "config": config,
            "notification_email": None,
            "notification_phone_number": None,
            "mail_domain": None,
            "reputation": None,
            "secret_env": None,
            "depends_on": None,
            "next_due_at": now - timedelta(seconds=1),
            "created_at": now,
            "updated_at": now,
            "last_checked_at": None,
            "round_countries": None,
            "rounds_since": now,
            "mail_dns_at": None,
            "login_failures": None,
            "login_retry_at": None,
        }
        claimed.append(decode_watched(cast(Any, row)))
    return claimed


async def _plan(planner: Planner, rows: list[WatchedMonitor]) -> tuple[list[CheckJob], float]:
    """The jobs of one batch (encoded, as publishing does) and the process CPU seconds taken."""
    cpu = time.process_time()
    rounds = await planner.rounds(rows, utcnow(), frozenset(COUNTRIES))
    # Every job planned, those a round sends later (logins spaced out) included.
    jobs = [job for r in rounds for job in [*r.jobs, *(j for _, j in r.deferred)]]
    for job in jobs:
        encode(job)
    return jobs, time.process_time() - cpu


async def _gaps_while(work: Any) -> list[float]:
    """Milliseconds between the ticks of a 1 ms ticker on the loop while `work` runs."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append((now - last) * 1000)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    await work
    done.set()
    await ticker
    return gaps


async def _measure(keys_dir: Path) -> bool:
    box = SecretBox(SECRETS_KEY)
    privates = {}
    for cc in COUNTRIES:
        privates[cc], public = generate()
        (keys_dir / f"{cc}.pub").write_text(public)
    # `rounds` does no I/O: a live agents view on a NATS client never connected (no agent, so
    # no country where all of them log in with OAuth2) will do.
    keys = CountryKeys(str(keys_dir))
    planner = Planner(round_planner(box, keys), LiveAgents(NATS(), wall=WALL.now), keys)
    plain_rows, sealed_rows = _monitors(box, False), _monitors(box, True)
    per_job: dict[str, list[float]] = {"plain": [], "sealed": []}
    for _ in range(ROUNDS):
        for name, rows in (("plain", plain_rows), ("sealed", sealed_rows)):
            jobs, cpu = await _plan(planner, rows)
            per_job[name].append(cpu / len(jobs) * 1e6)
    plain_us, sealed_us = min(per_job["plain"]), min(per_job["sealed"])
    jobs, _ = await _plan(planner, sealed_rows)
    opening = {cc: OpeningKeys([key]) for cc, key in privates.items()}
    t0 = time.process_time()
    for job in jobs:
        assert job.sealed_config is not None
        opening[job.country].open(job.sealed_config, job.seal_key_id)
    open_us = (time.process_time() - t0) / len(jobs) * 1e6
    gaps = await _gaps_while(_plan(planner, sealed_rows))
    plain_size = len(encode((await _plan(planner, plain_rows[:1]))[0][0]))
    sealed_size = len(encode(jobs[0]))

    rate_ok = sealed_us <= TARGET_JOB_US
    gap_ok = percentile(gaps, 99) <= TARGET_GAP_MS
    print(f"seal ({machine()}; {MONITORS:,} monitors x {len(COUNTRIES)} countries a batch)")
    print(
        f"  scheduler CPU a job: {plain_us:.0f} us without credentials, {sealed_us:.0f} us with"
        f" (sealing and decrypting: +{sealed_us - plain_us:.0f} us) = {1e6 / sealed_us:,.0f}"
        f" credentialed jobs/s a core   target <= {TARGET_JOB_US:.0f} us: {verdict(rate_ok)}"
    )
    print(
        f"  event loop while a credentialed batch is planned: p99 gap {percentile(gaps, 99):.1f}"
        f" ms (worst {max(gaps):.1f} ms)   target p99 <= {TARGET_GAP_MS:.0f} ms: {verdict(gap_ok)}"
    )
    print(f"  agent CPU to open a job: {open_us:.0f} us")
    print(f"  job size on the wire: {plain_size} B unsealed SMTP, {sealed_size} B sealed IMAP")
    return rate_ok and gap_ok


def run() -> bool:
    with tempfile.TemporaryDirectory(prefix="mailprobe-bench-seal-") as folder:
        return asyncio.run(_measure(Path(folder)))
