"""Live agents at scale (issue 13): AGENTS agents in COUNTRIES countries heartbeating (light
publishers of real AgentHeartbeat messages on their subjects, every HEARTBEAT_INTERVAL_S), two
`python -m controller serve` replicas (API role), and a readonly operator polling `GET /api/agents`
on both as hard as WORKERS connections go for POLL_S seconds.

Targets: the server's JetStream consumer count does not grow over the polling, no poll answers
an empty view, none fails.
"""

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter

import httpx
import nats

from controller.access import accounts_store as accounts
from controller.access.credentials import hash_password, new_token
from controller.db.migrate import migrate
from controller.db.pool import connect
from shared import embedded
from shared.clock import WALL
from shared.heartbeats import HEARTBEAT_INTERVAL_S, WARMUP_S
from shared.messages import AgentHeartbeat, encode
from shared.streams import ensure_streams
from shared.subjects import heartbeats_subject
from shared.timefmt import iso_ms, utcnow
from testkit.common import Pipes, discard_logs, machine, verdict

AGENTS = 50
COUNTRIES = 20
POLL_S = 30.0
WORKERS = 8
SECRETS_KEY = "Aq1QnlR2gU7GxwqZ6fZ7Y8Yk5o3wB8vQ1bq0yVJf2lE="
CODES = [f"{a}{b}" for a in "ABCDEFGHIJ" for b in "XY"][:COUNTRIES]


async def _readonly_token(database_url: str) -> str:
    conn = await connect(database_url)
    try:
        await migrate(conn)
        org_id = await accounts.ensure_organization(conn, "bench")
        user = await accounts.create_user(
            conn,
            org_id,
            "watcher@example.com",
            hash_password("x" * 12),
            "readonly",
            is_operator=True,  # a tenant's view lists no agents
        )
        token, digest = new_token()
        await accounts.issue_token(conn, user.id, digest, 3600, WALL.now())
        return token
    finally:
        await conn.close()


async def _heartbeat(nats_url: str, stop: asyncio.Event) -> None:
    """Every agent's beat each interval, as `python -m agent` sends it (core NATS)."""
    nc = await nats.connect(nats_url)
    started = iso_ms(utcnow())
    agents = [(CODES[i % COUNTRIES], f"{CODES[i % COUNTRIES]}-agent-{i}") for i in range(AGENTS)]
    try:
        while not stop.is_set():
            seen = iso_ms(utcnow())
            for cc, agent_id in agents:
                beat = AgentHeartbeat(
                    agent_id=agent_id, country=cc, capacity=200, started_at=started, seen_at=seen
                )
                await nc.publish(heartbeats_subject(cc, agent_id), encode(beat))
            await nc.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT_INTERVAL_S)
    finally:
        await nc.close()


async def _consumers(nats_url: str) -> int:
    nc = await nats.connect(nats_url)
    try:
        return int((await nc.jetstream().account_info()).consumers)
    finally:
        await nc.close()


async def _poll(urls: list[str], token: str, until: float) -> Counter[str]:
    """Poll the replicas in turn from WORKERS connections; count answers by kind."""
    seen: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {token}"}

    async def worker(n: int) -> None:
        async with httpx.AsyncClient(headers=headers, timeout=10) as client:
            i = n
            while time.monotonic() < until:
                resp = await client.get(f"{urls[i % len(urls)]}/api/agents")
                i += 1
                if resp.status_code != 200:
                    seen[f"HTTP {resp.status_code}"] += 1
                    continue
                total = resp.json()["total"]
                seen["empty" if total == 0 else "complete" if total == AGENTS else "partial"] += 1

    await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    return seen


async def _measure(pipes: Pipes, urls: list[str], token: str) -> bool:
    stop = asyncio.Event()
    beats = asyncio.create_task(_heartbeat(pipes.nats_url, stop))
    try:
        await asyncio.sleep(WARMUP_S + 1)  # the replicas' views are complete
        before = await _consumers(pipes.nats_url)
        seen = await _poll(urls, token, time.monotonic() + POLL_S)
        after = await _consumers(pipes.nats_url)
    finally:
        stop.set()
        await beats
    polls = sum(seen.values())
    failed = sum(n for kind, n in seen.items() if kind.startswith("HTTP"))
    ok = after <= before and seen["empty"] == 0 and failed == 0 and polls > 0
    print(
        f"  {polls:,} polls ({polls / POLL_S:.0f}/s): complete {seen['complete']:,},"
        f" partial {seen['partial']:,}, empty {seen['empty']:,}, failed {failed:,}"
        + (f" {dict((k, n) for k, n in seen.items() if k.startswith('HTTP'))}" if failed else "")
        + "\n"
        f"  JetStream consumers on the server: {before} before, {after} after"
        f"   target: no growth, no empty view, no failure: {verdict(ok)}"
    )
    return ok


def _serve(pipes: Pipes, port: int) -> subprocess.Popen[bytes]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENT_", "NATS_", "LOG_", "CONTROLLER_", "DATABASE_", "API_"))
    }
    env.update(
        DATABASE_URL=pipes.database_url,
        NATS_URL=pipes.nats_url,
        SECRETS_KEY=SECRETS_KEY,
        CONTROLLER_ROLES="api",
        API_PORT=str(port),
        LOG_FORMAT="json",
    )
    log = (pipes.tmp / f"controller-{port}.log").open("ab")
    with log:
        return subprocess.Popen(
            [sys.executable, "-m", "controller", "serve"], env=env, stdout=log, stderr=log
        )


async def _streams(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await ensure_streams(nc.jetstream())
    finally:
        await nc.close()


def run() -> bool:
    discard_logs()
    print(
        f"live agents at scale ({machine()}; {AGENTS} agents in {COUNTRIES} countries"
        f" heartbeating, 2 controller replicas, a readonly operator polling GET /api/agents from"
        f" {WORKERS} connections for {POLL_S:.0f} s)"
    )
    pipes = Pipes()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        token = asyncio.run(_readonly_token(pipes.database_url))
        asyncio.run(_streams(pipes.nats_url))
        ports = [embedded.free_port(), embedded.free_port()]
        procs = [_serve(pipes, port) for port in ports]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, proc in zip(urls, procs, strict=True):
            _wait_ready(url, proc)
        return asyncio.run(_measure(pipes, urls, token))
    finally:
        for proc in procs:
            embedded.stop(proc)
        pipes.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the controller at {url} exited at start")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the controller at {url} was not ready within 30 s")


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
