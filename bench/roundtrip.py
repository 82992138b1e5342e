"""Round trip (issue 14): the agent's CPU per round trip, and the most round trips one agent
process runs at once with every one of them `up`.

The round-trip prober in this process (no NATS: bench/agent.py measures that part for every
kind), against an SMTP server that delivers into mailboxes served over IMAP (with IDLE) and POP3
by another process, so the servers' CPU is not counted. Each concurrent round trip has a mailbox
of its own, as each monitor in a deployment has; delivery takes DELAY_S, so all of a level's
round trips are in flight, watching their mailboxes, at the same time.

Targets: CPU per round trip <= 15 ms over IMAP and over POP3 (plain connections), and at least
200 concurrent round trips with every one `up` within its timeout (DELAY_S + 9 s). The wall
times printed include the server process, one Python process serving every session; on a
shared machine they say more about it than about the agent.
"""

import asyncio
import multiprocessing
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from shared.clock import WALL
from shared.messages import RoundTripConfig, RoundTripReceive, RoundTripSend
from shared.secret import Secret
from testkit.common import machine
from testkit.peers.jobs import make_job
from testkit.peers.mailstore import DeliveringHandler, MailboxImapPeer, MailboxPop3Peer, Mailstore
from testkit.peers.smtp import SmtpPeer

SEQUENTIAL = 100
LEVELS = (50, 100, 200, 400)
DELAY_S = 1.0
TARGET_CPU_MS = 15.0
TARGET_CONCURRENT = 200
TIMEOUT_S = DELAY_S + 9


class RoutingHandler(DeliveringHandler):
    """Files each message in the mailbox of its recipient (`box<N>@mail.test`)."""

    def __init__(self, stores: list[Mailstore]) -> None:
        super().__init__(stores[0])
        self.stores = stores

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.store = self.stores[int(envelope.rcpt_tos[0].split("@")[0].removeprefix("box"))]
        return await super().handle_DATA(server, session, envelope)


def _serve(conn: Connection, boxes: int) -> None:
    asyncio.run(_serve_async(conn, boxes))


async def _serve_async(conn: Connection, boxes: int) -> None:
    stores = [Mailstore() for _ in range(boxes)]
    imaps = [MailboxImapPeer(s) for s in stores]
    pop3s = [MailboxPop3Peer(s) for s in stores]
    handler = RoutingHandler(stores)
    async with SmtpPeer(handler=handler, backlog=4096) as smtp:
        for peer in (*imaps, *pop3s):
            await peer.__aenter__()
        conn.send((smtp.port, [p.port for p in imaps], [p.port for p in pop3s]))
        loop = asyncio.get_running_loop()
        while (delay := await loop.run_in_executor(None, conn.recv)) is not None:
            for s in stores:
                s.delay_s = delay
        for peer in (*imaps, *pop3s):
            await peer.__aexit__(None, None, None)


def _config(box: int, protocol: str, port: int) -> RoundTripConfig:
    return RoundTripConfig(
        send=RoundTripSend(sender="bench@sender.test"),
        to=f"box{box}@mail.test",
        receive=RoundTripReceive(
            protocol="imap" if protocol == "imap" else "pop3",
            hostname="127.0.0.1",
            port=port,
            user="probe",
            password=Secret("secret"),
            allow_plaintext_auth=True,
        ),
    )


async def _one(
    contexts: SslContexts, smtp: int, box: int, protocol: str, port: int, timeout_s: float
) -> tuple[str | None, float]:
    """(None when up, else the error kind and message), wall seconds."""
    job = make_job(
        "roundtrip",
        smtp,
        _config(box, protocol, port),
        timeout=timeout_s,
        monitor_id=f"bench-{box}",
        job_id=f"bench-{box}-{time.monotonic_ns()}",
    )
    t0 = time.perf_counter()
    result = await run_check(job, "bench", True, contexts, clock=WALL)
    failed = None if result.status == "up" else f"{result.error_kind}: {result.message[:120]}"
    return failed, time.perf_counter() - t0


async def _sequential(
    contexts: SslContexts, smtp: int, ports: list[int], protocol: str
) -> tuple[float, int]:
    for _ in range(5):
        await _one(contexts, smtp, 0, protocol, ports[0], 5)
    failures = 0
    cpu0 = time.process_time()
    for _ in range(SEQUENTIAL):
        failed, _ = await _one(contexts, smtp, 0, protocol, ports[0], 5)
        failures += failed is not None
    return (time.process_time() - cpu0) / SEQUENTIAL * 1000, failures


async def _level(
    contexts: SslContexts, smtp: int, ports: list[int], n: int
) -> tuple[int, float, float, str]:
    cpu0 = time.process_time()
    outcomes = await asyncio.gather(
        *(_one(contexts, smtp, i, "imap", ports[i], TIMEOUT_S) for i in range(n))
    )
    cpu_ms = (time.process_time() - cpu0) / n * 1000
    walls = sorted(w for _, w in outcomes)
    bad = [failed for failed, _ in outcomes if failed is not None]
    return len(bad), walls[int(len(walls) * 0.95) - 1], cpu_ms, bad[0] if bad else ""


def run() -> bool:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child, max(LEVELS)), daemon=True)
    server.start()
    try:
        smtp, imap_ports, pop3_ports = parent.recv()
        contexts = build_ssl_contexts()
        print(f"roundtrip: agent CPU per round trip and concurrency ({machine()})")
        parent.send(0.0)
        ok = True
        for protocol, ports in (("imap", imap_ports), ("pop3", pop3_ports)):
            cpu, failures = asyncio.run(_sequential(contexts, smtp, ports, protocol))
            ok = ok and failures == 0 and cpu <= TARGET_CPU_MS
            print(
                f"  {protocol}: {cpu:6.2f} ms CPU per round trip (target <= {TARGET_CPU_MS:g})"
                f"   failures {failures}/{SEQUENTIAL}"
            )
        parent.send(DELAY_S)
        sustained = 0
        for n in LEVELS:
            failures, p95, cpu, first = asyncio.run(_level(contexts, smtp, imap_ports, n))
            print(
                f"  {n:4d} concurrent (IMAP IDLE, delivery {DELAY_S:g} s): failures {failures}"
                f"   wall p95 {p95:5.2f} s   {cpu:6.2f} ms CPU per round trip"
                + (f"   first failure: {first}" if first else "")
            )
            if failures:
                break
            sustained = n
        print(f"  sustained: {sustained} concurrent round trips (target >= {TARGET_CONCURRENT})")
        return ok and sustained >= TARGET_CONCURRENT
    finally:
        parent.send(None)
        server.join(10)
        if server.is_alive():
            server.terminate()


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
