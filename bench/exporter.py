"""The agent side by side with Debian's prometheus-blackbox-exporter (issue 24): CPU per check of
each prober's own process, in one run, against the same Debian Postfix and Dovecot on loopback,
both doing the same dialogue with the same TLS upgrade and verification.

Each module runs CHECKS checks at CONCURRENCY in flight, RUNS times, the exporter's, the
agent's and the floor's runs interleaved; a prober's CPU is its process's utime + stime from
/proc over its run.

- The exporter is probed over HTTP (`/probe?module=...`) by this process, whose CPU is not
  counted; its HTTP serving and metrics rendering are in its figure.
- The agent side is a process running the agent's check path as the worker does for each job:
  `run_check` (uvloop, the same contexts, verifying against the servers' CA), the result encoded
  for the wire, and the worker's per-check log line at INFO (the agent's JSON logging, to
  /dev/null). The NATS fetch, publish and ack are not in it (bench/agent.py measures an agent
  with them): the exporter has no queue either.
- The floor (issue 70) is a process running testkit/floor.py, the cheapest client Python's `ssl`
  allows for the module's exchange: the same dialogue and a verified handshake on the agent's
  own verifying context, nothing else. Its ratio to the exporter is the lowest any Python client
  can reach on this host's Python and OpenSSL; before the runs it must refuse the servers'
  certificate for another name.
- With BENCH_OPENSSL=DIR (a build of testkit/openssl.py, `make bench-openssl`), the agent's and
  the floor's processes run twice more in the same runs, on that OpenSSL (LD_LIBRARY_PATH):
  with its default groups (OpenSSL 3.5 sends X25519MLKEM768 and X25519 key shares), and with an
  OPENSSL_CONF that sends one X25519 share and still offers X25519MLKEM768 first
  (testkit.openssl.ONE_SHARE_GROUPS; the image ships no such file: bench/results/ossl35.md).
  The exporter and the mail servers stay on this host's. Targets are judged on this host's
  OpenSSL; the other rows are printed beside them.

Targets (issue 70, a margin that survives the CPU): the agent's CPU per check <= 0.5x the
exporter's on every TLS module, <= 0.3x on SMTP plain (the floor has none: it is printed). A
check that does not succeed on any side fails the run. Absent the exporter, Postfix or Dovecot
(or not root), the benchmark says so and is skipped: `make bench` installs them
(`make blackbox`).
"""

import asyncio
import contextlib
import functools
import math
import multiprocessing
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import structlog
import trustme

from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from bench import mailservers
from shared import embedded
from shared import logging as shared_logging
from shared.clock import WALL
from shared.loop import run_loop
from shared.messages import CheckJob, ImapPopConfig, MonitorType, SmtpConfig, encode
from testkit import floor, openssl
from testkit.common import cpu_s, loop_seconds, machine, verdict
from testkit.peers.jobs import make_job

EXPORTER = "/usr/bin/prometheus-blackbox-exporter"
CHECKS = int(os.environ.get("BENCH_EXPORTER_CHECKS", "1000"))
RUNS = int(os.environ.get("BENCH_EXPORTER_RUNS", "3"))
CONCURRENCY = 50
WARMUP = 100
TARGET_RATIO = 0.5  # TLS modules
TARGET_PLAIN_RATIO = 0.3  # the module without TLS


@dataclass(frozen=True)
class Build:
    """The OpenSSL an agent and a floor process run on: this host's (no variables), or another
    build (LD_LIBRARY_PATH) with its default configuration or another (OPENSSL_CONF)."""

    label: str
    variables: dict[str, str] = field(default_factory=dict)


def builds(directory: Path) -> list[Build]:
    """This host's OpenSSL, and BENCH_OPENSSL's build twice when it is set (its configuration
    files written in `directory`)."""
    out = [Build("this host")]
    named = os.environ.get(openssl.ENV_VAR)
    if named:
        where = Path(named).expanduser()
        one_share = openssl.groups_conf(directory / "one-share.cnf", openssl.ONE_SHARE_GROUPS)
        out.append(Build("default groups", openssl.env(where)))
        out.append(Build("one X25519 share", openssl.env(where, one_share)))
    return out


@dataclass(frozen=True)
class Module:
    name: str
    server: str  # a port name of MailServers
    monitor_type: MonitorType
    config: SmtpConfig | ImapPopConfig
    exporter: str  # the exporter module's tcp section (YAML), the same dialogue as the agent's
    floor: floor.Dialogue  # the same again, for the floor's client


def _dialogue(*steps: tuple[str, str]) -> str:
    return "\n".join(f'        - {kind}: "{text}"' for kind, text in steps)


_EHLO = (("send", "EHLO mailprobe\\r"), ("expect", "^250 "))
_QUIT = (("send", "QUIT\\r"), ("expect", "^221 "))
_CAPABILITY = (("send", "c CAPABILITY\\r"), ("expect", "^c OK"))
_LOGOUT = (("send", "l LOGOUT\\r"), ("expect", "^l OK"))
_CAPA = (("send", "CAPA\\r"), ("expect", "^\\\\.\\r?$"))
# The floor's steps: a command (b"": none) and the line that ends its reply.
_F_EHLO = (b"EHLO mailprobe\r\n", b"250 ")
_F_CAPABILITY = (b"c CAPABILITY\r\n", b"c OK")
_F_LOGOUT = (b"l LOGOUT\r\n", b"l OK")
_F_CAPA = (b"CAPA\r\n", b".\r\n")

MODULES = (
    Module(
        "SMTP STARTTLS",
        "smtp",
        "smtp",
        SmtpConfig(),
        _dialogue(
            ("expect", "^220 "),
            *_EHLO,
            ("send", "STARTTLS\\r"),
            ("expect", "^220 "),
        )
        + "\n        - starttls: true\n"
        + _dialogue(*_EHLO, *_QUIT),
        floor.Dialogue(
            ((b"", b"220 "), _F_EHLO, (b"STARTTLS\r\n", b"220 ")),
            tls=True,
            secured=(_F_EHLO, (b"QUIT\r\n", b"221 ")),
        ),
    ),
    Module(
        "SMTPS",
        "smtps",
        "smtp",
        SmtpConfig(secure=True),
        _dialogue(("expect", "^220 "), *_EHLO, *_QUIT),
        floor.Dialogue(
            tls=True, implicit=True, secured=((b"", b"220 "), _F_EHLO, (b"QUIT\r\n", b"221 "))
        ),
    ),
    Module(
        "SMTP plain",
        "smtp",
        "smtp",
        SmtpConfig(ignore_tls=True),
        _dialogue(("expect", "^220 "), *_EHLO, *_QUIT),
        floor.Dialogue(((b"", b"220 "), _F_EHLO, (b"QUIT\r\n", b"221 "))),
    ),
    Module(
        "IMAPS",
        "imaps",
        "imap",
        ImapPopConfig(protocol="imap", tls=True),
        _dialogue(("expect", "^\\\\* OK"), *_CAPABILITY, *_LOGOUT),
        floor.Dialogue(tls=True, implicit=True, secured=((b"", b"* OK"), _F_CAPABILITY, _F_LOGOUT)),
    ),
    Module(
        "IMAP STARTTLS",
        "imap",
        "imap",
        ImapPopConfig(protocol="imap"),
        _dialogue(
            ("expect", "^\\\\* OK"),
            *_CAPABILITY,
            ("send", "s STARTTLS\\r"),
            ("expect", "^s OK"),
        )
        + "\n        - starttls: true\n"
        + _dialogue(*_CAPABILITY, *_LOGOUT),
        floor.Dialogue(
            ((b"", b"* OK"), _F_CAPABILITY, (b"s STARTTLS\r\n", b"s OK")),
            tls=True,
            secured=(_F_CAPABILITY, _F_LOGOUT),
        ),
    ),
    Module(
        "POP3 STLS",
        "pop3",
        "pop3",
        ImapPopConfig(protocol="pop3"),
        _dialogue(("expect", "^\\\\+OK"), *_CAPA, ("send", "STLS\\r"), ("expect", "^\\\\+OK"))
        + "\n        - starttls: true\n"
        + _dialogue(*_CAPA, ("send", "QUIT\\r"), ("expect", "^\\\\+OK")),
        floor.Dialogue(
            ((b"", b"+OK"), _F_CAPA, (b"STLS\r\n", b"+OK")),
            tls=True,
            secured=(_F_CAPA, (b"QUIT\r\n", b"+OK")),
        ),
    ),
    Module(
        "POP3S",
        "pop3s",
        "pop3",
        ImapPopConfig(protocol="pop3", tls=True),
        _dialogue(("expect", "^\\\\+OK"), ("send", "QUIT\\r"), ("expect", "^\\\\+OK")),
        floor.Dialogue(tls=True, implicit=True, secured=((b"", b"+OK"), (b"QUIT\r\n", b"+OK"))),
    ),
)
_IMPLICIT_TLS = {"smtps", "imaps", "pop3s"}


def _module_id(module: Module) -> str:
    return module.name.lower().replace(" ", "_")


def exporter_config(ca_file: str) -> str:
    out = ["modules:"]
    for m in MODULES:
        out.append(
            f"  {_module_id(m)}:\n"
            "    prober: tcp\n"
            "    timeout: 10s\n"
            "    tcp:\n"
            "      preferred_ip_protocol: ip4\n"
            f"      tls: {'true' if m.server in _IMPLICIT_TLS else 'false'}\n"
            "      tls_config:\n"
            f"        ca_file: {ca_file}\n"
            "        server_name: localhost\n"
            "      query_response:\n"
            f"{m.exporter}"
        )
    return "\n".join(out) + "\n"


# The agent side: a process of its own, told what to run over a pipe.


def _agent_main(conn: Connection, ca_pem: str) -> None:
    conn.send(ssl.OPENSSL_VERSION)
    # The agent's own logging set-up (JSON lines at INFO), writing to /dev/null; a traceback of
    # this process still reaches the terminal.
    stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115  # for the process
    shared_logging.configure("json", "INFO")
    sys.stderr = stderr
    run_loop(_agent_serve(conn, ca_pem))


async def _agent_serve(conn: Connection, ca_pem: str) -> None:
    contexts = build_ssl_contexts(cadata=ca_pem)
    modules = {m.name: m for m in MODULES}
    while (request := conn.recv()) is not None:  # blocks the loop: nothing else runs meanwhile
        name, port, checks = request
        module = modules[name]
        job = make_job(module.monitor_type, port, module.config, hostname="localhost", timeout=10)
        conn.send(await _agent_checks(job, contexts, checks))


async def _agent_checks(
    job: CheckJob, contexts: SslContexts, checks: int, concurrency: int = CONCURRENCY
) -> list[str]:
    """`checks` runs of `job`, `concurrency` at a time, each as the worker does it: run_check,
    the result encoded, the one log line; what failed."""
    log = structlog.get_logger("agent.worker")
    failed: list[str] = []
    queue = iter(range(checks))

    async def worker() -> None:
        for _ in queue:
            t0 = time.perf_counter()
            result = await run_check(job, "bench", True, contexts, clock=WALL)
            encode(result)
            log.info(
                "check",
                type=job.monitor_type,
                status=result.status,
                error_kind=result.error_kind,
                ms=result.response_time_ms,
                outcome="acked",
                attempt=1,
                seconds=time.perf_counter() - t0,
            )
            if result.status != "up":
                failed.append(f"{result.error_kind}: {result.message}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


# The floor side: a process of its own, as the agent's.

# A name the servers' certificate does not hold: the floor's client must refuse it.
_WRONG_NAME = "wrong.invalid"


def _floor_main(conn: Connection, ca_pem: str) -> None:
    conn.send(ssl.OPENSSL_VERSION)
    ctx = build_ssl_contexts(cadata=ca_pem).verified  # the agent's context, built as it does
    modules = {m.name: m for m in MODULES}
    while (request := conn.recv()) is not None:
        name, port, checks, server_name = request
        dialogue = modules[name].floor
        conn.send(floor.run(dialogue, ctx, port, server_name, checks, CONCURRENCY))


# The exporter side: probed over HTTP from here.


async def _exporter_checks(
    client: httpx.AsyncClient, module: Module, port: int, n: int
) -> list[str]:
    failed: list[str] = []
    queue = iter(range(n))
    params = {"module": _module_id(module), "target": f"localhost:{port}"}

    async def worker() -> None:
        for _ in queue:
            reply = await client.get("/probe", params=params)
            if "\nprobe_success 1" not in reply.text:
                failed.append(reply.text[-300:])

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return failed


@dataclass
class Side:
    """An agent's and a floor's process on one OpenSSL, and their CPU seconds per module's run."""

    build: Build
    openssl: str  # the processes' ssl.OPENSSL_VERSION
    agent: tuple[int, Connection]
    floor: tuple[int, Connection]
    agent_cpu: dict[str, list[float]] = field(default_factory=dict)
    floor_cpu: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Figures:
    exporter: dict[str, list[float]]
    sides: list[Side]
    failures: list[str]


async def _measure(
    exporter: subprocess.Popen[bytes],
    exporter_url: str,
    sides: list[Side],
    ports: dict[str, int],
) -> Figures:
    figures = Figures({m.name: [] for m in MODULES}, sides, [])
    for side in sides:
        side.agent_cpu = {m.name: [] for m in MODULES}
        side.floor_cpu = {m.name: [] for m in MODULES}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=exporter_url, limits=limits, timeout=30) as client:

        async def exporter_run(module: Module, n: int) -> float:
            cpu0 = cpu_s(exporter.pid)
            failed = await _exporter_checks(client, module, ports[module.server], n)
            cpu = cpu_s(exporter.pid) - cpu0
            figures.failures += [f"exporter {module.name}: {f}" for f in failed[:3]]
            return cpu

        def agent_run(side: Side, module: Module, n: int) -> float:
            pid, conn = side.agent
            cpu0 = cpu_s(pid)
            conn.send((module.name, ports[module.server], n))
            failed: list[str] = conn.recv()
            cpu = cpu_s(pid) - cpu0
            figures.failures += [
                f"agent {module.name}, {side.build.label}: {f}" for f in failed[:3]
            ]
            return cpu

        def floor_run(side: Side, module: Module, n: int, server_name: str = "localhost") -> float:
            pid, conn = side.floor
            cpu0 = cpu_s(pid)
            conn.send((module.name, ports[module.server], n, server_name))
            failed: list[str] = conn.recv()
            cpu = cpu_s(pid) - cpu0
            figures.failures += [
                f"floor {module.name}, {side.build.label}: {f}" for f in failed[:3]
            ]
            return cpu

        for module in MODULES:  # warm-up: imports, caches, connection pools
            await exporter_run(module, WARMUP)
            for side in sides:
                await asyncio.to_thread(agent_run, side, module, WARMUP)
                await asyncio.to_thread(floor_run, side, module, WARMUP)
        figures.failures.clear()
        for side in sides:  # a floor that does not verify is not a floor
            for module in MODULES:
                if module.floor.tls:
                    await asyncio.to_thread(floor_run, side, module, 1, _WRONG_NAME)
                    refused = figures.failures.pop() if figures.failures else ""
                    if "CERTIFICATE_VERIFY_FAILED" not in refused:
                        figures.failures.append(
                            f"floor {module.name} on {side.openssl}: the certificate for"
                            " another name was not refused"
                        )
        for run in range(RUNS):
            for module in MODULES:
                # The probers' order alternates, so none always meets warmer servers.
                measures: list[tuple[list[float], Callable[[], Awaitable[float]]]] = [
                    (
                        figures.exporter[module.name],
                        functools.partial(exporter_run, module, CHECKS),
                    )
                ]
                for side in sides:
                    measures += [
                        (
                            side.agent_cpu[module.name],
                            functools.partial(asyncio.to_thread, agent_run, side, module, CHECKS),
                        ),
                        (
                            side.floor_cpu[module.name],
                            functools.partial(asyncio.to_thread, floor_run, side, module, CHECKS),
                        ),
                    ]
                for figure, measure in measures if run % 2 == 0 else reversed(measures):
                    figure.append(await measure())
    return figures


def _skip_reason() -> str | None:
    if not os.access(EXPORTER, os.X_OK):
        return f"{EXPORTER} is missing (make blackbox installs it)"
    return mailservers.available()


def run() -> bool:
    why = _skip_reason()
    if why is not None:
        print(f"exporter: skipped: {why}")
        return True
    tmp = Path(f"/tmp/mailprobe-bench-exporter-{uuid.uuid4().hex[:8]}")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", common_name="localhost")
    load0 = os.getloadavg()
    try:
        with mailservers.MailServers(
            tmp / "servers", cert.private_key_and_cert_chain_pem.bytes()
        ) as servers:
            ca_file = tmp / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_file))
            config = tmp / "blackbox.yml"
            config.write_text(exporter_config(str(ca_file)))
            port = embedded.free_port()
            exporter = subprocess.Popen(
                [
                    EXPORTER,
                    f"--config.file={config}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(tmp / "exporter.log").open("wb"),
            )
            ctx = multiprocessing.get_context("spawn")
            ca_pem = ca.cert_pem.bytes().decode()
            processes: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
            sides: list[Side] = []
            try:
                for build in builds(tmp):
                    started = []
                    for main in (_agent_main, _floor_main):
                        parent, child = ctx.Pipe()
                        process = ctx.Process(target=main, args=(child, ca_pem))
                        with openssl.environment(build.variables):
                            process.start()
                        processes.append((process, parent))
                        assert process.pid is not None
                        started.append((process.pid, parent))
                    versions = {conn.recv() for _, conn in started}
                    assert len(versions) == 1, versions
                    if build.variables and ssl.OPENSSL_VERSION in versions:
                        raise SystemExit(f"{build.variables}: still on {ssl.OPENSSL_VERSION}")
                    sides.append(Side(build, versions.pop(), started[0], started[1]))
                mailservers.wait_port(port, "the exporter")
                figures = asyncio.run(
                    _measure(exporter, f"http://127.0.0.1:{port}", sides, servers.ports)
                )
            finally:
                for child_process, parent in processes:
                    with contextlib.suppress(OSError):
                        parent.send(None)
                    child_process.join(10)
                    if child_process.is_alive():
                        child_process.terminate()
                embedded.stop(exporter)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after the servers stopped
    load1 = os.getloadavg()
    return _report(figures, load0, load1)


def _report(
    figures: Figures, load0: tuple[float, float, float], load1: tuple[float, float, float]
) -> bool:
    print(
        f"exporter: CPU ms per check, {EXPORTER.rsplit('/', 1)[1]} vs the agent's check path"
        f" (run_check + encode + log line; no NATS) and the floor (testkit/floor.py: the same"
        f" exchange and verification, nothing else), {CHECKS:,} checks x {RUNS} interleaved runs"
        f" per module at concurrency {CONCURRENCY}, Debian Postfix/Dovecot on loopback"
        f" ({machine()}; load average {load0[0]:.2f} before, {load1[0]:.2f} after)"
    )
    print(f"  this machine counts to 10 M in a Python loop in {loop_seconds():.2f} s of CPU")
    ok = not figures.failures
    for side in figures.sides:
        judged = side.build.variables == {}
        print(
            f"  the agent and the floor on {side.openssl}, {side.build.label}"
            + ("" if judged else " (printed beside, not judged)")
            + ":"
        )
        print(
            "  | module        | exporter | agent | ratio | runs' ratios      | target      |"
            " floor | floor ratio | agent / floor |"
        )
        for m in MODULES:
            exp, agt = figures.exporter[m.name], side.agent_cpu[m.name]
            flr = side.floor_cpu[m.name]
            ratio = sum(agt) / sum(exp)
            runs = " ".join(f"{a / e:.2f}" for a, e in zip(agt, exp, strict=True))
            target = TARGET_PLAIN_RATIO if m.name == "SMTP plain" else TARGET_RATIO
            met = ratio <= target
            ok = ok and (met or not judged)
            print(
                f"  | {m.name:<13} | {_ms(exp):8.2f} | {_ms(agt):5.2f} | {ratio:5.2f} |"
                f" {runs:<17} | <= {target}: {verdict(met):<4} | {_ms(flr):5.2f} |"
                f" {_over(flr, exp):11.2f} | {_over(agt, flr):13.2f} |"
            )
    spread = [statistics.pstdev(v) / statistics.mean(v) for v in figures.exporter.values()]
    print(f"  exporter run-to-run spread (stdev/mean): up to {max(spread):.0%}")
    print(
        "  floor: the cheapest client Python's ssl allows for the row's exchange; a target"
        " below a row's floor ratio cannot be met with this Python and OpenSSL"
    )
    for failure in figures.failures[:10]:
        print(f"  failed check: {failure}")
    if figures.failures:
        print(f"  {len(figures.failures)} failed checks: FAIL")
    return ok


def _over(a: list[float], b: list[float]) -> float:
    """The ratio of two sides' CPU; NaN (printed `nan`) when the second read no CPU at all (a
    run too short for the clock's ticks)."""
    return sum(a) / sum(b) if sum(b) > 0 else math.nan


def _ms(cpu_s: list[float]) -> float:
    """CPU ms per check of one side's runs."""
    return sum(cpu_s) / len(cpu_s) / CHECKS * 1000


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
