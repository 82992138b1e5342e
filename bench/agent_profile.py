"""Where an agent's CPU per check goes: the exporter benchmark's agent side, one module at a time,
under a sampling profiler (issue 57; bench/results/agent-tls-cpu.md has what it found).

    python -m bench.agent_profile run "IMAPS" [--checks N] [--rounds R]
        the agent's check path (bench/exporter.py: run_check + encode + the log line, uvloop,
        concurrency 50) against Debian's Dovecot and Postfix on loopback; prints CPU ms per
        check of each round. Root only, as the exporter benchmark.
    py-spy record --native --format raw -o imaps.raw -- python -m bench.agent_profile run IMAPS
        the same, sampled with C frames (OpenSSL, uvloop, the kernel's share through libc).
    valgrind --tool=callgrind -- python -m bench.agent_profile run IMAPS --concurrency 2 ...
        instructions, which the machine's load does not move: at concurrency 2 (callgrind runs
        ~50x slower; at 50 the checks time out), the difference between a run of N checks and
        one of N + 100, divided by 100, is a check's (start-up and the trust store fall out).
    python -m bench.agent_profile run IMAPS --floor
        the same exchanges by the floor's client (testkit/floor.py) instead of the agent's path.
    python -m bench.agent_profile where imaps.raw [pop3s.raw ...]
        a table of each file's samples by what they were doing (CATEGORIES), start-up left out.

py-spy comes with the dev extra (`make install`).
"""

import argparse
import collections
import os
import resource
import sys
import uuid
from pathlib import Path

import trustme

from agent.probers.tls import build_ssl_contexts
from bench import mailservers
from bench.exporter import CONCURRENCY, MODULES, WARMUP, _agent_checks
from shared import logging as shared_logging
from shared.loop import run_loop
from testkit import floor
from testkit.peers.jobs import make_job

# A sample goes to the first category one of whose markers names a frame, looking from the
# innermost frame out: an OpenSSL routine called by the handshake counts as that routine.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gc: the cyclic collector", ("gc_collect_main",)),
    ("handshake: certificate parsing (d2i)", ("ASN1_item_d2i_ex",)),
    ("handshake: chain building", ("X509_verify_cert",)),
    ("handshake: signature checks", ("EVP_DigestVerifyFinal", "EVP_DigestVerify")),
    ("handshake: ECDHE key share", ("EVP_PKEY_generate", "EVP_PKEY_derive")),
    ("kernel: write (loopback TCP)", ("write (libc", "writev (libc", "send (libc")),
    ("kernel: read", ("read (libc", "recv (libc")),
    (
        "kernel: socket, connect, options",
        ("connect (libc", "socket (libc", "setsockopt (libc", "getsockopt (libc", "ioctl (libc"),
    ),
    ("kernel: close", ("close (libc", "shutdown (libc")),
    ("event loop: epoll", ("epoll_",)),
    ("handshake: the rest (transcript, HKDF, records)", ("do_handshake",)),
    ("TLS: peer certificate as a dict (the loop's extra info)", ("_decode_certificate",)),
    ("TLS: SSL object per connection", ("wrap_bio", "SSLObject._create", "SSL_free", "SSL_new")),
    (
        "TLS: application records",
        ("_ssl__SSLSocket_read", "_ssl__SSLSocket_write", "SSL_read", "SSL_write", "MemoryBIO"),
    ),
    ("certificate facts (tls_info)", ("tls_info (",)),
    ("the log line (structlog)", ("structlog/",)),
    ("result: encoded (msgspec)", ("encode (shared/messages",)),
    ("result: built", ("build_result (",)),
    ("IMAP library (aioimaplib)", ("aioimaplib/",)),
    ("asyncio streams (POP3)", ("asyncio/streams.py",)),
    ("deadlines (asyncio.timeout)", ("asyncio/timeouts.py",)),
    ("DNS (the resolver's cache)", ("agent/resolver.py",)),
    ("the probers' own code", ("agent/probers/",)),
    ("the benchmark's loop", ("bench/exporter.py",)),
    ("event loop and tasks (uvloop, asyncio)", ("loop.c", "uv_", "_asynciomodule", "asyncio/")),
)
OTHER = "other (interpreter, allocator)"
# Samples of start-up and shutdown: imports, the servers, the contexts.
STARTUP = ("_call_with_frames_removed", "MailServers", "build_ssl_contexts", "wait_port")


def _cpu_s() -> tuple[float, float]:
    """This process's CPU seconds: in user space, in the kernel."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def _checks(
    ports: dict[str, int],
    ca_pem: str,
    name: str,
    checks: int,
    rounds: int,
    concurrency: int,
    warmup: int,
    on_floor: bool,
) -> None:
    contexts = build_ssl_contexts(cadata=ca_pem)
    module = next(m for m in MODULES if m.name == name)
    port = ports[module.server]
    job = make_job(module.monitor_type, port, module.config, hostname="localhost", timeout=10)

    async def checks_of(n: int) -> list[str]:
        if on_floor:
            return floor.run(module.floor, contexts.verified, port, "localhost", n, concurrency)
        return await _agent_checks(job, contexts, n, concurrency)

    await checks_of(warmup)
    for _ in range(rounds):
        user0, system0 = _cpu_s()
        failed = await checks_of(checks)
        user1, system1 = _cpu_s()
        user, system = (user1 - user0) / checks * 1000, (system1 - system0) / checks * 1000
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        side = " (floor)" if on_floor else ""
        print(
            f"{name}{side}: {user + system:.3f} ms CPU per check ({user:.3f} user,"
            f" {system:.3f} kernel; {checks:,} checks at concurrency"
            f" {concurrency}), peak RSS {peak_mb:.0f} MB, {len(failed)} failed {failed[:1]}",
            file=sys.__stdout__,
            flush=True,
        )


def run(
    name: str,
    checks: int,
    rounds: int,
    concurrency: int = CONCURRENCY,
    warmup: int = WARMUP,
    on_floor: bool = False,
) -> None:
    if (why := mailservers.available()) is not None:
        sys.exit(f"agent_profile: {why}")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", common_name="localhost")
    root = Path(f"/tmp/mailprobe-agent-profile-{uuid.uuid4().hex[:8]}")
    with mailservers.MailServers(root, cert.private_key_and_cert_chain_pem.bytes()) as servers:
        # The agent's logging (JSON lines at INFO) to /dev/null, as the exporter benchmark has it.
        stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115  # for the process
        shared_logging.configure("json", "INFO")
        sys.stderr = stderr
        run_loop(
            _checks(
                servers.ports,
                ca.cert_pem.bytes().decode(),
                name,
                checks,
                rounds,
                concurrency,
                warmup,
                on_floor,
            )
        )


def where(path: Path) -> tuple[collections.Counter[str], int]:
    """Samples of a py-spy raw file (`frame;frame;... count` lines) by category, and their
    total, start-up left out."""
    found: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "run_until_complete" not in stack or any(m in stack for m in STARTUP):
            continue
        total += int(count)
        found[_category(stack.split(";"))] += int(count)
    return found, total


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return OTHER


def table(paths: list[Path]) -> str:
    counted = [where(p) for p in paths]
    names = sorted(
        {name for found, _ in counted for name in found},
        key=lambda n: -sum(found[n] / max(total, 1) for found, total in counted),
    )
    lines = [
        "| where the CPU goes | " + " | ".join(p.stem for p in paths) + " |",
        "| --- |" + " ---: |" * len(paths),
    ]
    for name in names:
        shares = (f"{found[name] / max(total, 1):.1%}" for found, total in counted)
        lines.append(f"| {name} | " + " | ".join(shares) + " |")
    lines.append("| samples | " + " | ".join(str(total) for _, total in counted) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_profile")
    commands = parser.add_subparsers(dest="command", required=True)
    running = commands.add_parser("run", help="run one module's checks, CPU per check")
    running.add_argument("module", choices=[m.name for m in MODULES])
    running.add_argument("--checks", type=int, default=2000)
    running.add_argument("--rounds", type=int, default=3)
    running.add_argument("--concurrency", type=int, default=CONCURRENCY)
    running.add_argument("--warmup", type=int, default=WARMUP)
    running.add_argument("--floor", action="store_true", help="the floor's client instead")
    tabling = commands.add_parser("where", help="py-spy raw files as a table by category")
    tabling.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.module, args.checks, args.rounds, args.concurrency, args.warmup, args.floor)
    else:
        print(table(args.files))


if __name__ == "__main__":
    main()
