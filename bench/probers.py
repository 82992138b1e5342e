"""Agent CPU per check: process CPU time over N checks per protocol, against loopback peers
served from a separate process (so the servers' CPU is not counted).

The probers alone, in this process (no NATS): what each dialogue costs. The issue's targets,
which count the agent's NATS work too, are checked by bench/agent.py. A check that is not `up`
fails the run.

Issue 15 added certificate facts (fingerprint, issuer, SANs, key, signature, the name match of an
unverified session) to every TLS result: their CPU per check is measured apart, on the same
certificate, and must stay within 10 % of the cheapest TLS check's CPU at concurrency. Since
issue 24 they are computed once per certificate: a check pays a digest and a lookup.
"""

import asyncio
import multiprocessing
import ssl
import statistics
import sys
import time
from multiprocessing.connection import Connection

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.probers.certs import CertCache, cert_facts, name_matches
from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from shared.clock import WALL
from shared.messages import ImapPopConfig, MonitorType, SmtpConfig
from testkit.common import machine
from testkit.peers.imap import ImapPeer
from testkit.peers.jobs import make_job
from testkit.peers.pop3 import Pop3Peer
from testkit.peers.smtp import SmtpPeer

CHECKS = 400
CONCURRENCY = 20
WARMUP = 20
FACTS_ROUNDS = 2000
TARGET_FACTS_SHARE = 0.10

SCENARIOS: dict[str, tuple[MonitorType, SmtpConfig | ImapPopConfig]] = {
    "smtp plain": ("smtp", SmtpConfig(ignore_tls=True)),
    "smtp starttls": ("smtp", SmtpConfig()),
    "smtps": ("smtp", SmtpConfig(secure=True)),
    "imaps": ("imap", ImapPopConfig(protocol="imap", tls=True)),
    "pop3s": ("pop3", ImapPopConfig(protocol="pop3", tls=True)),
}


def _serve(conn: Connection) -> None:
    asyncio.run(_serve_async(conn))


async def _serve_async(conn: Connection) -> None:
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", common_name="localhost").configure_cert(tls)
    async with (
        SmtpPeer(starttls=tls) as plain,
        SmtpPeer(implicit_tls=tls) as smtps,
        ImapPeer(ssl_context=tls) as imaps,
        Pop3Peer(ssl_context=tls) as pop3s,
    ):
        ports = {
            "smtp plain": plain.port,
            "smtp starttls": plain.port,
            "smtps": smtps.port,
            "imaps": imaps.port,
            "pop3s": pop3s.port,
        }
        conn.send((ports, ca.cert_pem.bytes().decode()))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop


async def _measure(name: str, port: int, contexts: SslContexts) -> tuple[float, float, float, int]:
    monitor_type, config = SCENARIOS[name]
    job = make_job(monitor_type, port, config, hostname="localhost", timeout=10)

    async def one() -> bool:
        return (await run_check(job, "bench", True, contexts, clock=WALL)).status == "up"

    for _ in range(WARMUP):
        await one()
    walls: list[float] = []
    failures = 0
    cpu0 = time.process_time()
    for _ in range(CHECKS):
        t0 = time.perf_counter()
        failures += not await one()
        walls.append(time.perf_counter() - t0)
    cpu_seq = (time.process_time() - cpu0) / CHECKS
    cpu0 = time.process_time()
    for _ in range(CHECKS // CONCURRENCY):
        oks = await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
        failures += oks.count(False)
    cpu_conc = (time.process_time() - cpu0) / (CHECKS // CONCURRENCY * CONCURRENCY)
    return cpu_seq * 1000, cpu_conc * 1000, statistics.median(walls) * 1000, failures


def _context_cost() -> float:
    n = 20
    cpu0 = time.process_time()
    for _ in range(n):
        ssl.create_default_context()
    return (time.process_time() - cpu0) / n * 1000


def _facts_cost() -> tuple[float, float]:
    """CPU ms of the certificate facts issue 15 added, per TLS check, in the worst case, an
    unverified session (its name is matched in Python): as a check pays them (found by the
    certificate's digest, issue 24), and computed afresh (a certificate met for the first time)."""
    pem = trustme.CA().issue_cert("localhost", "mail.example").cert_chain_pems[0].bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    cache = CertCache()
    cpu0 = time.process_time()
    for _ in range(FACTS_ROUNDS):
        cache.facts(der).names_host("localhost")
    cached = (time.process_time() - cpu0) * 1000 / FACTS_ROUNDS
    cpu0 = time.process_time()
    for _ in range(FACTS_ROUNDS // 10):
        facts = cert_facts(der)
        name_matches(facts.cert, "localhost")
    return cached, (time.process_time() - cpu0) * 1000 / (FACTS_ROUNDS // 10)


def run() -> bool:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    try:
        ports, ca_pem = parent.recv()
        contexts = build_ssl_contexts(cadata=ca_pem)
        print(f"probers: agent CPU per check ({machine()}; {CHECKS} checks each)")
        print(f"  building one SSLContext costs {_context_cost():.1f} ms CPU (built once)")
        ok = True
        tls_cpu: list[float] = []
        for name in SCENARIOS:
            seq, conc, wall, failures = asyncio.run(_measure(name, ports[name], contexts))
            ok = ok and failures == 0
            if name != "smtp plain":
                tls_cpu.append(conc)
            print(
                f"  {name:<14} {seq:6.2f} ms CPU sequential   {conc:6.2f} ms CPU at "
                f"{CONCURRENCY} concurrent   wall p50 {wall:6.2f} ms   failures {failures}"
            )
        facts, fresh = _facts_cost()
        share = facts / min(tls_cpu)
        print(
            f"  certificate facts {facts:.3f} ms CPU per TLS check = {share:.1%} of the cheapest"
            f" TLS check (target <= {TARGET_FACTS_SHARE:.0%}); {fresh:.3f} ms for a"
            " certificate met for the first time"
        )
        return ok and share <= TARGET_FACTS_SHARE
    finally:
        parent.send("stop")
        server.join(5)
        if server.is_alive():
            server.terminate()


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
