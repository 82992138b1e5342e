"""`python -m agent --country CC`: one probe agent for one country.

Settings come from the environment (`python -m shared.settings` lists them); a missing or bad one
stops the agent at start with `error: <one line>` and exit code 2. SIGTERM or SIGINT stops
fetching, lets in-flight checks finish (AGENT_SHUTDOWN_GRACE_SECONDS), then drains NATS.
`/metrics`, `/health` and `/ready` answer on AGENT_METRICS_PORT from the start (`agent.ops`).
The process's clock (shared.clock's `WALL`) is composed here, once, and given to the worker.
"""

import argparse
import asyncio
import signal
import sys

import nats
import structlog
from nats.aio.client import Client as NATS

from agent.settings import AgentSettings
from agent.settle import NATS_ERRORS
from shared import startup
from shared.clock import WALL
from shared.logging import configure
from shared.loop import run_loop
from shared.settings import SettingsError, load, nats_tls_context
from shared.subjects import agent_inbox_prefix

log = structlog.get_logger("agent")

# Fixed: nats-py's reconnect loop (2.16) takes only a constant `reconnect_time_wait`, with no
# backoff or jitter of its own. The worker's own retries back off (agent.backoff).
RECONNECT_WAIT_S = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent", description="one probe agent for one country"
    )
    parser.add_argument("--country", help="ISO 3166-1 alpha-2 code (default: AGENT_COUNTRY)")
    args = parser.parse_args(argv)
    country = args.country.upper() if args.country else None
    try:
        settings = load(AgentSettings, agent_country=country)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure(settings.process.log_format, settings.process.log_level)
    run_loop(serve(settings))
    return 0


async def serve(settings: AgentSettings) -> None:
    # The worker, its probers and the receiver are imported once the settings hold: a bad
    # setting is reported without loading them (a third of the CPU-second they take).
    with startup.imports():
        from agent import ops
        from agent.receiver import service as receiving
        from agent.worker import Worker, default_agent_id

    country = settings.identity.agent_country
    agent_id = settings.identity.agent_id or default_agent_id(country)
    # Bound before the signal handlers exist, so their log lines carry it too.
    structlog.contextvars.bind_contextvars(country=country, agent_id=agent_id)
    stop = asyncio.Event()
    worker: Worker | None = None

    def on_signal(signum: signal.Signals) -> None:
        log.info("signal_received", signal=signum.name)
        stop.set()
        if worker is not None:
            worker.stop()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    def readiness() -> str | None:
        return "connecting to NATS" if worker is None else worker.readiness()

    server = None
    if settings.metrics.agent_metrics_port:
        server = await ops.start(
            settings.metrics.agent_metrics_host,
            settings.metrics.agent_metrics_port,
            readiness,
            setting="AGENT_METRICS_PORT",
        )
    try:
        nc = await _connect(settings, agent_id, stop)
        if nc is None:
            return
        worker = Worker.from_settings(nc, settings, agent_id=agent_id, clock=WALL)
        if stop.is_set():
            worker.stop()
        receiver = receiving.build(
            nc,
            settings.receiver,
            settings.side_checks,
            country=country,
            agent_id=agent_id,
            clock=WALL,
        )
        receiving_task = (
            asyncio.create_task(receiving.run(nc, receiver, stop)) if receiver else None
        )
        try:
            await worker.run()
        finally:
            stop.set()
            if receiving_task is not None:
                await receiving_task
            try:
                await nc.drain()
            except NATS_ERRORS as exc:
                log.warning("nats_drain_failed", error=repr(exc))
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
    log.info("agent_exit")


async def _connect(settings: AgentSettings, agent_id: str, stop: asyncio.Event) -> NATS | None:
    """Connect, retrying forever (a NATS outage at start is not a reason to exit); None when a
    signal arrives first."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=repr(exc))

    async def on_disconnected() -> None:
        # expected while stopping; otherwise the client reconnects with backoff, forever
        (log.info if stop.is_set() else log.warning)("nats_disconnected")

    async def on_reconnected() -> None:
        log.info("nats_reconnected")

    async def on_closed() -> None:
        log.info("nats_closed")

    connecting = asyncio.ensure_future(
        nats.connect(
            servers=[url.strip() for url in settings.process.nats_url.split(",")],
            name=agent_id,
            inbox_prefix=agent_inbox_prefix(settings.identity.agent_country),
            tls=nats_tls_context(settings.process),
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT_S,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            closed_cb=on_closed,
        )
    )
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not connecting.done():
        connecting.cancel()
        await asyncio.wait({connecting})
        return None
    nc = connecting.result()
    # host:port only: the URL's user info is the agent's NATS user and password (or token).
    server = nc.connected_url.netloc.rpartition("@")[2] if nc.connected_url else ""
    log.info("nats_connected", server=server)
    return nc


if __name__ == "__main__":
    sys.exit(main())
