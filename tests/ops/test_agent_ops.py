"""The agent's metrics, and its `/metrics`, `/health` and `/ready` over real HTTP: in process
next to a Worker, and from `python -m agent` as operators run it."""

import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from agent import ops
from agent.probers.tls import SslContexts
from shared import embedded
from shared.streams import stream_configs
from shared.subjects import JOBS_STREAM, jobs_subject
from testkit.serving import http_client
from tests.agent.helpers import (
    SmtpLikePeer,
    job_for,
    publish_job,
    result_count,
    results,
    until_async,
    worker,
)
from tests.ops.starting import until_started

ROOT = Path(__file__).resolve().parents[2]
# Races of two processes for one port: the crash this guards against came in about 1 race in
# 10, so 10 races catch it about 2 times in 3.
RACES = 10
# From the moment a race's line is written to the instant both processes bind: time for both,
# loaded and waiting on their standard input, to read it.
RACE_LEAD_S = 0.2


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_burst_run_counts_checks_by_type_status_and_country(
    nc: NATS, js: JetStreamContext, country: str, ssl_contexts: SslContexts
) -> None:
    up = {"country": country, "type": "smtp", "status": "up", "error_kind": "none"}
    refused = {**up, "status": "down", "error_kind": "refused"}
    before = {
        "up": value("mailprobe_agent_checks_total", **up),
        "refused": value("mailprobe_agent_checks_total", **refused),
        "timed": value(
            "mailprobe_agent_check_duration_seconds_count", country=country, type="smtp"
        ),
        "fetched": value("mailprobe_agent_jobs_fetched_total", country=country),
        "published": value("mailprobe_agent_results_published_total", country=country),
    }
    async with SmtpLikePeer() as peer:
        for _ in range(2):
            await publish_job(js, job_for(country, peer.port))
        await publish_job(js, job_for(country, embedded.free_port()))  # nobody listens
        await worker(nc, country, ssl_contexts).run(burst=True)

    assert value("mailprobe_agent_checks_total", **up) - before["up"] == 2
    assert value("mailprobe_agent_checks_total", **refused) - before["refused"] == 1
    timed = value("mailprobe_agent_check_duration_seconds_count", country=country, type="smtp")
    assert timed - before["timed"] == 3
    assert value("mailprobe_agent_jobs_fetched_total", country=country) - before["fetched"] == 3
    published = value("mailprobe_agent_results_published_total", country=country)
    assert published - before["published"] == 3
    assert value("mailprobe_agent_checks_in_flight", country=country) == 0


async def test_a_message_that_is_no_job_counts_as_rejected(
    nc: NATS, js: JetStreamContext, country: str, ssl_contexts: SslContexts
) -> None:
    labels = {"country": country, "reason": "job_malformed"}
    before = value("mailprobe_agent_jobs_rejected_total", **labels)
    await js.publish(jobs_subject(country), b"not a job", headers={"Nats-Msg-Id": uuid.uuid4().hex})
    await worker(nc, country, ssl_contexts).run(burst=True)
    assert value("mailprobe_agent_jobs_rejected_total", **labels) - before == 1


async def test_a_result_jetstream_does_not_take_counts_as_a_publish_failure(
    tmp_path: Path, country: str, ssl_contexts: SslContexts
) -> None:
    """On a server of its own with JOBS but no RESULTS: every result publish fails."""
    proc, url = embedded.start_nats(tmp_path / "nats")
    conn = await nats.connect(url)
    try:
        js = conn.jetstream()
        await js.add_stream(next(c for c in stream_configs() if c.name == JOBS_STREAM))
        before = value("mailprobe_agent_publish_failures_total", country=country)
        published = value("mailprobe_agent_results_published_total", country=country)
        async with SmtpLikePeer() as peer:
            await publish_job(js, job_for(country, peer.port))
            w = worker(conn, country, ssl_contexts, publish_timeout=0.3, nak_delay=30)
            run = asyncio.create_task(w.run())
            try:
                for _ in range(500):
                    if value("mailprobe_agent_publish_failures_total", country=country) > before:
                        break
                    await asyncio.sleep(0.01)
            finally:
                w.stop()
                await run
        assert value("mailprobe_agent_publish_failures_total", country=country) - before == 1
        assert value("mailprobe_agent_results_published_total", country=country) == published
    finally:
        await conn.close()
        embedded.stop(proc)


@asynccontextmanager
async def ops_server(readiness: ops.Readiness) -> AsyncIterator[httpx.AsyncClient]:
    port = embedded.free_port()
    server = await ops.start("127.0.0.1", port, readiness)
    assert server is not None
    try:
        async with http_client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield client
    finally:
        server.close()
        await server.wait_closed()


async def test_ready_follows_the_worker_from_unbound_to_taking_jobs_to_stopping(
    nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    w = worker(nc, country, ssl_contexts)
    async with ops_server(w.readiness) as client:
        r = await client.get("/ready")
        assert (r.status_code, r.json()["reason"]) == (503, "the jobs consumer is not bound yet")
        run = asyncio.create_task(w.run())
        for _ in range(200):
            if (r := await client.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.01)
        assert r.json() == {"status": "ready"}
        metrics = await client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert f'mailprobe_agent_checks_in_flight{{country="{country}"}} 0.0' in metrics.text
        w.stop()
        r = await client.get("/ready")
        assert (r.status_code, r.json()["reason"]) == (503, "stopping")
        await run
        assert (await client.get("/health")).json()["status"] == "ok"
        assert (await client.get("/nope")).status_code == 404
        assert (await client.post("/health")).status_code == 405


async def test_ops_server_survives_a_client_that_sends_nothing_useful() -> None:
    async with ops_server(lambda: None) as client:
        port = client.base_url.port
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GARBAGE\r\n\r\n")
        await writer.drain()
        assert (await reader.read()).startswith(b"HTTP/1.0 404")
        writer.close()
        await writer.wait_closed()
        assert (await client.get("/ready")).json() == {"status": "ready"}


def agent_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "NATS_", "LOG_"))}
    return {**env, "LOG_FORMAT": "json", **values}


@asynccontextmanager
async def agent_process(
    country: str, nats_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, asyncio.subprocess.Process]]:
    port = embedded.free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "--country",
        country,
        env=agent_env(
            NATS_URL=nats_url, AGENT_METRICS_HOST="127.0.0.1", AGENT_METRICS_PORT=str(port)
        ),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with http_client(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:

            async def answer() -> httpx.Response | None:
                try:
                    return await client.get("/health")
                except httpx.TransportError:  # the interpreter starting up
                    return None

            await until_started(proc, answer, "answer on /health")
            yield client, proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, err.decode()


async def test_agent_process_is_alive_but_not_ready_until_it_has_nats(country: str) -> None:
    unreachable = f"nats://127.0.0.1:{embedded.free_port()}"
    async with agent_process(country, unreachable) as (client, _):
        r = await client.get("/health")
        assert (r.status_code, r.json()["status"]) == (200, "ok")
        r = await client.get("/ready")
        assert (r.status_code, r.json()["reason"]) == (503, "connecting to NATS")


async def test_agent_process_serves_ready_and_metrics_with_nats(
    nats_url: str, nc: NATS, country: str
) -> None:
    async with agent_process(country, nats_url) as (client, proc):

        async def ready() -> httpx.Response | None:
            r = await client.get("/ready")
            return r if r.status_code == 200 else None

        r = await until_started(proc, ready, "200 on /ready")
        assert r.json() == {"status": "ready"}
        text = (await client.get("/metrics")).text
        assert f'mailprobe_agent_checks_in_flight{{country="{country}"}} 0.0' in text
        assert "# TYPE mailprobe_agent_check_duration_seconds histogram" in text
        # The hand-off's bound for the default AGENT_CONCURRENCY of 200: twice it.
        assert f'mailprobe_agent_handoff_max_results{{country="{country}"}} 400.0' in text
        assert f'mailprobe_agent_handoff_waiting{{country="{country}"}} 0.0' in text
        assert f'mailprobe_agent_handoff_entered_total{{country="{country}"}} 0.0' in text


async def test_ops_servers_racing_for_one_port_never_crash_and_one_wins() -> None:
    """Two processes binding one port at the same instant both get past bind() (SO_REUSEADDR,
    neither listening yet) and one listen() fails; under uvloop that used to be a server with no
    socket and `'NoneType' object has no attribute 'getsockname'` (about 1 pair in 10 here).
    Two loaded processes race on one wall-clock instant per port; every race must end with one
    listening and one `none`. A race whose port a third process took meanwhile (both `none`,
    the port held elsewhere: another test was handed it) tells nothing, and another port goes."""
    outcomes: list[tuple[str, str]] = []
    async with _racers(2) as racers:
        for _ in range(RACES + 3):
            port = embedded.free_port()
            start_at = time.time() + RACE_LEAD_S
            out = await asyncio.gather(*(r.ask(f"{port} {start_at:.6f}") for r in racers))
            await asyncio.gather(*(r.ask("close", answers=("closed",)) for r in racers))
            pair = (out[0], out[1])
            if pair == ("none", "none") and not embedded.port_is_free(port):
                continue
            outcomes.append(pair)
            if len(outcomes) == RACES:
                break
    assert len(outcomes) == RACES, outcomes
    assert {tuple(sorted(pair)) for pair in outcomes} == {("listening", "none")}, outcomes


class _Racer:
    """A tests.ops.race_ops process: a line in, its outcome line out (log lines may come
    first)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(
        self, line: str, answers: tuple[str, ...] = ("listening", "none", "crashed")
    ) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line:
            self.proc.stdin.write(f"{line}\n".encode())
            await self.proc.stdin.drain()
        while said := (await self.proc.stdout.readline()).decode():
            if said.strip().startswith(answers):
                return said.strip()
        return "no outcome"


@asynccontextmanager
async def _racers(n: int) -> AsyncIterator[list[_Racer]]:
    """`n` race_ops processes, each loaded (it said `ready`); they exit when their standard
    input closes."""
    racers = [
        _Racer(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.ops.race_ops",
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        )
        for _ in range(n)
    ]
    try:
        assert (
            await asyncio.gather(*(r.ask("", answers=("ready",)) for r in racers)) == ["ready"] * n
        )
        yield racers
    finally:
        for r in racers:
            assert r.proc.stdin is not None
            r.proc.stdin.close()
        await asyncio.gather(*(r.proc.wait() for r in racers))


async def start_agent_on(
    country: str, nats_url: str, metrics_port: int
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "--country",
        country,
        env=agent_env(
            NATS_URL=nats_url,
            AGENT_METRICS_HOST="127.0.0.1",
            AGENT_METRICS_PORT=str(metrics_port),
            AGENT_ALLOW_PRIVATE_TARGETS="true",
        ),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop_for_events(proc: asyncio.subprocess.Process) -> list[str]:
    """SIGTERM; the process must exit 0; its log events in order."""
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()
    return [json.loads(line)["event"] for line in err.decode().splitlines()]


async def one_job_runs(js: JetStreamContext, country: str, peer_port: int) -> None:
    job = job_for(country, peer_port)
    await publish_job(js, job)
    await until_async(lambda: result_count(js, country, 1), within=30)
    [result] = await results(js, country)
    assert (result.job_id, result.status) == (job.job_id, "up")


async def test_an_agent_whose_metrics_port_is_taken_says_so_once_and_works_on(
    nats_url: str, nc: NATS, js: JetStreamContext, country: str
) -> None:
    """Another process already listens on AGENT_METRICS_PORT: the agent logs one
    `ops_port_taken` line, still runs its country's jobs, and stops cleanly."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        proc = await start_agent_on(country, nats_url, taken.getsockname()[1])
        async with SmtpLikePeer() as peer:
            await one_job_runs(js, country, peer.port)
        events = await stop_for_events(proc)
    assert events.count("ops_port_taken") == 1
    assert "ops_server_failed" not in events and "ops_server_listening" not in events


async def test_two_agents_started_together_on_one_metrics_port_both_work(
    nats_url: str, nc: NATS, js: JetStreamContext, country: str, other_country: str
) -> None:
    """Two `python -m agent` on one host with the same metrics port, started at once: one
    serves it, the other says `ops_port_taken` once; both run their jobs and stop cleanly."""
    port = embedded.free_port()
    procs = [await start_agent_on(cc, nats_url, port) for cc in (country, other_country)]
    async with SmtpLikePeer() as peer:
        for cc in (country, other_country):
            await one_job_runs(js, cc, peer.port)
    async with http_client(timeout=2) as client:
        health = await client.get(f"http://127.0.0.1:{port}/health")
    assert health.json()["status"] == "ok"
    events = [await stop_for_events(proc) for proc in procs]
    assert sorted(e.count("ops_server_listening") for e in events) == [0, 1]
    assert sorted(e.count("ops_port_taken") for e in events) == [0, 1]
