"""The hand-off's metrics per check (agent.handoff, agent.metrics): what a result's enter and
leave cost with the metrics and without, against what an SMTP plain check costs the agent.

    python -m bench handoff-cost
        in one process, rounds taking turns: CPU per check of `run_check` + `encode` of an SMTP
        plain job against aiosmtpd in a child process, at concurrency 20; CPU per enter + leave
        of the hand-off with and without its metrics. Target: the metrics add < 1 % of a check.
    valgrind --tool=callgrind python -m bench.handoff_cost events N [--bare]
        instructions, which the machine's load does not move: N enters and leaves (with the
        metrics, or `--bare` without); the difference of two runs of N and N + M, divided by
        M, is a check's (start-up falls out).
    valgrind --tool=callgrind python -m bench.handoff_cost checks N
        the same for N SMTP plain checks at concurrency 2 (the peer's process is not traced).
"""

import asyncio
import contextlib
import multiprocessing
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection

from agent import metrics
from agent.handoff import HandOff, Limits
from agent.probers.run import run_check
from agent.probers.tls import build_ssl_contexts
from shared.clock import WALL
from shared.messages import SmtpConfig, encode
from testkit.common import machine
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer

CHECKS = 1_000
CONCURRENCY = 20
EVENTS = 200_000
ROUNDS = 3
TARGET_SHARE = 0.01
# A result's size in the hand-off: an SMTP plain check's is about this.
SIZE = 700


def _serve(conn: Connection) -> None:
    async def serve() -> None:
        async with SmtpPeer() as peer:
            conn.send(peer.port)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)

    asyncio.run(serve())


async def _checks_cpu_ms(port: int, checks: int = CHECKS, concurrency: int = CONCURRENCY) -> float:
    """CPU ms per SMTP plain check: `run_check` and the result encoded, as the worker does."""
    contexts = build_ssl_contexts()
    job = make_job("smtp", port, SmtpConfig(ignore_tls=True), hostname="localhost", timeout=10)

    async def one() -> None:
        result = await run_check(job, "bench", True, contexts, clock=WALL)
        assert result.status == "up", result.message
        encode(result)

    await asyncio.gather(*(one() for _ in range(concurrency)))
    cpu0 = time.process_time()
    for _ in range(checks // concurrency):
        await asyncio.gather(*(one() for _ in range(concurrency)))
    return (time.process_time() - cpu0) * 1000 / checks


async def _events(n: int, watched: bool) -> None:
    """`n` results enter the hand-off and leave it, as a check's does when there is room."""
    handoff = HandOff(Limits.for_agent(200), metrics.for_country("ZZ").handoff if watched else None)
    for _ in range(n):
        await handoff.enter("tenant", SIZE)
        handoff.leave("tenant", SIZE)


def _events_cpu_us(watched: bool) -> float:
    cpu0 = time.process_time()
    asyncio.run(_events(EVENTS, watched))
    return (time.process_time() - cpu0) * 1e6 / EVENTS


@contextlib.contextmanager
def _peer() -> Iterator[int]:
    """aiosmtpd's port, served by a child process."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        server.join(5)
        if server.is_alive():
            server.terminate()


def run() -> bool:
    with _peer() as port:
        print(f"handoff-cost: the hand-off's metrics per check ({machine()})")
        shares: list[float] = []
        for n in range(1, ROUNDS + 1):
            check_ms = asyncio.run(_checks_cpu_ms(port))
            bare = _events_cpu_us(False)
            watched = _events_cpu_us(True)
            added = watched - bare
            shares.append(added / (check_ms * 1000))
            print(
                f"  round {n}: SMTP plain check {check_ms:.3f} ms CPU; enter + leave"
                f" {bare:.2f} us bare, {watched:.2f} us with metrics: {added:+.2f} us ="
                f" {shares[-1]:+.2%} of a check (target < {TARGET_SHARE:.0%})"
            )
        return max(shares) < TARGET_SHARE


def main(argv: list[str]) -> int:
    if argv[:1] == ["events"] and len(argv) >= 2:
        asyncio.run(_events(int(argv[1]), "--bare" not in argv))
        return 0
    if argv[:1] == ["checks"] and len(argv) >= 2:
        with _peer() as port:
            asyncio.run(_checks_cpu_ms(port, int(argv[1]), 2))
        return 0
    return 0 if run() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
