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
from shared.clock import WALL
from shared.heartbeats import HEARTBEAT_INTERVAL_S, HEARTBEAT_TTL_S
from tests.agent.helpers import until
from tests.agent.test_main import nats_url_of, start_agent, stop_agent


class Clock:
    """The view's clock, moved by the test: what it judges does not hang on how long the
    machine takes between two steps."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def live_view(nc: NATS, clock: Clock | None = None) -> AsyncIterator[LiveAgents]:
    view = (
        LiveAgents(nc, wall=WALL.now)
        if clock is None
        else LiveAgents(nc, clock=clock, wall=WALL.now)
    )
    await view.start()
    try:
        yield view
    finally:
        await view.stop()


async def test_a_killed_agent_leaves_its_country_no_agent_within_the_ttl(
    nc: NATS, country: str
) -> None:
    """kill -9 sends no last beat: the country drops out of the view (the scheduler then
    records `no_agent` instead of sending jobs nobody runs) once the TTL (5 s; it was 15 s, and
    30 s before issue 12) has passed since its last beat, on the view's clock, not before."""
    clock = Clock()
    async with live_view(nc, clock) as view:
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
        await nc.flush()  # its last beats, if any were on their way, are in
        clock.now += HEARTBEAT_TTL_S - 0.1
        assert country in view.countries()
        clock.now += 0.2
        assert country not in view.countries()


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
