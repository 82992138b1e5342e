"""The agent's probers against hostile mail servers, side by side with normal ones in one
process (the servers in a process of their own): SMTP, IMAP and POP3 checks, `CHECKS` at once
per server, each with a `DEADLINE_S` deadline. Hostile: an IMAP greeting line without end, an
IMAP literal `{4294967295}` streamed, IMAP untagged lines forever, an SMTP `250-` reply
forever, a POP3 CAPA answer without its final ".", and a greeting one byte per 0.1 s
(slowloris, past the deadline). Measured: the agent process's RSS growth at its peak (sampled
every 5 ms), the event loop's lag (a 5 ms ticker's overshoot), the largest result (encoded),
the error kinds; the machine's load beside.

Target: every check a result with an error kind (never `internal`), every result within
`RESULT_MAX` bytes, the hostile runs' peak RSS growth at most `RSS_RATIO_MAX` times the normal
runs' plus `RSS_SLACK_MB`, their loop lag p99 at most `LAG_RATIO_MAX` times plus
`LAG_SLACK_MS`.
"""

import asyncio
import multiprocessing
import os
from collections.abc import Awaitable, Callable

import msgspec

from agent.probers.run import run_check
from agent.probers.tls import build_ssl_contexts
from bench.hostile_dns import Watch
from shared.clock import WALL
from shared.messages import CheckJob, ImapPopConfig, MonitorType, SmtpConfig
from testkit.common import machine, percentile
from testkit.peers.base import LoopbackServer
from testkit.peers.imap import ImapPeer
from testkit.peers.jobs import make_job
from testkit.peers.pop3 import Pop3Peer

CHECKS = 20
DEADLINE_S = 3.0
RESULT_MAX = 64 * 1024
RSS_RATIO_MAX, RSS_SLACK_MB = 3.0, 128.0
LAG_RATIO_MAX, LAG_SLACK_MS = 3.0, 100.0
CHUNK = b"A" * 65536
Talk = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _forever(w: asyncio.StreamWriter, data: bytes) -> None:
    while True:
        w.write(data)
        await w.drain()


async def _smtp_normal(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"220 normal.test ESMTP\r\n")
    while line := await r.readline():
        if line[:4].upper() == b"EHLO":
            w.write(b"250-normal.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        else:
            w.write(b"221 bye\r\n")
            await w.drain()
            return
        await w.drain()


async def _smtp_endless(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"220 hostile.test ESMTP\r\n")
    await r.readline()
    await _forever(w, b"250-" + b"X" * 60 + b"\r\n")


async def _imap_greeting(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"* OK ")
    await _forever(w, CHUNK)


async def _imap_literal(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"* OK hi\r\n")
    await r.readline()
    w.write(b"* CAPABILITY {4294967295}\r\n")
    await _forever(w, CHUNK)


async def _imap_lines(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"* OK hi\r\n")
    await r.readline()
    await _forever(w, b"* OK x\r\n" * 8192)


async def _pop3_capa(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"+OK hi\r\n")
    await r.readline()
    await _forever(w, b"+OK\r\n" + b"X-CAPA\r\n" * 8192)


def _drip(greeting: bytes) -> Talk:
    async def talk(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        for byte in greeting + b"x" * 1000:
            w.write(bytes([byte]))
            await w.drain()
            await asyncio.sleep(0.1)

    return talk


class Scripted(LoopbackServer):
    def __init__(self, talk: Talk) -> None:
        super().__init__()
        self.talk = talk

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.talk(reader, writer)


# name: (protocol, hostile, the server)
SERVERS: dict[str, tuple[MonitorType, bool, Callable[[], LoopbackServer]]] = {
    "smtp normal": ("smtp", False, lambda: Scripted(_smtp_normal)),
    "smtp 250- forever": ("smtp", True, lambda: Scripted(_smtp_endless)),
    "smtp slowloris": ("smtp", True, lambda: Scripted(_drip(b"220 slow"))),
    "imap normal": ("imap", False, lambda: ImapPeer()),
    "imap greeting without end": ("imap", True, lambda: Scripted(_imap_greeting)),
    "imap literal {4294967295}": ("imap", True, lambda: Scripted(_imap_literal)),
    "imap lines forever": ("imap", True, lambda: Scripted(_imap_lines)),
    "imap slowloris": ("imap", True, lambda: Scripted(_drip(b"* OK slow"))),
    "pop3 normal": ("pop3", False, lambda: Pop3Peer()),
    "pop3 CAPA without '.'": ("pop3", True, lambda: Scripted(_pop3_capa)),
    "pop3 slowloris": ("pop3", True, lambda: Scripted(_drip(b"+OK slow"))),
}


def _serve(ports: "multiprocessing.Queue[dict[str, int]]") -> None:
    async def main() -> None:
        peers = {name: make() for name, (_, _, make) in SERVERS.items()}
        for peer in peers.values():
            await peer.__aenter__()
        ports.put({name: peer.port for name, peer in peers.items()})
        await asyncio.Event().wait()

    asyncio.run(main())


def _job(protocol: MonitorType, port: int, n: int) -> CheckJob:
    config = (
        SmtpConfig() if protocol == "smtp" else ImapPopConfig(protocol=protocol)  # type: ignore[arg-type]
    )
    job = make_job(protocol, port, config, timeout=DEADLINE_S)
    return msgspec.structs.replace(job, job_id=f"{job.job_id}-{n}")


Run = tuple[float, list[float], int, dict[str, int]]


async def _run(protocol: MonitorType, port: int) -> Run:
    """RSS growth at the peak (MB), the loop's lags (ms), the largest result (B), the kinds."""
    contexts = build_ssl_contexts()
    with Watch() as w:
        results = await asyncio.gather(
            *(
                run_check(_job(protocol, port, n), "bench", True, contexts, clock=WALL)
                for n in range(CHECKS)
            )
        )
    kinds: dict[str, int] = {}
    for result in results:
        kinds[str(result.error_kind)] = kinds.get(str(result.error_kind), 0) + 1
    largest = max(len(msgspec.json.encode(r)) for r in results)
    return w.peak - w.start, w.lags, largest, kinds


def run() -> bool:
    print(
        f"hostile mail servers: {CHECKS} checks at once per server, deadline {DEADLINE_S:g} s"
        f" ({machine()}; load {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[dict[str, int]] = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(queue,), daemon=True)
    proc.start()
    ok = True
    try:
        ports = queue.get(timeout=60)
        normal: dict[str, tuple[float, float]] = {}
        for name, (protocol, hostile, _) in SERVERS.items():
            rss, lags, largest, kinds = asyncio.run(_run(protocol, ports[name]))
            lags.sort()
            p99 = percentile(lags, 99)
            if not hostile:
                normal[protocol] = (rss, p99)
            rss0, lag0 = normal[protocol]
            good = (
                largest <= RESULT_MAX
                and "internal" not in kinds
                and (not hostile or "None" not in kinds)
                and rss <= RSS_RATIO_MAX * rss0 + RSS_SLACK_MB
                and p99 <= LAG_RATIO_MAX * lag0 + LAG_SLACK_MS
            )
            ok = ok and good
            print(
                f"  {name:28}: peak RSS growth {rss:6.1f} MB, loop lag p99 {p99:6.1f} ms"
                f" (max {lags[-1] if lags else 0:.0f}), largest result {largest:,} B,"
                f" kinds {kinds}{'' if good else '  MISSED'}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.join(timeout=10)
    print(f"  -> {'ok' if ok else 'MISSED'} (load now {os.getloadavg()[0]:.1f})", flush=True)
    return ok


if __name__ == "__main__":
    run()
