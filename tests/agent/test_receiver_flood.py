"""The receiver under a flood, in a real agent process (`python -m agent`): eight loopback
sources hammer it (each over its connections, unknown addresses, one address past its rate,
messages past the size cap, idle sessions held open) while the agent runs SMTP check jobs.
Measured: the process's RSS and open fds (psutil), and that every check still ends `up`. The
loop is bounded (a fixed count of sessions per source) and stops by itself."""

import asyncio
import contextlib
import json
import socket
import time
import uuid

import psutil
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from shared.arrivals import RECEIVERS_BUCKET, ReceivingAddress, encode, new_local_part
from shared.embedded import free_port
from shared.messages import CheckResult
from shared.streams import ensure_jobs_consumers
from shared.subjects import arrivals_subject, heartbeats_subject
from testkit.peers.dns import DnsPeer
from testkit.peers.smtp import SmtpPeer
from tests.agent.helpers import job_for, publish_job, results
from tests.agent.test_main import nats_url_of, start_agent, stop_agent
from tests.conftest import PROCESS_START_S

pytestmark = pytest.mark.breadth

DOMAIN = "rx.mailprobe.test"
SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]
SESSIONS_PER_SOURCE = 150
PER_ADDRESS = 10
CHECKS = 20
# What the flood may add to the agent's memory and open files, at most.
RSS_GROWTH_MAX = 48 * 1024 * 1024


async def _smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> bytes:
    writer.write(line + b"\r\n")
    await writer.drain()
    said = await reader.readline()
    while said[3:4] == b"-":
        said = await reader.readline()
    return said


async def _session(port: int, source: str, to: str, n: int) -> str:
    """One hostile session; the code of its last answer ("" when the receiver hung up)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError:
        return "connect"
    try:
        greeting = await reader.readline()
        if not greeting.startswith(b"220"):
            return greeting[:3].decode()
        await _smtp(reader, writer, b"EHLO flood.test")
        await _smtp(reader, writer, b"MAIL FROM:<x@flood.test>")
        await _smtp(reader, writer, f"RCPT TO:<{new_local_part()}@{DOMAIN}>".encode())
        said = await _smtp(reader, writer, f"RCPT TO:<{to}>".encode())
        if not said.startswith(b"250"):
            return said[:3].decode()
        await _smtp(reader, writer, b"DATA")
        body = (b"x" * 70 + b"\r\n") * (400 if n % 2 else 10)  # every other one past the cap
        said = await _smtp(reader, writer, b"Subject: flood\r\n\r\n" + body + b".")
        return said[:3].decode()
    except (ConnectionError, asyncio.IncompleteReadError):
        return ""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _idle(port: int, source: str, hold: asyncio.Event) -> None:
    """A connection that says nothing until the receiver ends it (or the flood is over)."""
    with contextlib.suppress(OSError):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        with contextlib.suppress(ConnectionError):
            read = asyncio.ensure_future(reader.read())
            await asyncio.wait(
                {read, asyncio.ensure_future(hold.wait())}, return_when="FIRST_COMPLETED"
            )
            read.cancel()
        writer.close()


async def _source(port: int, source: str, to: str, codes: list[str]) -> None:
    """Two sessions at a time beside the source's three idle ones: over its four."""

    async def one_by_one(first: int) -> None:
        for n in range(first, SESSIONS_PER_SOURCE, 2):
            codes.append(await _session(port, source, to, n))

    await asyncio.gather(one_by_one(0), one_by_one(1))


async def test_a_flood_leaves_the_agents_memory_files_and_checks_alone(
    nc: NATS, js: JetStreamContext, country: str
) -> None:
    port = free_port()
    monitor_id = f"m-{uuid.uuid4().hex[:8]}"
    local = new_local_part()
    kv = await js.key_value(RECEIVERS_BUCKET)
    await kv.put(local, encode(ReceivingAddress(monitor_id=monitor_id)))
    await ensure_jobs_consumers(js, [country])
    # The verdicts' DNS on loopback (no record: SPF `none`), never the system's resolver.
    dns = await DnsPeer({}).__aenter__()
    proc = await start_agent(
        "--country",
        country,
        NATS_URL=nats_url_of(nc),
        AGENT_DNS_RESOLVER=f"127.0.0.1:{dns.port}",
        AGENT_ALLOW_PRIVATE_TARGETS="true",
        AGENT_RECEIVER_DOMAIN=DOMAIN,
        AGENT_RECEIVER_HOST="127.0.0.1",
        AGENT_RECEIVER_PORT=str(port),
        AGENT_RECEIVER_CONNECTIONS="64",
        AGENT_RECEIVER_CONNECTIONS_PER_SOURCE="4",
        AGENT_RECEIVER_MESSAGES_PER_ADDRESS=str(PER_ADDRESS),
        AGENT_RECEIVER_MAX_BYTES="16384",
        AGENT_RECEIVER_SESSION_SECONDS="3",
    )
    agent = psutil.Process(proc.pid)
    codes: list[str] = []
    try:
        deadline = time.monotonic() + PROCESS_START_S
        while True:  # listening, and the book holds the address
            assert time.monotonic() < deadline, "the receiver never took the address"
            said = await _session(port, "127.0.0.1", f"{local}@{DOMAIN}", 0)
            if said == "250":
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # settled after its start
        rss0, fds0 = agent.memory_info().rss, agent.num_fds()
        peak = {"rss": rss0, "fds": fds0}
        hold = asyncio.Event()

        async def sample() -> None:
            while not hold.is_set():
                peak["rss"] = max(peak["rss"], agent.memory_info().rss)
                peak["fds"] = max(peak["fds"], agent.num_fds())
                await asyncio.sleep(0.05)

        async with SmtpPeer() as peer:
            sampling = asyncio.create_task(sample())
            idle = [asyncio.create_task(_idle(port, s, hold)) for s in SOURCES for _ in range(3)]
            started = time.monotonic()
            flood = asyncio.gather(*(_source(port, s, f"{local}@{DOMAIN}", codes) for s in SOURCES))
            jobs = [job_for(country, peer.port) for _ in range(CHECKS)]
            for job in jobs:
                await publish_job(js, job)
            await flood
            flood_s = time.monotonic() - started
            found: list[CheckResult] = []
            deadline = time.monotonic() + 30
            while len(found) < CHECKS and time.monotonic() < deadline:
                found = [
                    r for r in await results(js, country) if r.job_id in {j.job_id for j in jobs}
                ]
                await asyncio.sleep(0.2)
            hold.set()
            await asyncio.gather(sampling, *idle)
    finally:
        logs = await stop_agent(proc)
        await dns.__aexit__(None, None, None)
    assert dns.asked  # the verdicts asked it
    info = await js.stream_info("ARRIVALS", subjects_filter=arrivals_subject(country, monitor_id))
    stored = sum((info.state.subjects or {}).values())
    print(
        f"\nflood: {len(codes)} sessions from {len(SOURCES)} sources in {flood_s:.1f} s;"
        f" answers {sorted((c, codes.count(c)) for c in set(codes))};"
        f" rss {rss0 / 2**20:.1f} -> peak {peak['rss'] / 2**20:.1f} MiB;"
        f" fds {fds0} -> peak {peak['fds']}; checks up {sum(r.status == 'up' for r in found)}"
        f"/{CHECKS}; arrivals stored {stored}; load {psutil.getloadavg()}"
    )
    assert len(found) == CHECKS and all(r.status == "up" for r in found)
    # The rate counts at RCPT: the first probe and the flood's messages past RCPT, whether
    # taken (250), over the size cap (552) or refused while the parsers were full (451).
    assert 1 + sum(codes.count(c) for c in ("250", "552", "451")) == PER_ADDRESS
    assert stored == 1 + codes.count("250")
    assert {"421", "452"} <= set(codes)  # over the source's connections, over the rate
    assert peak["rss"] - rss0 < RSS_GROWTH_MAX
    assert peak["fds"] - fds0 <= 64 + 8  # the connections cap, and a few of its own
    assert not [line for line in logs if line["level"] in ("error", "critical")]
    assert local not in json.dumps(logs)  # the address is the monitor's secret


async def test_a_receiver_port_already_taken_is_an_error_line_and_the_agent_runs_on(
    nc: NATS, country: str
) -> None:
    """The receiver cannot listen (another process holds its port): one error line naming it,
    and the agent still beats (its checks go on)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        agent_id = f"{country}-rx-{uuid.uuid4().hex[:6]}"
        beats = await nc.subscribe(heartbeats_subject(country, agent_id))
        proc = await start_agent(
            "--country",
            country,
            NATS_URL=nats_url_of(nc),
            AGENT_ID=agent_id,
            AGENT_RECEIVER_DOMAIN=DOMAIN,
            AGENT_RECEIVER_HOST="127.0.0.1",
            AGENT_RECEIVER_PORT=str(holder.getsockname()[1]),
        )
        try:
            await beats.next_msg(timeout=PROCESS_START_S)
        finally:
            logs = await stop_agent(proc)
    [line] = [entry for entry in logs if entry["event"] == "receiver_not_listening"]
    assert line["level"] == "error" and "address already in use" in line["error"].lower()
