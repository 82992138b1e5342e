"""A TLS check's cost by layer (issue 70): the same exchange with Debian's Dovecot or Postfix on
loopback, run by each layer of the agent's path alone, so the difference of two layers is what
the upper one adds.

    python -m bench.tls_layers cpu IMAPS [--checks N] [--rounds R]
        interleaved rounds of every layer in one process; CPU ms per check of each.
    valgrind --tool=callgrind -- python -m bench.tls_layers one IMAPS LAYER --checks N
        one layer, N checks after the warm-up, at concurrency 2 (callgrind runs ~50x slower):
        the difference of a run of N and one of N + M, over M, is a check's instructions.

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
from shared.loop import run_loop
from shared.mailclient import imap as imap_client
from shared.mailclient import smtp as smtp_client
from shared.mailclient.pop3 import Pop3
from shared.mailclient.socket_transport import open_transport
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
    sock = await connect_socket(target, Recorder())
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


async def _bare_socket(module: Module, target: Target, ctx: ssl.SSLContext) -> None:
    """The bare protocol on shared/mailclient/socket_transport.py's transport."""
    loop = asyncio.get_running_loop()
    d = module.floor
    sock = await connect_socket(target, Recorder())
    done: asyncio.Future[None] = loop.create_future()
    proto = _Lines(list(d.secured) if d.implicit else list(d.clear), done)
    tr = await open_transport(proto, sock, ctx if d.implicit else None, NAME)
    try:
        await done
        if d.tls and not d.implicit:
            done = loop.create_future()
            proto.steps, proto.done = list(d.secured), done
            await tr.start_tls(ctx, NAME)
            proto._send()
            await done
    finally:
        tr.close()


async def _library(module: Module, target: Target, ctx: ssl.SSLContext) -> None:
    """The mail library alone, as the probers drive it (no Recorder facts, no results)."""
    config = module.config
    sock = await connect_socket(target, Recorder())
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
    module: Module, port: int, contexts: SslContexts
) -> dict[str, Callable[[int], Awaitable[list[str]]]]:
    job = make_job(
        module.monitor_type, port, module.config, hostname=NAME, timeout=10, expires_in=86400
    )
    ctx = contexts.verified
    target = Target(NAME, ("127.0.0.1",), port, ctx, NAME)
    prober = PROBERS[module.monitor_type]

    async def many(one: Check, n: int, concurrency: int) -> list[str]:
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
        result = await run_check(job, "bench", True, contexts)
        if result.status != "up":
            raise RuntimeError(result.message)

    layers: dict[str, Check] = {
        "bare": lambda: _bare(module, target, ctx),
        "bare_socket": lambda: _bare_socket(module, target, ctx),
        "library": lambda: _library(module, target, ctx),
        "prober": lambda: prober(target, job, Recorder()),
        "run_check": run_one,
    }
    out: dict[str, Callable[[int], Awaitable[list[str]]]] = {}
    out["floor"] = _floor_of(module, port, ctx)
    for name, one in layers.items():
        out[name] = lambda n, one=one: many(one, n, _concurrency)  # type: ignore[misc]
    out["worker"] = lambda n: _agent_checks(job, contexts, n, _concurrency)
    return out


def _floor_of(
    module: Module, port: int, ctx: ssl.SSLContext
) -> Callable[[int], Awaitable[list[str]]]:
    async def run(n: int) -> list[str]:
        return floor.run(module.floor, ctx, port, NAME, n, _concurrency)

    return run


LAYERS = ("floor", "bare", "bare_socket", "library", "prober", "run_check", "worker")
_concurrency = 2


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


async def _cpu_rounds(
    module: Module, port: int, contexts: SslContexts, checks: int, rounds: int, layers: list[str]
) -> None:
    runs = _checks(module, port, contexts)
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
        f"{module.name}, concurrency {_concurrency}, {checks} x {rounds}, load {load:.1f}",
        file=sys.__stdout__,
    )
    base = min(figures["floor"]) if "floor" in figures else None
    for name in layers:
        f = figures[name]
        rel = f"  x{min(f) / base:.2f} of the floor" if base else ""
        print(f"  {name:10} {' '.join(f'{x:.3f}' for x in f)} ms{rel}", file=sys.__stdout__)


async def _one(module: Module, port: int, contexts: SslContexts, layer: str, checks: int) -> None:
    runs = _checks(module, port, contexts)
    await runs[layer](50)
    failed = await runs[layer](checks)
    print(
        f"{module.name} {layer}: {checks} checks, {len(failed)} failed {failed[:1]}",
        file=sys.__stdout__,
    )


async def _marks(
    module: Module, port: int, contexts: SslContexts, layers: list[str], checks: int
) -> None:
    """Under `valgrind --tool=callgrind --dump-before=getppid`: each layer warmed up, then a
    dump, its checks, a dump, so that every even part from the second is one layer's checks."""
    runs = _checks(module, port, contexts)
    for layer in layers:
        await runs[layer](WARMUP)
        os.getppid()
        failed = await runs[layer](checks)
        os.getppid()
        print(
            f"{module.name} {layer}: {checks} checks, {len(failed)} failed {failed[:1]}",
            file=sys.__stdout__,
        )


WARMUP = 10


def main() -> None:
    global _concurrency
    parser = argparse.ArgumentParser(prog="python -m bench.tls_layers")
    parser.add_argument("mode", choices=("cpu", "one", "marks"))
    parser.add_argument("module", choices=[m.name for m in MODULES])
    parser.add_argument("layer", nargs="?", default=None)
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--layers", default=",".join(LAYERS))
    args = parser.parse_args()
    _concurrency = args.concurrency
    if (why := mailservers.available()) is not None:
        sys.exit(f"tls_layers: {why}")
    module = next(m for m in MODULES if m.name == args.module)
    ca = trustme.CA()
    cert = ca.issue_cert(NAME, common_name=NAME)
    root = Path(f"/tmp/mailprobe-tls-layers-{uuid.uuid4().hex[:8]}")
    with mailservers.MailServers(root, cert.private_key_and_cert_chain_pem.bytes()) as servers:
        stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115
        shared_logging.configure("json", "INFO")
        sys.stderr = stderr
        contexts = build_ssl_contexts(cadata=ca.cert_pem.bytes().decode())
        port = servers.ports[module.server]
        if args.mode == "cpu":
            run_loop(
                _cpu_rounds(
                    module, port, contexts, args.checks, args.rounds, args.layers.split(",")
                )
            )
        elif args.mode == "marks":
            run_loop(_marks(module, port, contexts, args.layers.split(","), args.checks))
        else:
            run_loop(_one(module, port, contexts, args.layer, args.checks))


if __name__ == "__main__":
    main()
