"""A TLS check's cost by layer (issue 70): the same exchange with Debian's Dovecot or Postfix on
loopback, run by each layer of the agent's path alone, so the difference of two layers is what
the upper one adds.

    valgrind --tool=callgrind --dump-before=getppid --callgrind-out-file=DIR/cg.out \
            -- python -m bench.tls_layers marks IMAPS --checks 30
        every layer in one process at concurrency 2 (callgrind runs ~50x slower): each warmed
        up, then its checks between two dumps, so start-up and warm-up fall out;
    python -m bench.tls_layers parts DIR/cg.out --checks 30
        then prints each layer's instructions per check from those dumps.
    python -m bench.tls_layers cpu IMAPS [--checks N] [--rounds R] [--concurrency C]
        interleaved rounds of every layer in one process; CPU ms per check of each.
    strace -c -- python -m bench.tls_layers one IMAPS LAYER --checks N
        one layer alone (its system calls, say).

Layers, cheapest first (`LAYERS`): the floor (testkit/floor.py); a bare protocol on the event
loop's TLS transport (`create_connection(ssl=)`, `start_tls`); the mail library alone
(aioimaplib, aiosmtplib, the POP3 client) with the transport opened as the agent opens it; the
agent's prober on a Target; `run_check`; the worker's part (the result encoded, the log line).
Root only, as the exporter benchmark (Dovecot's and Postfix's masters drop privileges).
"""

import argparse
import asyncio
import os
import resource
import ssl
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import trustme

from agent.probers import PROBERS
from agent.probers.base import Recorder, Target, connect_socket
from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from bench import mailservers
from bench.exporter import MODULES, Module, _agent_checks
from shared import logging as shared_logging
from shared.clock import WALL
from shared.loop import run_loop
from shared.mailclient import imap as imap_client
from shared.mailclient import smtp as smtp_client
from shared.mailclient.pop3 import Pop3
from shared.messages import ImapPopConfig, SmtpConfig
from testkit import floor
from testkit.peers.jobs import make_job

NAME = "localhost"
Check = Callable[[], Awaitable[None]]


class _Lines(asyncio.Protocol):
    """The floor's dialogue on a transport: each step's command sent, its reply read to the line
    it ends with; STARTTLS by the loop's `start_tls`."""

    def __init__(self, steps: list[floor.Step], done: asyncio.Future[None]) -> None:
        self.steps, self.done = steps, done
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TLS one is no subclass
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if self.steps and self.steps[0][0]:
            self.transport.write(self.steps[0][0])

    def data_received(self, data: bytes) -> None:
        self.buf += data
        last = self.steps[0][1]
        b = self.buf
        if b.endswith(b"\n") and (b.startswith(last) or b"\n" + last in b):
            self.buf = b""
            self.steps.pop(0)
            if not self.steps:
                if not self.done.done():
                    self.done.set_result(None)
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionResetError("closed"))


async def _bare(module: Module, target: Target, ctx: ssl.SSLContext) -> None:
    loop = asyncio.get_running_loop()
    d = module.floor
    sock = await connect_socket(target, Recorder(clock=WALL))
    done: asyncio.Future[None] = loop.create_future()
    first = list(d.secured) if d.implicit else list(d.clear)
    proto = _Lines(first, done)
    tr, _ = await loop.create_connection(
        lambda: proto,
        sock=sock,
        ssl=ctx if d.implicit else None,
        server_hostname=NAME if d.implicit else None,
    )
    try:
        await done
        if d.tls and not d.implicit:
            done = loop.create_future()
            proto.steps, proto.done = list(d.secured), done
            tls = await loop.start_tls(tr, proto, ctx, server_hostname=NAME)
            assert tls is not None
            tr = tls
            proto.transport = tls
            proto._send()
            await done
    finally:
        tr.close()


async def _library(module: Module, target: Target, ctx: ssl.SSLContext) -> None:
    """The mail library alone, as the probers drive it (no Recorder facts, no results)."""
    config = module.config
    sock = await connect_socket(target, Recorder(clock=WALL))
    if isinstance(config, SmtpConfig):
        smtp = smtp_client.client(sock, NAME, ctx, config.secure)
        try:
            await smtp.connect()
            await smtp.ehlo()
            if not config.secure and not config.ignore_tls:
                await smtp.starttls()
                await smtp.ehlo()
            await smtp.quit()
        finally:
            smtp.close()
        return
    assert isinstance(config, ImapPopConfig)
    if config.protocol == "imap":
        proto = await imap_client.open_imap(sock, ctx if config.tls else None, NAME)
        try:
            await proto.greeting
            await proto.ready
            if not config.tls:
                await imap_client.starttls(proto, ctx, NAME)
                await proto.capability()
            await proto.logout()
        finally:
            imap_client.close(proto)
        return
    pop = await Pop3.open(sock, ctx if config.tls else None, NAME, line_max=8192)
    try:
        await pop.line()
        if not config.tls:
            await pop.capa()
            await pop.command("STLS")
            await pop.upgrade(ctx, NAME)
            await pop.capa()
        await pop.command("QUIT")
    finally:
        pop.close()


def _checks(
    module: Module, port: int, contexts: SslContexts, concurrency: int
) -> dict[str, Callable[[int], Awaitable[list[str]]]]:
    job = make_job(
        module.monitor_type, port, module.config, hostname=NAME, timeout=10, expires_in=86400
    )
    ctx = contexts.verified
    target = Target(NAME, ("127.0.0.1",), port, ctx, NAME)
    prober = PROBERS[module.monitor_type]

    async def many(one: Check, n: int) -> list[str]:
        failed: list[str] = []
        queue = iter(range(n))

        async def worker() -> None:
            for _ in queue:
                try:
                    await one()
                except Exception as exc:  # counted, the run goes on
                    failed.append(repr(exc))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return failed

    async def run_one() -> None:
        result = await run_check(job, "bench", True, contexts, clock=WALL)
        if result.status != "up":
            raise RuntimeError(result.message)

    layers: dict[str, Check] = {
        "bare": lambda: _bare(module, target, ctx),
        "library": lambda: _library(module, target, ctx),
        "prober": lambda: prober(target, job, Recorder(clock=WALL)),
        "run_check": run_one,
    }

    async def on_floor(n: int) -> list[str]:
        return floor.run(module.floor, ctx, port, NAME, n, concurrency)

    out: dict[str, Callable[[int], Awaitable[list[str]]]] = {"floor": on_floor}
    for name, one in layers.items():
        out[name] = lambda n, one=one: many(one, n)  # type: ignore[misc]
    out["worker"] = lambda n: _agent_checks(job, contexts, n, concurrency)
    return out


LAYERS = ("floor", "bare", "library", "prober", "run_check", "worker")
WARMUP = 10


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


async def _cpu_rounds(
    runs: dict[str, Callable[[int], Awaitable[list[str]]]],
    name_: str,
    checks: int,
    rounds: int,
    layers: list[str],
    concurrency: int,
) -> None:
    for name in layers:
        await runs[name](50)
    figures: dict[str, list[float]] = {n: [] for n in layers}
    for _ in range(rounds):
        for name in layers:
            c0 = _cpu()
            failed = await runs[name](checks)
            figures[name].append((_cpu() - c0) / checks * 1000)
            if failed:
                print(f"{name}: {len(failed)} failed {failed[:1]}", file=sys.__stdout__)
    load = os.getloadavg()[0]
    print(
        f"{name_}, concurrency {concurrency}, {checks} x {rounds}, load {load:.1f}",
        file=sys.__stdout__,
    )
    base = min(figures["floor"]) if "floor" in figures else None
    for name in layers:
        f = figures[name]
        rel = f"  x{min(f) / base:.2f} of the floor" if base else ""
        print(f"  {name:10} {' '.join(f'{x:.3f}' for x in f)} ms{rel}", file=sys.__stdout__)


async def _marks(
    runs: dict[str, Callable[[int], Awaitable[list[str]]]],
    name: str,
    layers: list[str],
    checks: int,
) -> None:
    """Under `valgrind --tool=callgrind --dump-before=getppid`: each layer warmed up, then a
    dump, its checks, a dump, so that every even part from the second is one layer's checks."""
    for layer in layers:
        await runs[layer](WARMUP)
        os.getppid()
        failed = await runs[layer](checks)
        os.getppid()
        print(
            f"{name} {layer} on {ssl.OPENSSL_VERSION}: {checks} checks, {len(failed)} failed"
            f" {failed[:1]}",
            file=sys.__stdout__,
        )


def parts(out: Path, checks: int, layers: list[str]) -> str:
    """Instructions per check of each layer, from the dumps of a `marks` run (`out`.1, ...)."""
    totals: dict[int, int] = {}
    for path in out.parent.glob(out.name + ".*"):
        for line in path.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                totals[int(path.suffix[1:])] = int(line.split()[1])
                break
    lines, first = [], None
    for i, layer in enumerate(layers):
        total = totals.get(2 * (i + 1))
        if total is None:
            continue
        per = total / checks
        first = first or per
        lines.append(f"  {layer:10} {per / 1e6:7.3f} M instructions per check  x{per / first:.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tls_layers")
    parser.add_argument("mode", choices=("cpu", "one", "marks", "parts"))
    parser.add_argument("module", help="a module of bench.exporter, or parts' dump file")
    parser.add_argument("layer", nargs="?", default=None)
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--layers", default=",".join(LAYERS))
    args = parser.parse_args()
    layers = args.layers.split(",")
    if args.mode == "parts":
        print(parts(Path(args.module), args.checks, layers))
        return
    if (why := mailservers.available()) is not None:
        sys.exit(f"tls_layers: {why}")
    module = next((m for m in MODULES if m.name == args.module), None)
    if module is None:
        sys.exit(f"tls_layers: no module {args.module!r} in bench.exporter")
    ca = trustme.CA()
    cert = ca.issue_cert(NAME, common_name=NAME)
    root = Path(f"/tmp/mailprobe-tls-layers-{uuid.uuid4().hex[:8]}")
    with mailservers.MailServers(root, cert.private_key_and_cert_chain_pem.bytes()) as servers:
        stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115
        shared_logging.configure("json", "INFO")
        sys.stderr = stderr
        contexts = build_ssl_contexts(cadata=ca.cert_pem.bytes().decode())
        runs = _checks(module, servers.ports[module.server], contexts, args.concurrency)
        if args.mode == "cpu":
            cpu = _cpu_rounds(runs, module.name, args.checks, args.rounds, layers, args.concurrency)
            run_loop(cpu)
        elif args.mode == "marks":
            run_loop(_marks(runs, module.name, layers, args.checks))
        else:
            run_loop(_marks(runs, module.name, [args.layer], args.checks))


if __name__ == "__main__":
    main()
