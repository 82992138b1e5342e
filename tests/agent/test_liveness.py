"""How soon the controller's live-agents view (controller.fleet.live) notices a real agent process
that is killed, and that it does not drop one that merely misses a beat."""

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.aio.client import Client as NATS

from controller.fleet.live import LiveAgents
from shared.heartbeats import HEARTBEAT_INTERVAL_S, HEARTBEAT_TTL_S
from tests.agent.helpers import until
from tests.agent.test_main import nats_url_of, start_agent, stop_agent

# The bound promised: the TTL (5 s) and half a second for the view's own loop and the
# message's trip on loopback. It was 15 s (and 30 s before issue 12).
GONE_WITHIN_S = HEARTBEAT_TTL_S + 0.5


@asynccontextmanager
async def live_view(nc: NATS) -> AsyncIterator[LiveAgents]:
    view = LiveAgents(nc)
    await view.start()
    try:
        yield view
    finally:
        await view.stop()


async def test_a_killed_agent_leaves_its_country_no_agent_within_the_ttl(
    nc: NATS, country: str
) -> None:
    """kill -9 sends no last beat: the country drops out of the view (the scheduler then
    records `no_agent` instead of sending jobs nobody runs) within GONE_WITHIN_S."""
    async with live_view(nc) as view:
        proc = await start_agent(
            "--country",
            country,
            NATS_URL=nats_url_of(nc),
            AGENT_ID=f"{country}-kill-{uuid.uuid4().hex[:6]}",
        )
        try:
            await until(lambda: country in view.countries(), within=20)
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.communicate()
        killed = time.monotonic()
        await until(lambda: country not in view.countries(), within=20)
        gone_after = time.monotonic() - killed
    assert gone_after <= GONE_WITHIN_S


async def test_an_agent_that_misses_one_beat_stays_live(nc: NATS, country: str) -> None:
    """SIGSTOP for longer than one interval (a beat is lost) and SIGCONT: never out of the view."""
    async with live_view(nc) as view:
        proc = await start_agent(
            "--country",
            country,
            NATS_URL=nats_url_of(nc),
            AGENT_ID=f"{country}-stop-{uuid.uuid4().hex[:6]}",
        )
        try:
            await until(lambda: country in view.countries(), within=20)
            seen: list[bool] = []

            async def sample(seconds: float) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    seen.append(country in view.countries())
                    await asyncio.sleep(0.02)

            proc.send_signal(signal.SIGSTOP)
            await sample(1.2 * HEARTBEAT_INTERVAL_S)
            proc.send_signal(signal.SIGCONT)
            await sample(2 * HEARTBEAT_INTERVAL_S)
        finally:
            proc.send_signal(signal.SIGCONT)
            await stop_agent(proc)
    assert all(seen)
