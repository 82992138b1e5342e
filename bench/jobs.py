"""Jobs: what the JOBS leg costs per job, one job a message against bundles, side by side.

An embedded nats-server with the product's streams; passes of PASS_JOBS SMTP jobs of one
country published as the scheduler does (`bundles.outgoing`, through `shared.publishing.
Publisher`: one fast-ingest batch a pass) and taken as an agent does (`shared.pulling.
StandingPull`, `agent.bundles.jobs_of`, each job acked). Alone (a country with an agent that
predates bundles) and in bundles take turns, PASSES passes each, ROUNDS times over, each on a
country of its own. Printed: nats-server's CPU per job (/proc) and this process's (the
publisher and the taker together). No target: it says what bundles save of a check's central
cost (bench/results/scaling-history.md, "Jobs in bundles").
"""

import asyncio
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import nats

from agent.bundles import jobs_of
from controller.scheduling.bundles import outgoing
from shared import embedded
from shared.clock import WALL
from shared.publishing import Publisher
from shared.pulling import StandingPull
from shared.streams import ensure_streams, jobs_consumer_config, jobs_consumer_name
from shared.subjects import JOBS_STREAM
from testkit.common import cpu_s, discard_logs
from testkit.peers.jobs import make_job

PASS_JOBS = 200
PASSES = 60
ROUNDS = 3


async def _passes(url: str, server_pid: int, cc: str, bundling: bool) -> tuple[float, float]:
    """(server, client) CPU µs per job over PASSES passes of `cc`'s jobs."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_consumer(JOBS_STREAM, jobs_consumer_config(cc))
        publisher = Publisher(js, timeout_s=10)
        pull = StandingPull(nc, JOBS_STREAM, jobs_consumer_name(cc), expires_s=1.0)
        server, client = cpu_s(server_pid), time.process_time()
        for n in range(PASSES):
            jobs = [
                make_job("smtp", 25, job_id=f"{cc}-{n}-{i}", country=cc, tenant="t" * 22)
                for i in range(PASS_JOBS)
            ]
            await publisher.publish(outgoing(jobs, frozenset({cc} if bundling else ())))
            taken = 0
            while taken < PASS_JOBS:
                for msg in await pull.take(2 * PASS_JOBS, 2.0, linger_s=0.005):
                    for job in jobs_of(msg, clock=WALL):
                        taken += 1
                        await job.ack()
        jobs_run = PASSES * PASS_JOBS
        return (
            (cpu_s(server_pid) - server) / jobs_run * 1e6,
            (time.process_time() - client) / jobs_run * 1e6,
        )
    finally:
        await nc.close()


async def _measure(url: str, server_pid: int) -> dict[bool, list[tuple[float, float]]]:
    seen: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    countries = iter(f"{a}{b}" for a in "QX" for b in "ABCDEFGHIJ")
    for _ in range(ROUNDS):
        for bundling in (False, True):
            seen[bundling].append(await _passes(url, server_pid, next(countries), bundling))
    return seen


def run() -> bool:
    discard_logs()
    with TemporaryDirectory(prefix="mailprobe-jobs-") as tmp:
        proc, url = embedded.start_nats(Path(tmp) / "nats")
        try:

            async def go() -> dict[bool, list[tuple[float, float]]]:
                nc = await nats.connect(url)
                await ensure_streams(nc.jetstream())
                await nc.close()
                return await _measure(url, proc.pid)

            seen = asyncio.run(go())
        finally:
            proc.terminate()
            proc.wait()
    print(
        f"jobs: {PASSES} passes of {PASS_JOBS} jobs, {ROUNDS} rounds each way; CPU µs per job"
        " (server / publisher and taker):"
    )
    for bundling, label in ((False, "one job a message"), (True, "bundles of up to 50")):
        runs = ", ".join(f"{s:.1f} / {c:.1f}" for s, c in seen[bundling])
        print(f"  {label}: {runs}")
    alone, bundled = ([sum(x) / ROUNDS for x in zip(*seen[b], strict=True)] for b in (False, True))
    print(
        f"  bundles against alone: nats-server {bundled[0] / alone[0]:.2f}x,"
        f" client {bundled[1] / alone[1]:.2f}x"
    )
    return True
