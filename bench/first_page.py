"""The first page and the recovery, as a person on call gets them (issue 80): `python -m
controller serve` (scheduler, ingester, alerter with its outbox worker) with real agents in DE
and FR (`python -m agent`) on embedded NATS and PostgreSQL, three SMTP monitors on one host (two
on one port, one on another: an MX, a relay and a submission, checked every `INTERVAL_S` s), and
real channels: e-mail to an SMTP sink (NOTIFY_SMTP_URL) and a webhook to an HTTP receiver.

Each cycle stops the server (both ports refuse), waits for a `down` notice on each channel,
starts it again and waits for a `recovered` notice on each. Measured per channel, from the
arrival at the receiver: the first page after the first failing check (any monitor's, after the
stop), and the recovery after the first passing check (after the start). The stop and the start
fall at a random moment of the interval: the figures start at the check that saw it, which is
what the controller adds.

Targets (issue 80): the first page within 10 s of the first failing check (median over cycles
and channels), every channel under 15 s; the recovery within one round (`INTERVAL_S`) of the
server's return.
"""

import asyncio
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection

from controller.access import accounts_store as accounts
from controller.access import customers_store as customers
from controller.db.migrate import migrate
from controller.db.pool import connect
from controller.notify import channel_store
from controller.secrets.box import SecretBox
from shared import embedded
from testkit.campaigns.notice_sink import NoticeSink
from testkit.common import Pipes, child_env, discard_logs, machine, start_module, verdict
from testkit.peers.smtp import SmtpPeer

INTERVAL_S = 30
TIMEOUT_S = 5
CYCLES = int(os.environ.get("BENCH_FIRST_PAGE_CYCLES", "4"))
MEDIAN_TARGET_S = 10.0
MAX_TARGET_S = 15.0
WAIT_S = INTERVAL_S + 60.0  # how long a cycle waits for a channel's notice
SECRETS_KEY = "Aq1QnlR2gU7GxwqZ6fZ7Y8Yk5o3wB8vQ1bq0yVJf2lE="
MONITORS = (("MX", 0), ("Relay", 0), ("Submission", 1))  # name, which port
CHANNELS = ("email", "webhook")


def _serve(conn: Connection) -> None:
    asyncio.run(_serve_async(conn))


async def _serve_async(conn: Connection) -> None:
    """The mail server's two ports, stopped and started when told."""
    ports = (embedded.free_port(), embedded.free_port())
    conn.send(ports)
    loop = asyncio.get_running_loop()
    peers: list[SmtpPeer] = []
    while True:
        order = await loop.run_in_executor(None, conn.recv)
        if order == "up":
            peers = [SmtpPeer().at("127.0.0.1", p) for p in ports]
            for peer in peers:
                await peer.__aenter__()
        elif order == "down":
            for peer in peers:
                await peer.__aexit__(None, None, None)
            peers = []
        else:
            return
        conn.send(order)


@dataclass
class Arrival:
    kind: str  # down, recovered, changed, ...
    at: float


@dataclass
class Webhook:
    """An HTTP receiver on a thread of its own: each event's kind and arrival."""

    port: int = field(default_factory=embedded.free_port)
    arrivals: list[Arrival] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/mailprobe"

    def start(self) -> None:
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the webhook receiver did not start")

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)

    def seen(self) -> list[Arrival]:
        with self._lock:
            return list(self.arrivals)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            kind = str(json.loads(body).get("kind", ""))
            with self._lock:
                self.arrivals.append(Arrival(kind, time.time()))
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


def _mail_kind(subject: str) -> str:
    s = subject.removeprefix("[mailprobe] ").lower()
    return "recovered" if s.startswith("recovered") else "down" if s.startswith("down") else s


async def _seed(url: str, ports: tuple[int, int], webhook_url: str) -> None:
    conn = await connect(url)
    try:
        await migrate(conn)
        org_id = await accounts.ensure_organization(conn, "bench")
        customer = await customers.create(conn, org_id, "bench")
        box = SecretBox(SECRETS_KEY)
        channel = await channel_store.insert(
            conn,
            org_id,
            {
                "name": "on-call",
                "kind": "webhook",
                "url": webhook_url,
                "url_shown": webhook_url,
                "secret": box.seal("whsec-first-page"),
                "chat_id": None,
            },
        )
        for name, port in MONITORS:
            monitor_id = await conn.fetchval(
                "INSERT INTO monitors (public_id, organization_id, customer_id, type, name,"
                " hostname, port, status, check_interval, timeout_seconds, allowed_country_codes,"
                " config, notification_email) VALUES ($1, $2, $3, 'smtp', $4, '127.0.0.1', $5,"
                " 'active', $6, $7, $8, '{}'::jsonb, 'oncall@example.com') RETURNING id",
                uuid.uuid4(),
                org_id,
                customer.id,
                name,
                ports[port],
                INTERVAL_S,
                TIMEOUT_S,
                ["DE", "FR"],
            )
            await conn.execute(
                "INSERT INTO monitor_notification_channels (monitor_id, channel_id)"
                " VALUES ($1, $2)",
                monitor_id,
                channel,
            )
    finally:
        await conn.close()


async def _first_check(url: str, status: str, since: datetime, deadline: float) -> datetime:
    """The first check of `status` finished after `since` (any monitor)."""
    conn = await connect(url)
    try:
        while True:
            found: datetime | None = await conn.fetchval(
                "SELECT min(finished_at) FROM check_results WHERE status = $1"
                " AND finished_at >= $2 AND hour >= date_trunc('hour', $2::timestamptz, 'UTC')",
                status,
                since,
            )
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise SystemExit(f"no {status} check after {since}")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _all_up(url: str, since: datetime, deadline: float) -> None:
    """Every monitor has a passing round after `since` and no open incident."""
    conn = await connect(url)
    try:
        while time.monotonic() < deadline:
            left = await conn.fetchval(
                "SELECT count(*) FROM monitors m WHERE EXISTS (SELECT 1 FROM incidents i"
                " WHERE i.monitor_id = m.id AND i.ended_at IS NULL) OR NOT EXISTS (SELECT 1"
                " FROM check_results r WHERE r.monitor_id = m.id AND r.status = 'up'"
                " AND r.finished_at >= $1"
                " AND r.hour >= date_trunc('hour', $1::timestamptz, 'UTC'))",
                since,
            )
            if left == 0:
                return
            await asyncio.sleep(0.5)
        raise SystemExit("the monitors did not all pass")
    finally:
        await conn.close()


def _arrivals(sink: NoticeSink, hook: Webhook) -> dict[str, list[Arrival]]:
    return {
        "email": [Arrival(_mail_kind(r.subject), r.at) for r in sink.received],
        "webhook": hook.seen(),
    }


def _wait_kind(
    sink: NoticeSink, hook: Webhook, kind: str, after: float, deadline: float
) -> dict[str, float]:
    """Each channel's first notice of `kind` after `after` (wall clock)."""
    while True:
        got = {
            ch: min((a.at for a in arrived if a.kind == kind and a.at >= after), default=None)
            for ch, arrived in _arrivals(sink, hook).items()
        }
        if all(v is not None for v in got.values()):
            return {ch: v for ch, v in got.items() if v is not None}
        if time.monotonic() > deadline:
            raise SystemExit(f"no {kind} notice on every channel: {got}")
        time.sleep(0.2)


@dataclass
class Cycle:
    page: dict[str, float]  # channel → seconds from the first failing check
    recovery: dict[str, float]  # channel → seconds from the first passing check
    back: dict[str, float]  # channel → seconds from the server's start
    notices: dict[str, int]  # channel → notices of the cycle


def _cycle(url: str, server: Connection, sink: NoticeSink, hook: Webhook) -> Cycle:
    time.sleep(random.uniform(0, INTERVAL_S))  # the stop falls anywhere in the interval
    stopped = datetime.now(UTC)
    before = {ch: len(a) for ch, a in _arrivals(sink, hook).items()}
    server.send("down")
    server.recv()
    deadline = time.monotonic() + WAIT_S
    failed = asyncio.run(_first_check(url, "down", stopped, deadline))
    paged = _wait_kind(sink, hook, "down", stopped.timestamp(), deadline)
    time.sleep(random.uniform(0, INTERVAL_S))
    started = datetime.now(UTC)
    server.send("up")
    server.recv()
    deadline = time.monotonic() + WAIT_S
    passed = asyncio.run(_first_check(url, "up", started, deadline))
    told = _wait_kind(sink, hook, "recovered", started.timestamp(), deadline)
    asyncio.run(_all_up(url, started, time.monotonic() + WAIT_S))
    time.sleep(3)  # late notices of the cycle counted
    after = {ch: len(a) for ch, a in _arrivals(sink, hook).items()}
    return Cycle(
        {ch: at - failed.timestamp() for ch, at in paged.items()},
        {ch: at - passed.timestamp() for ch, at in told.items()},
        {ch: at - started.timestamp() for ch, at in told.items()},
        {ch: after[ch] - before[ch] for ch in after},
    )


def _measure() -> bool:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    sink, hook = NoticeSink(), Webhook()
    sink.start()
    hook.start()
    pipes = Pipes()
    procs: list[subprocess.Popen[bytes]] = []
    cycles: list[Cycle] = []
    try:
        ports = parent.recv()
        parent.send("up")
        parent.recv()
        asyncio.run(_seed(pipes.database_url, ports, hook.url))
        common = {"NATS_URL": pipes.nats_url}
        procs.append(
            start_module(
                ["controller", "serve"],
                child_env(
                    **common,
                    DATABASE_URL=pipes.database_url,
                    SECRETS_KEY=SECRETS_KEY,
                    CONTROLLER_ROLES="scheduler,ingester,alerter",
                    NOTIFY_SMTP_URL=sink.url,
                    NOTIFY_FROM="mailprobe@bench.test",
                    NOTIFY_PRIVATE_NETWORK_GRANTS="*=127.0.0.0/8",
                ),
                pipes.tmp / "controller.log",
            )
        )
        for cc in ("DE", "FR"):
            procs.append(
                start_module(
                    ["agent", "--country", cc],
                    child_env(
                        **common,
                        AGENT_ALLOW_PRIVATE_TARGETS="true",
                        AGENT_METRICS_PORT=str(embedded.free_port()),
                    ),
                    pipes.tmp / f"agent-{cc}.log",
                )
            )
        warm = datetime.now(UTC)
        asyncio.run(_all_up(pipes.database_url, warm, time.monotonic() + 120))
        for n in range(CYCLES):
            for proc in procs:
                if proc.poll() is not None:
                    raise SystemExit(f"{proc.args!r} exited early; logs in {pipes.tmp}")
            c = _cycle(pipes.database_url, parent, sink, hook)
            cycles.append(c)
            print(
                f"  cycle {n + 1}: first page "
                + ", ".join(f"{ch} {s:5.1f} s" for ch, s in c.page.items())
                + "; recovery "
                + ", ".join(f"{ch} {s:5.1f} s" for ch, s in c.recovery.items())
                + " after the first passing check ("
                + ", ".join(f"{ch} {s:5.1f} s" for ch, s in c.back.items())
                + " after the start); notices "
                + ", ".join(f"{ch} {k}" for ch, k in c.notices.items()),
                flush=True,
            )
    finally:
        for proc in procs:
            embedded.stop(proc)
        parent.send("stop")
        server.join(5)
        sink.stop()
        hook.stop()
        pipes.close()
    return _report(cycles)


def _report(cycles: list[Cycle]) -> bool:
    ok = bool(cycles)
    pages = [c.page[ch] for c in cycles for ch in CHANNELS]
    median = statistics.median(pages) if pages else float("inf")
    met = median < MEDIAN_TARGET_S
    print(
        f"  first page after the first failing check: median {median:.1f} s over"
        f" {len(pages)} (cycle, channel)   target < {MEDIAN_TARGET_S:.0f} s: {verdict(met)}"
    )
    ok = ok and met
    for ch in CHANNELS:
        worst = max(c.page[ch] for c in cycles) if cycles else float("inf")
        met = worst < MAX_TARGET_S
        ok = ok and met
        print(f"    {ch:>8}: max {worst:5.1f} s   target < {MAX_TARGET_S:.0f} s: {verdict(met)}")
    recoveries = [c.recovery[ch] for c in cycles for ch in CHANNELS]
    backs = [c.back[ch] for c in cycles for ch in CHANNELS]
    worst_back = max(backs) if backs else float("inf")
    met = worst_back < INTERVAL_S + MAX_TARGET_S
    ok = ok and met
    print(
        f"  recovery after the first passing check: median {statistics.median(recoveries):.1f} s,"
        f" max {max(recoveries):.1f} s; after the server's start: median"
        f" {statistics.median(backs):.1f} s, max {worst_back:.1f} s"
        f"   target < one round + {MAX_TARGET_S:.0f} s ({INTERVAL_S + MAX_TARGET_S:.0f} s):"
        f" {verdict(met)}"
    )
    return ok


def run() -> bool:
    discard_logs()
    print(
        f"first page and recovery ({machine()}; controller serve + agents in DE, FR; three SMTP"
        f" monitors on one host, two ports; interval {INTERVAL_S} s, check timeout {TIMEOUT_S} s;"
        f" e-mail sink and webhook receiver; {CYCLES} cycles, about {CYCLES * 2 * INTERVAL_S} s)"
    )
    return _measure()


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
