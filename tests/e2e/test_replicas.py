"""Two `python -m controller serve` replicas, every role in each, on one PostgreSQL and one NATS:
they share the work (each schedules, stores, evaluates about half) and none of it is done twice
or left undone: every round of every monitor on its grid, once per country; every job published
once; every result stored once; every incident's e-mail sent once (by either replica).

Real parts only: its own NATS server (the replicas share the default `ingest` consumer, which
no other test may see), a scratch database, two agents (Worker) on loopback, an SMTP server the
up monitors check, a closed port on a loopback address of its own each down one checks, an SMTP
relay taking the alert e-mails.
"""

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.worker import Worker
from controller.db.pool import create_pool
from controller.scheduling import rules
from controller.secrets.box import generate_key
from shared import embedded
from shared.clock import WALL
from testkit.peers.smtp import SmtpPeer
from testkit.serving import http_client
from tests.conftest import Tenant, make_tenant, scratch_database

pytestmark = [pytest.mark.breadth, pytest.mark.slow]

COUNTRIES = ("DE", "US")  # its own NATS server: no other test's agents or jobs
UP, DOWN = 40, 16
INTERVAL_S = 10
GRID_ROUNDS = 3  # each monitor's rounds on its grid, every country's row in, before the count
RUN_S = 60.0  # at most, once every monitor is created
SHARE = (0.3, 0.7)


@dataclass
class Relay:
    """What the alert relay received: each message's text."""

    mails: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(bytes(envelope.original_content or envelope.content))
        return "250 OK"


@dataclass
class Replica:
    proc: asyncio.subprocess.Process
    api: str
    log: Path


@pytest.fixture
async def scratch(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url, "replicas") as url:
        yield url


@pytest.fixture
async def own_nats(tmp_path: Path) -> AsyncIterator[str]:
    proc, url = embedded.start_nats(tmp_path / "nats")
    try:
        yield url
    finally:
        embedded.stop(proc)


async def _start(env: dict[str, str], folder: Path, name: str) -> Replica:
    port = embedded.free_port()
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "controller",
            "serve",
            env={**env, "API_PORT": str(port)},
            stdout=out,
            stderr=out,
        )
    return Replica(proc, f"http://127.0.0.1:{port}", log)


async def _ready(http: httpx.AsyncClient, replica: Replica) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if (await http.get(f"{replica.api}/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert replica.proc.returncode is None, replica.log.read_text()[-2000:]
        assert time.monotonic() < deadline, "replica not ready"
        await asyncio.sleep(0.2)


async def _agents_seen(http: httpx.AsyncClient, replica: Replica, tenant: Tenant) -> None:
    """Until the replica sees an agent in every country."""
    deadline = time.monotonic() + 30
    while True:
        got = await http.get(f"{replica.api}/api/agents", headers=tenant.auth("operator"))
        if got.status_code == 200 and got.json()["total"] >= len(COUNTRIES):
            return
        assert time.monotonic() < deadline, f"replica sees no agents: {got.text}"
        await asyncio.sleep(0.2)


def _totals(text: str) -> dict[str, float]:
    """Each counter's total over its labels, by name (without `_total`)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals[family.name] = totals.get(family.name, 0.0) + sample.value
    return totals


def _landing(counters: list[dict[str, float]]) -> list[tuple[float, ...]]:
    """What each replica has published, stored and sent so far."""
    names = ("mailprobe_jobs_published", "mailprobe_results_ingested", "mailprobe_notifications")
    return [tuple(c.get(name, 0) for name in names) for c in counters]


async def _create(http: httpx.AsyncClient, api: str, tenant: Tenant, body: dict[str, Any]) -> None:
    created = await http.post(
        f"{api}/api/smtp-monitors",
        json={"customerId": tenant.customer_public_id, **body},
        headers={"Authorization": f"Bearer {tenant.tokens['admin']}"},
    )
    assert created.status_code == 201, created.text


def _on_grid(rows: Sequence[asyncpg.Record]) -> dict[object, list[datetime]]:
    """Each monitor's rounds on its grid (the first round and confirmations are off it) that
    have a row from every country."""
    rounds: dict[object, dict[datetime, set[str]]] = {}
    for r in rows:
        rounds.setdefault(r["monitor"], {}).setdefault(r["scheduled_at"], set()).add(r["country"])
    return {
        monitor: [
            t
            for t, countries in sorted(by_time.items())
            if countries == set(COUNTRIES)
            and rules.last_due(rules.phase_ms(str(monitor), INTERVAL_S), INTERVAL_S, t) == t
        ]
        for monitor, by_time in rounds.items()
    }


async def _rounds_in(pool: asyncpg.Pool) -> None:
    """Until every monitor has GRID_ROUNDS rounds on its grid, RUN_S at the most."""
    deadline = time.monotonic() + RUN_S
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT monitor_public_id AS monitor, country, scheduled_at FROM check_results"
            )
        grids = _on_grid(rows)
        if len(grids) == UP + DOWN and all(len(g) >= GRID_ROUNDS for g in grids.values()):
            return
        assert time.monotonic() < deadline, (
            f"rounds on the grid: {sorted(map(len, grids.values()))}"
        )
        await asyncio.sleep(0.5)


@pytest.mark.timeout(150)
async def test_two_replicas_share_every_role_without_doing_anything_twice(
    scratch: str, own_nats: str, tmp_path: Path
) -> None:
    pool = await create_pool(scratch, 4)
    relay = Relay()
    async with SmtpPeer() as target, SmtpPeer(handler=relay, users={}) as alerts:
        env = {
            **os.environ,
            "DATABASE_URL": scratch,
            "NATS_URL": own_nats,
            "SECRETS_KEY": generate_key(),
            "API_HOST": "127.0.0.1",
            "LOG_FORMAT": "json",
            "NOTIFY_SMTP_URL": f"smtp://127.0.0.1:{alerts.port}",
            "NOTIFY_FROM": "mailprobe <alerts@example.com>",
        }
        replicas = [await _start(env, tmp_path, name) for name in ("a", "b")]
        conns = [await nats.connect(own_nats) for _ in COUNTRIES]
        workers = [
            Worker.of(conn, cc, agent_id=f"{cc}-1", allow_private=True, clock=WALL)
            for conn, cc in zip(conns, COUNTRIES, strict=True)
        ]
        runs = [asyncio.create_task(w.run()) for w in workers]
        try:
            async with http_client(timeout=10) as http:
                for replica in replicas:
                    await _ready(http, replica)
                tenant = await make_tenant(pool)
                for replica in replicas:
                    await _agents_seen(http, replica, tenant)
                common = {
                    "checkInterval": INTERVAL_S,
                    "timeoutSeconds": 3,
                    "allowedCheckCountryCodes": list(COUNTRIES),
                    "smtpConfig": {"secure": False, "ignoreTLS": True},
                    "notificationEmail": "oncall@example.com",
                }
                # A loopback address and closed port of its own per down monitor: each is a
                # server of its own, so a mail-flow problem of its own (one incident, one
                # notice); every port of one host name is one server, whose outage is one.
                closed = [(f"127.0.0.{2 + n}", embedded.free_port()) for n in range(DOWN)]
                # Created over one interval, so rounds fall due evenly, not in one burst that
                # whichever replica looks first would take whole.
                began = time.monotonic()
                for n in range(UP + DOWN):
                    await asyncio.sleep(
                        max(0.0, began + n * INTERVAL_S / (UP + DOWN) - time.monotonic())
                    )
                    hostname, port = ("localhost", target.port) if n < UP else closed[n - UP]
                    api = replicas[n % 2].api
                    body = {"name": f"m{n}", "hostname": hostname, "port": port, **common}
                    await _create(http, api, tenant, body)
                await _rounds_in(pool)
                # Disabling every monitor at once queues all of them for the alerter in one
                # burst, which whichever replica looks first takes whole: its evaluations are
                # shared as they ran until then.
                running = [_totals((await http.get(f"{r.api}/metrics")).text) for r in replicas]
                # Stop scheduling, let what is in flight land, then count: until every job
                # published is stored and every incident told, those counters the same before
                # and after the rows are read.
                async with pool.acquire() as conn:
                    # Each monitor's first due time, which disabling it moves.
                    first_due = {
                        r["public_id"]: r["rounds_since"]
                        for r in await conn.fetch("SELECT public_id, rounds_since FROM monitors")
                    }
                    await conn.execute("UPDATE monitors SET status = 'disabled'")
                deadline = time.monotonic() + 60
                while True:
                    counters = [
                        _totals((await http.get(f"{r.api}/metrics")).text) for r in replicas
                    ]
                    async with pool.acquire() as conn:
                        rows = await conn.fetch(
                            "SELECT monitor_public_id AS monitor, country, scheduled_at, status,"
                            " agent_id, error_kind FROM check_results"
                        )
                    again = [_totals((await http.get(f"{r.api}/metrics")).text) for r in replicas]
                    landed = {
                        sum(c.get(name, 0) for c in counters)
                        for name in ("mailprobe_jobs_published", "mailprobe_results_ingested")
                    } == {sum(r["agent_id"] is not None for r in rows)}
                    told = sum(c.get("mailprobe_notifications", 0) for c in counters) == DOWN
                    if _landing(counters) == _landing(again) and landed and told:
                        break
                    assert time.monotonic() < deadline, f"still in flight: {counters}"
                    await asyncio.sleep(0.2)
        finally:
            for w in workers:
                w.stop()
            await asyncio.gather(*runs)
            for agent_conn in conns:
                await agent_conn.drain()
            for replica in replicas:
                if replica.proc.returncode is None:
                    replica.proc.send_signal(signal.SIGTERM)
            for replica in replicas:
                await asyncio.wait_for(replica.proc.wait(), 30)
            await pool.close()
    for replica in replicas:
        text = replica.log.read_text()
        assert replica.proc.returncode == 0, text[-2000:]
        assert "Traceback" not in text, text[-4000:]

    # Nothing missing, nothing twice: each monitor's rounds follow its grid without a gap, and
    # each round has one row from each country: a result, or the scheduler's own `missed` row
    # when it found no live agent (heartbeats late on a loaded machine) or ran the round late.
    unchecked = [r for r in rows if r["agent_id"] is None]
    assert {r["error_kind"] for r in unchecked} <= {"no_agent", "overdue"}, unchecked[:5]
    assert len(unchecked) <= len(rows) // 10, f"most rounds went unchecked: {unchecked[:5]}"
    checked = len(rows) - len(unchecked)
    rounds: dict[object, dict[datetime, list[str]]] = {}
    for r in rows:
        rounds.setdefault(r["monitor"], {}).setdefault(r["scheduled_at"], []).append(r["country"])
    assert len(rounds) == UP + DOWN
    for monitor, by_time in rounds.items():
        # The first round goes at once, at the monitor's first due time, and so does a
        # confirmation round after a failing one (its own, or a sibling's on its host: an up
        # one's whose check timed out on a loaded machine): both off the monitor's grid. The
        # grid's rounds follow from its first point more than half an interval after the first
        # round, one every INTERVAL_S, none missing.
        times = sorted(by_time)
        phase = rules.phase_ms(str(monitor), INTERVAL_S)
        grid = [t for t in times if rules.last_due(phase, INTERVAL_S, t) == t]
        assert len(grid) >= GRID_ROUNDS, (monitor, times)
        since = first_due[monitor]
        first = rules.first_grid_round(phase, INTERVAL_S, since)
        history = sorted(
            (
                r["scheduled_at"].isoformat(),
                r["country"],
                r["status"],
                r["agent_id"],
                r["error_kind"],
            )
            for r in rows
            if r["monitor"] == monitor
        )
        assert since in by_time, f"{monitor}'s first round, due {since}, has no row: {history}"
        assert grid[0] == first, f"{monitor}'s grid started at {grid[0]}, not {first}: {history}"
        span = (grid[-1] - grid[0]).total_seconds()
        assert len(grid) == span / INTERVAL_S + 1, f"a round of {monitor} is missing: {history}"
        assert all(sorted(c) == sorted(COUNTRIES) for c in by_time.values()), monitor

    published = [c.get("mailprobe_jobs_published", 0) for c in counters]
    ingested = [c.get("mailprobe_results_ingested", 0) for c in counters]
    evaluated = [c.get("mailprobe_alert_evaluations", 0) for c in running]
    sent = [c.get("mailprobe_notifications", 0) for c in counters]
    print(
        f"published {published}, ingested {ingested}, evaluated {evaluated} (before disabling;"
        f" {[c.get('mailprobe_alert_evaluations', 0) for c in counters]} after), sent {sent}"
    )
    assert sum(published) == checked, "a job was published twice"
    assert sum(ingested) == checked, "a result was stored twice"
    # One incident per down monitor, each told once.
    # Not split evenly: the down monitors' incidents open in one burst, and the outbox leases
    # due rows in batches, so whichever replica looks first may take them all; what counts is
    # that each is sent once.
    assert sum(sent) == len(relay.mails) == DOWN, (sent, len(relay.mails))
    for name, counts in (
        ("scheduled", published),
        ("stored", ingested),
        ("evaluated", evaluated),
    ):
        share = counts[0] / sum(counts)
        assert SHARE[0] <= share <= SHARE[1], f"replica a {name} {share:.0%} of {counts}"
