"""An agent's heartbeats say the time of the clock the agent was given, and the controller's
live view ages them on the clock it was given: driven by one manual clock across the new
year on a real NATS server, an agent is live until its TTL has passed on that clock, not a
moment less or more, and nothing waits for real seconds."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from agent.heartbeat import Heartbeat
from controller.fleet.live import LiveAgents
from shared.clock import ManualClock
from shared.heartbeats import HEARTBEAT_TTL_S
from shared.messages import decode_heartbeat
from tests.agent.helpers import until

EDGES = [
    datetime(2026, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
    datetime(2027, 2, 28, 23, 59, 59, 200_000, tzinfo=UTC),
]


@pytest.mark.parametrize("start", EDGES, ids=["year-end", "february-end"])
async def test_beats_carry_the_given_time_and_age_on_the_given_clock(
    nc: NATS, country: str, start: datetime
) -> None:
    clock = ManualClock(start, monotonic=1000.0)
    agent_id = f"{country}-clock-{uuid.uuid4().hex[:6]}"
    beat = Heartbeat(
        nc,
        country=country,
        agent_id=agent_id,
        capacity=1,
        in_flight=lambda: 0,
        started_at=clock.now(),
        clock=clock,
    )
    said: list[str] = []

    async def heard(msg: Msg) -> None:
        said.append(decode_heartbeat(msg.data).seen_at)

    sub = await nc.subscribe(beat.subject, cb=heard)
    view = LiveAgents(nc, warmup_s=0, clock=clock.monotonic, wall=clock.now)
    await view.start()
    try:
        await beat.beat()
        await until(lambda: country in view.countries(), within=10)
        clock.advance(1)  # the new day
        await beat.beat()
        await until(lambda: len(said) == 2, within=10)
        await nc.flush()
        assert said == [
            start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        ]
        assert clock.now().date() > start.date()
        clock.advance(HEARTBEAT_TTL_S - 0.1)
        assert country in view.countries()
        clock.advance(0.2)
        assert country not in view.countries()
    finally:
        await view.stop()
        await sub.unsubscribe()
        await asyncio.sleep(0)
