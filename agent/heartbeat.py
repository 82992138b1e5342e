"""The agent's heartbeat: an AgentHeartbeat in the `agents` KV bucket under `CC.<agentId>`.

The bucket has a TTL (shared.streams.HEARTBEAT_TTL_S), so an agent that dies without a word
vanishes from it; a clean stop deletes the key at once.
"""

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

import nats.errors
import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from shared.messages import AgentHeartbeat, encode
from shared.streams import agents_bucket
from shared.timefmt import iso_ms, utcnow

log = structlog.get_logger(__name__)

HEARTBEAT_INTERVAL_S = 5.0
NATS_ERRORS = (nats.errors.Error, TimeoutError, OSError)


def heartbeat_key(country: str, agent_id: str) -> str:
    return f"{country}.{agent_id}"


def agent_version() -> str:
    try:
        return version("mailprobe")
    except PackageNotFoundError:
        return "unknown"


class Heartbeat:
    """Puts this agent's load every `interval` seconds until `stop` is set, then deletes it.

    A failed put (NATS away, bucket not created yet) is logged and retried at the next beat.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        country: str,
        agent_id: str,
        capacity: int,
        in_flight: Callable[[], int],
        started_at: datetime,
        interval: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self.key = heartbeat_key(country, agent_id)
        self._js = js
        self._kv: KeyValue | None = None
        self._in_flight = in_flight
        self._interval = interval
        self._beat = AgentHeartbeat(
            agent_id=agent_id,
            country=country,
            version=agent_version(),
            capacity=capacity,
            started_at=iso_ms(started_at),
            seen_at=iso_ms(started_at),
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
        await self.remove()

    async def beat(self) -> None:
        self._beat.in_flight = self._in_flight()
        self._beat.seen_at = iso_ms(utcnow())
        try:
            kv = await self._bucket()
            await kv.put(self.key, encode(self._beat))
        except NotFoundError:
            log.warning("heartbeat_bucket_missing", hint="the controller creates it at start")
        except NATS_ERRORS as exc:
            log.warning("heartbeat_failed", error=repr(exc))

    async def remove(self) -> None:
        if self._kv is None:
            return
        try:
            await self._kv.delete(self.key)
        except NATS_ERRORS as exc:
            log.warning("heartbeat_delete_failed", error=repr(exc))

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await agents_bucket(self._js)
        return self._kv
