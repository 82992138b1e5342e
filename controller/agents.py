"""Live agents: the entries of the `agents` KV bucket (keys `CC.<agentId>`, expiring by TTL)."""

import time

import msgspec
import structlog
from nats.js.kv import KeyValue

from shared.messages import AgentHeartbeat, decode_heartbeat

log = structlog.get_logger(__name__)


class LiveAgents:
    """Reads the bucket at most once per `ttl_s`: the scheduler asks on every batch."""

    def __init__(self, kv: KeyValue, ttl_s: float = 2.0) -> None:
        self._kv = kv
        self._ttl_s = ttl_s
        self._read_at = float("-inf")
        self._agents: list[AgentHeartbeat] = []

    async def agents(self, *, fresh: bool = False) -> list[AgentHeartbeat]:
        if fresh or time.monotonic() - self._read_at > self._ttl_s:
            self._agents = await self._read()
            self._read_at = time.monotonic()
        return self._agents

    async def countries(self) -> frozenset[str]:
        return frozenset(a.country for a in await self.agents())

    async def _read(self) -> list[AgentHeartbeat]:
        watcher = await self._kv.watchall(ignore_deletes=True)
        found: list[AgentHeartbeat] = []
        try:
            async for entry in watcher:
                if entry is None:  # the watcher's marker: every current entry was delivered
                    break
                try:
                    beat = decode_heartbeat(entry.value or b"")
                except msgspec.DecodeError as exc:
                    log.warning("malformed heartbeat", key=entry.key, error=str(exc))
                    continue
                country = entry.key.partition(".")[0]
                if beat.country != country:
                    log.warning("heartbeat under another country", key=entry.key)
                    continue
                found.append(beat)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return sorted(found, key=lambda a: (a.country, a.agent_id))
