"""The agent's heartbeat: an AgentHeartbeat on `mon.heartbeats.CC.<agentId>` (core NATS).

Nothing is stored: every controller keeps the live view in memory and forgets an agent it has
not heard of for shared.heartbeats.HEARTBEAT_TTL_S, or at once after its last beat, which says
`stopping` on a clean stop.
"""

import asyncio
from collections.abc import Callable
from datetime import datetime

import nats.errors
import structlog
from nats.aio.client import Client as NATS

from shared import __version__
from shared.clock import Clock
from shared.heartbeats import HEARTBEAT_INTERVAL_S
from shared.loop import run_every
from shared.messages import AGENT_FEATURES, AgentHeartbeat, SelfCheck, TenantLoad, encode
from shared.subjects import heartbeats_subject
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

NATS_ERRORS = (nats.errors.Error, TimeoutError, OSError)
FLUSH_TIMEOUT_S = 2


class Heartbeat:
    """Publishes this agent's load (and its self-checks' state, when it has canaries) every
    `interval` seconds until `stop` is set, then a last beat with `stopping`. A failed publish
    (NATS away) is logged; the next beat tries again."""

    def __init__(
        self,
        nc: NATS,
        *,
        country: str,
        agent_id: str,
        capacity: int,
        in_flight: Callable[[], int],
        started_at: datetime,
        interval: float = HEARTBEAT_INTERVAL_S,
        self_check: Callable[[], SelfCheck] | None = None,
        tenants: Callable[[], list[TenantLoad]] | None = None,
        clock: Clock,
    ) -> None:
        """`clock`: the instant each beat says it was sent at (`seen_at`)."""
        self._clock = clock
        self.subject = heartbeats_subject(country, agent_id)
        self._nc = nc
        self._in_flight = in_flight
        self._self_check = self_check
        self._tenants = tenants
        self._interval = interval
        self._beat = AgentHeartbeat(
            agent_id=agent_id,
            country=country,
            version=__version__,
            features=list(AGENT_FEATURES),
            capacity=capacity,
            started_at=iso_ms(started_at),
            seen_at=iso_ms(started_at),
        )

    async def run(self, stop: asyncio.Event) -> None:
        await run_every(self._interval, self.beat, name="heartbeat", stop=stop)
        await self.beat(stopping=True)

    async def beat(self, *, stopping: bool = False) -> None:
        self._beat.in_flight = self._in_flight()
        self._beat.seen_at = iso_ms(self._clock.now())
        self._beat.stopping = stopping
        self._beat.self_check = self._self_check() if self._self_check else None
        self._beat.tenants = self._tenants() if self._tenants else []
        try:
            await self._nc.publish(self.subject, encode(self._beat))
            if stopping:  # the last one goes out before the caller drains the connection
                await self._nc.flush(timeout=FLUSH_TIMEOUT_S)
        except NATS_ERRORS as exc:
            log.warning("heartbeat_failed", error=repr(exc))


__all__ = ["HEARTBEAT_INTERVAL_S", "Heartbeat"]
