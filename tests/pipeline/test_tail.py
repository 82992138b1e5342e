"""`python -m controller tail`: results from the live stream, one line each, filtered by country
and monitor (the subject) and status, against a real NATS server."""

import asyncio
import os
import signal
import sys
import uuid

import nats

from controller.__main__ import _parser
from controller.tail import follow
from shared.messages import CheckResult, encode
from shared.subjects import results_subject
from shared.timefmt import iso_ms, utcnow
from tests.api.test_cli import ROOT


def result(country: str, monitor: str, status: str) -> CheckResult:
    now = iso_ms(utcnow())
    if status == "inconclusive":
        return CheckResult(
            job_id=str(uuid.uuid4()),
            monitor_id=monitor,
            monitor_type="smtp",
            country=country,
            agent_id=f"{country}-tail-test",
            scheduled_at=now,
            started_at=now,
            finished_at=now,
            status="inconclusive",
            error_kind="inconclusive",
            message="canary mx.canary.test:25 timed out too",
        )
    return CheckResult(
        job_id=str(uuid.uuid4()),
        monitor_id=monitor,
        monitor_type="smtp",
        country=country,
        agent_id=f"{country}-tail-test",
        scheduled_at=now,
        started_at=now,
        finished_at=now,
        status="up" if status == "up" else "down",
        error_kind=None if status == "up" else "refused",
        message="220 ready" if status == "up" else "connection refused",
        response_time_ms=12.0,
    )


async def test_filters_by_country_monitor_and_status(nats_url: str) -> None:
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    nc = await nats.connect(nats_url)
    seen: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(follow(nc, "TZ", mine, "down", seen.append, stop))
    try:
        await asyncio.sleep(0.2)  # subscribed
        for country, monitor, status in [
            ("TZ", mine, "up"),
            ("TZ", mine, "down"),
            ("UG", mine, "down"),
            ("TZ", other, "down"),
        ]:
            await nc.publish(
                results_subject(country, "smtp", monitor), encode(result(country, monitor, status))
            )
        await nc.publish(results_subject("TZ", "smtp", mine), b"not json")
        await nc.flush()
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
        await nc.close()
    [only] = seen
    assert f" TZ smtp {mine} down/refused 12ms connection refused" in only


async def test_the_command_runs_until_interrupted(nats_url: str) -> None:
    monitor = str(uuid.uuid4())
    env = {**os.environ, "NATS_URL": nats_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller",
        "tail",
        "--monitor",
        monitor,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    nc = await nats.connect(nats_url)
    try:
        for _ in range(50):  # until the command has subscribed
            await nc.publish(
                results_subject("KE", "smtp", monitor), encode(result("KE", monitor, "up"))
            )
            try:
                out = await asyncio.wait_for(proc.stdout.readline(), 0.2)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("tail printed nothing")
    finally:
        await nc.close()
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 10)
    assert f"KE smtp {monitor} up 12ms 220 ready" in out.decode()
    assert proc.returncode == 0


async def test_status_inconclusive_is_a_filter_of_the_command(nats_url: str) -> None:
    """`tail --status inconclusive` is accepted and shows only the results an agent's own
    path made inconclusive."""
    args = _parser().parse_args(["tail", "--status", "inconclusive"])
    assert args.status == "inconclusive"
    monitor = str(uuid.uuid4())
    nc = await nats.connect(nats_url)
    seen: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(follow(nc, "TZ", monitor, args.status, seen.append, stop))
    try:
        await asyncio.sleep(0.2)  # subscribed
        for status in ("up", "down", "inconclusive"):
            await nc.publish(
                results_subject("TZ", "smtp", monitor), encode(result("TZ", monitor, status))
            )
        await nc.flush()
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
        await nc.close()
    [only] = seen
    assert f" TZ smtp {monitor} inconclusive/inconclusive - canary mx.canary.test:25" in only
