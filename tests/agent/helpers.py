"""Publishing jobs, reading results and counting leftovers, as the controller and readers would."""

import asyncio
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from structlog.testing import capture_logs

from agent.probers.tls import SslContexts
from agent.settings import AgentSettings
from agent.worker import Worker
from shared.clock import WALL
from shared.messages import CheckJob, CheckResult, MonitorType, decode_result, encode
from shared.streams import jobs_consumer_name
from shared.subjects import JOBS_STREAM, RESULTS_STREAM, jobs_subject, results_country_filter
from testkit.peers.jobs import make_job
from testkit.peers.scripted import ScriptedPeer

SMTP_REPLIES = {"QUIT": b"221 bye\r\n"}


class SmtpLikePeer(ScriptedPeer):
    """Greets like an SMTP server after `delay` seconds (`first_delay` for the first
    connection), then answers `250 ok` to everything."""

    def __init__(self, delay: float = 0.0, first_delay: float | None = None) -> None:
        super().__init__(b"220 peer.test ESMTP\r\n", b"250 ok\r\n", SMTP_REPLIES)
        self.delays = [delay if first_delay is None else first_delay]
        self.delay = delay
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await asyncio.sleep(self.delays.pop() if self.delays else self.delay)
        await super().handle(reader, writer)


def closed_port() -> int:
    """A loopback port nothing listens on (bound and released: refused until reused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def job_for(country: str, port: int, monitor_type: MonitorType = "smtp", **extra: Any) -> CheckJob:
    """A job with a unique id and monitor for `country`, aimed at 127.0.0.1:`port`."""
    fields: dict[str, Any] = {
        "job_id": f"job-{uuid.uuid4()}",
        "monitor_id": str(uuid.uuid4()),
        "country": country,
        **extra,
    }
    return make_job(monitor_type, port, **fields)


async def publish_job(js: JetStreamContext, job: CheckJob, subject: str | None = None) -> None:
    """As the controller does: on `mon.jobs.CC`, with `Nats-Msg-Id` = job id."""
    await js.publish(
        subject or jobs_subject(job.country), encode(job), headers={"Nats-Msg-Id": job.job_id}
    )


async def results(js: JetStreamContext, country: str) -> list[CheckResult]:
    """Every result of `country` on RESULTS, read by a throwaway ordered reader."""
    sub = await js.pull_subscribe(results_country_filter(country), stream=RESULTS_STREAM)
    try:
        pending = (await sub.consumer_info()).num_pending or 0
        found: list[CheckResult] = []
        while len(found) < pending:
            msgs = await sub.fetch(pending - len(found), timeout=2)
            found += [decode_result(msg.data) for msg in msgs]
        return found
    finally:
        await sub.unsubscribe()


async def jobs_left(js: JetStreamContext, country: str) -> int:
    """Jobs on `mon.jobs.CC` that the country's consumer has not settled (acked or termed):
    JOBS keeps settled ones until they age out. Without that consumer, every job stored there."""
    try:
        pending, in_flight = await unacked(js, country)
    except NotFoundError:
        info = await js.stream_info(JOBS_STREAM, subjects_filter=jobs_subject(country))
        return sum((info.state.subjects or {}).values())
    return pending + in_flight


def settings_worker(
    nc: NATS, settings: AgentSettings, contexts: SslContexts, **options: Any
) -> Worker:
    """A worker built from `settings` as `python -m agent` builds it, set up for fast tests as
    `worker` is: short fetches, no heartbeat, the wall's clock."""
    defaults: dict[str, Any] = {
        "ssl_contexts": contexts,
        "fetch_timeout": 0.2,
        "heartbeat_interval": None,
        "clock": WALL,
    }
    return Worker.from_settings(nc, settings, **{**defaults, **options})


def worker(nc: NATS, country: str, contexts: SslContexts, **options: Any) -> Worker:
    """A worker set up for fast tests: loopback allowed, short fetches, no heartbeat."""
    defaults: dict[str, Any] = {
        "agent_id": f"{country}-test-{uuid.uuid4().hex[:6]}",
        "allow_private": True,
        "ssl_contexts": contexts,
        "fetch_timeout": 0.2,
        "heartbeat_interval": None,
        "clock": WALL,
    }
    return Worker.of(nc, country, **{**defaults, **options})


def capture() -> Any:
    """capture_logs with the context bound through contextvars, as production renders it."""
    return capture_logs(processors=[structlog.contextvars.merge_contextvars])


async def unacked(js: JetStreamContext, country: str) -> tuple[int, int]:
    """(not yet delivered, delivered but neither acked nor termed) on the country's consumer."""
    info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name(country))
    return info.num_pending, info.num_ack_pending


async def settled(js: JetStreamContext, country: str) -> bool:
    """Whether every job of the country's consumer is settled: none pending, none unacked."""
    return await unacked(js, country) == (0, 0)


async def result_count(js: JetStreamContext, country: str, count: int) -> bool:
    return len(await results(js, country)) == count


async def consumer_exists(js: JetStreamContext, country: str) -> bool:
    try:
        await js.consumer_info(JOBS_STREAM, jobs_consumer_name(country))
    except NotFoundError:
        return False
    return True


async def until(condition: Callable[[], bool], within: float = 3) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def until_async(condition: Callable[[], Awaitable[bool]], within: float = 3) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def pulling(js: JetStreamContext, country: str, within: float = 10) -> None:
    """Until a pull request is open on the country's consumer: an agent bound and waiting."""

    async def open_request() -> bool:
        try:
            info = await js.consumer_info(JOBS_STREAM, jobs_consumer_name(country))
        except NotFoundError:
            return False  # not made yet
        return bool(info.num_waiting)

    await until_async(open_request, within)
