"""Agent: CPU per check of a real agent process (`python -m agent --country DE`), NATS work
included: it pulls the jobs from JOBS, runs them against loopback peers served by another process,
publishes each result to RESULTS and acks the job.

Targets (issue 3): CPU per check SMTP STARTTLS <= 1.8 ms, SMTPS <= 1.7 ms, IMAPS <= 1.4 ms,
POP3S <= 1.3 ms, plain SMTP <= 0.8 ms; >= 1,500 plain and >= 400 STARTTLS checks/s per core
(1 s of CPU / CPU per check); >= 2,000 checks in flight in one process with every timeout firing
within 100 ms of its deadline (a peer that accepts and never answers; responseTimeMs - timeout).

The agent's CPU is read from /proc over each phase: from just before the jobs are published to
when the consumer has nothing pending or unacked. Deployment logging (JSON lines at INFO, one per
check) goes to a file, as an agent's would.
"""

import asyncio
import multiprocessing
import os
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import nats
import trustme
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from shared import embedded
from shared.messages import (
    JOB_TYPES,
    CheckResult,
    ImapPopConfig,
    MonitorType,
    SmtpConfig,
    decode_result,
    encode,
)
from shared.streams import ensure_streams, jobs_consumer_name
from shared.subjects import JOBS_STREAM, jobs_subject
from shared.timefmt import iso_ms, utcnow
from testkit.common import cpu_s, discard_logs, machine, percentile, verdict
from testkit.peers.imap import ImapPeer
from testkit.peers.pop3 import Pop3Peer
from testkit.peers.scripted import ScriptedPeer
from testkit.peers.smtp import SmtpPeer

COUNTRY = "DE"
CONCURRENCY = 200  # the agent's default
TIMEOUT_CHECKS = 2_000
TIMEOUT_S = 2.0
TARGET_TIMEOUT_LATE_MS = 100.0
PHASE_MAX_S = 60.0


@dataclass(frozen=True)
class Scenario:
    name: str
    monitor_type: MonitorType
    config: SmtpConfig | ImapPopConfig
    checks: int
    target_ms: float
    target_per_core: int = 0


SCENARIOS = (
    Scenario("smtp plain", "smtp", SmtpConfig(ignore_tls=True), 3000, 0.8, 1500),
    Scenario("smtp starttls", "smtp", SmtpConfig(), 1500, 1.8, 400),
    Scenario("smtps", "smtp", SmtpConfig(secure=True), 1500, 1.7),
    Scenario("imaps", "imap", ImapPopConfig(protocol="imap", tls=True), 1500, 1.4),
    Scenario("pop3s", "pop3", ImapPopConfig(protocol="pop3", tls=True), 1500, 1.3),
)
WARMUP = Scenario("warm-up", "smtp", SmtpConfig(), 300, 0)
PEER_OF = {
    "smtp plain": "smtp",
    "smtp starttls": "smtp",
    "warm-up": "smtp",
    "smtps": "smtps",
    "imaps": "imaps",
    "pop3s": "pop3s",
}


def _serve(conn: Connection, ca_pem: bytes, cert_pem: bytes) -> None:
    asyncio.run(_serve_async(conn, ca_pem, cert_pem))


async def _serve_async(conn: Connection, ca_pem: bytes, cert_pem: bytes) -> None:
    del ca_pem
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with _temp_file(cert_pem) as path:
        tls.load_cert_chain(path)
    async with (
        SmtpPeer(starttls=tls) as smtp,
        SmtpPeer(implicit_tls=tls) as smtps,
        ImapPeer(ssl_context=tls) as imaps,
        Pop3Peer(ssl_context=tls) as pop3s,
        ScriptedPeer(greeting=None) as silent,
    ):
        ports = {
            "smtp": smtp.port,
            "smtps": smtps.port,
            "imaps": imaps.port,
            "pop3s": pop3s.port,
            "silent": silent.port,
        }
        conn.send(ports)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop


@contextmanager
def _temp_file(data: bytes) -> Iterator[str]:
    path = Path(f"/tmp/mailprobe-bench-{uuid.uuid4().hex}.pem")
    path.write_bytes(data)
    try:
        yield str(path)
    finally:
        path.unlink()


@dataclass
class Collected:
    results: dict[str, list[CheckResult]] = field(default_factory=dict)

    async def on_result(self, msg: Msg) -> None:
        res = decode_result(msg.data)
        self.results.setdefault(res.job_id.split("/", 1)[0], []).append(res)


def _jobs(scenario: Scenario, port: int, timeout: float) -> list[tuple[str, bytes, str]]:
    now = utcnow()
    out = []
    for i in range(scenario.checks):
        job_id = f"{scenario.name.replace(' ', '-')}/{uuid.uuid4()}"
        job = JOB_TYPES[scenario.monitor_type](
            job_id=job_id,
            monitor_id=str(uuid.uuid4()),
            hostname="localhost",
            port=port,
            timeout_seconds=timeout,
            country=COUNTRY,
            scheduled_at=iso_ms(now),
            expires_at=iso_ms(now + timedelta(minutes=10)),
            config=scenario.config,  # type: ignore[arg-type]  # JOB_TYPES matches the config
        )
        del i
        out.append((jobs_subject(COUNTRY), encode(job), job_id))
    return out


async def _drained(js: JetStreamContext, agent: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + PHASE_MAX_S
    while True:
        if agent.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the agent stopped or got stuck (exit code {agent.poll()})")
        try:
            info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name(COUNTRY))
        except NotFoundError:  # the agent creates it when it starts
            await asyncio.sleep(0.05)
            continue
        if not info.num_pending and not info.num_ack_pending:
            return
        await asyncio.sleep(0.02)


async def _phase(
    js: JetStreamContext,
    agent: subprocess.Popen[bytes],
    scenario: Scenario,
    port: int,
    timeout_s: float = 10.0,
) -> tuple[float, float]:
    """Publish the scenario's jobs and wait until the agent has acked them all:
    (agent CPU seconds, wall seconds)."""
    jobs = _jobs(scenario, port, timeout_s)
    cpu0, t0 = cpu_s(agent.pid), time.perf_counter()
    futures = [
        await js.publish_async(s, p, headers={"Nats-Msg-Id": j.split("/", 1)[1]})
        for s, p, j in jobs
    ]
    await asyncio.gather(*futures)
    await _drained(js, agent)
    return cpu_s(agent.pid) - cpu0, time.perf_counter() - t0


def _start_agent(
    nats_url: str, ca_path: str, log_path: Path, concurrency: int
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "NATS_", "LOG_"))}
    env |= {
        "NATS_URL": nats_url,
        "AGENT_ALLOW_PRIVATE_TARGETS": "true",
        "AGENT_CONCURRENCY": str(concurrency),
        "AGENT_ID": f"DE-bench-{concurrency}",
        "AGENT_METRICS_PORT": str(embedded.free_port()),  # metrics on, as deployed
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "SSL_CERT_FILE": ca_path,  # the agent verifies the peers' certificates against our CA
    }
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "--country", COUNTRY], env=env, stdout=log, stderr=log
    )


@dataclass
class Figures:
    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def add(self, line: str, ok: bool | None = None) -> None:
        if ok is not None:
            self.ok = self.ok and ok
            line += f": {verdict(ok)}"
        self.lines.append(line)


async def _run_async(tmp: Path, ca: trustme.CA, ports: dict[str, int], nats_url: str) -> Figures:
    figures = Figures()
    ca_path = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    nc = await nats.connect(nats_url)
    js = nc.jetstream(publish_async_max_pending=20_000)
    await ensure_streams(js)
    collected = Collected()
    await nc.subscribe("mon.results.>", cb=collected.on_result, pending_msgs_limit=1_000_000)
    agent = _start_agent(nats_url, str(ca_path), tmp / "agent.log", CONCURRENCY)
    try:
        await _phase(js, agent, WARMUP, ports["smtp"])
        for sc in SCENARIOS:
            cpu, wall = await _phase(js, agent, sc, ports[PEER_OF[sc.name]])
            await asyncio.sleep(0.2)  # the last results reach our subscription
            got = collected.results.get(sc.name.replace(" ", "-"), [])
            up = sum(1 for r in got if r.status == "up")
            per_check = cpu / sc.checks * 1000
            ok = up == sc.checks and per_check <= sc.target_ms
            figures.add(
                f"  {sc.name:<14} {per_check:5.2f} ms CPU/check  ({sc.checks:,} checks in"
                f" {wall:4.1f} s = {sc.checks / wall:5.0f}/s wall, {up:,} up)"
                f"   target <= {sc.target_ms} ms",
                ok,
            )
            if sc.target_per_core:
                per_core = 1000 / per_check
                figures.add(
                    f"  {sc.name:<14} {per_core:5.0f} checks/s per core (1 s / CPU per check)"
                    f"   target >= {sc.target_per_core:,}",
                    per_core >= sc.target_per_core and up == sc.checks,
                )
    finally:
        embedded.stop(agent)
    agent = _start_agent(nats_url, str(ca_path), tmp / "agent.log", TIMEOUT_CHECKS)
    try:
        await _phase(js, agent, WARMUP, ports["smtp"])
        silent = Scenario("timeouts", "smtp", SmtpConfig(), TIMEOUT_CHECKS, 0)
        _, wall = await _phase(js, agent, silent, ports["silent"], TIMEOUT_S)
        await asyncio.sleep(0.2)
    finally:
        embedded.stop(agent)
    got = collected.results.get("timeouts", [])
    late = [(r.response_time_ms or 0.0) - TIMEOUT_S * 1000 for r in got]
    timeouts = sum(1 for r in got if r.error_kind == "timeout")
    # Checks that had started before the first one ended were all in flight at that moment.
    first_end = min((r.finished_at for r in got), default="")
    in_flight = sum(1 for r in got if r.started_at <= first_end)
    # All of them in flight at once: every check ended within one timeout plus a margin.
    ok = (
        timeouts == TIMEOUT_CHECKS
        and in_flight >= TIMEOUT_CHECKS
        and max((abs(x) for x in late), default=1e9) <= TARGET_TIMEOUT_LATE_MS
        and wall < 2 * TIMEOUT_S
    )
    figures.add(
        f"  {TIMEOUT_CHECKS:,} checks against a silent peer, timeoutSeconds {TIMEOUT_S:g}:"
        f" {in_flight:,} in flight at once, {timeouts:,} timed out, all done in {wall:.2f} s;"
        f" fired after the"
        f" deadline by min {min(late, default=0):.1f} ms, p50 {percentile(late, 50):.1f} ms,"
        f" p99 {percentile(late, 99):.1f} ms, max {max(late, default=0):.1f} ms"
        f"   target every one within {TARGET_TIMEOUT_LATE_MS:.0f} ms",
        ok,
    )
    await nc.drain()
    return figures


def run() -> bool:
    discard_logs()
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", common_name="localhost")
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(
        target=_serve,
        args=(
            child,
            ca.cert_pem.bytes(),
            cert.private_key_and_cert_chain_pem.bytes(),
        ),
        daemon=True,
    )
    server.start()
    tmp = Path(f"/tmp/mailprobe-bench-agent-{uuid.uuid4().hex[:8]}")
    proc, nats_url = embedded.start_nats(tmp / "nats")
    try:
        ports = parent.recv()
        figures = asyncio.run(_run_async(tmp, ca, ports, nats_url))
    finally:
        parent.send("stop")
        server.join(5)
        if server.is_alive():
            server.terminate()
        embedded.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"agent: one `python -m agent` process, NATS work included ({machine()})")
    for line in figures.lines:
        print(line)
    return figures.ok


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
