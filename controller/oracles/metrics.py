"""What a person alerts on about the world, as gauges read from PostgreSQL (issue 65): open
findings by kind and severity (posture and report findings, and what the side checks' parts
add), each oracle's state per country (the agents' resolver, each side check's oracles), each
fleet check's state per country (controller.fleet.health), and each side check's own gauges
(`frame.WorldGauges`, controller.sidechecks.world), which this module names none of.

They are read when `/metrics` is scraped, at most once every `REFRESH_S` per process (a scrape in
between gets the last values), by a few grouped queries on indexed columns. Every API replica
exposes the same values: aggregate them with `max`, never `sum`. Labels stay bounded: finding
codes and severities are the product's own, oracles are `dns` and the side checks' own (each
named by the operator's settings), countries are ISO codes.
"""

from collections.abc import Sequence
from datetime import timedelta
from typing import Final

import asyncpg
import structlog
from prometheus_client import Gauge

from controller.db.pool import Conn
from controller.oracles import store as db
from controller.sidechecks.frame import WorldGauges
from shared.clock import Clock

log = structlog.get_logger(__name__)

REFRESH_S: Final = 30.0
STATES: Final = ("healthy", "unhealthy", "unknown")
FLEET_STATES: Final = ("healthy", "unhealthy")

FINDINGS = Gauge(
    "mailprobe_findings_open",
    "open findings by code and severity, every organization's (posture and report findings,"
    " and raised listings as `blocklisted`); the same on every replica: use max",
    ["code", "severity"],
)
ORACLES = Gauge(
    "mailprobe_oracle_state",
    "each oracle's state per country, 1 for the state it is in (oracle: `dns`, the agents'"
    " resolver for mail and reverse DNS, or a side check's own, a list's zone; state: healthy,"
    " unhealthy,"
    ' unknown); alert on state!="healthy" == 1',
    ["oracle", "country", "state"],
)
FLEET = Gauge(
    "mailprobe_fleet_state",
    "each fleet check's state per country, 1 for the state it is in (check: `agents`, a live"
    " agent; `saturation`, saturated rounds under FLEET_SATURATED_RATIO_MAX; `features`, every"
    " agent announces the features the scheduler uses; state: healthy, unhealthy); alert on"
    ' state="unhealthy" == 1',
    ["check", "country", "state"],
)


class World:
    """The gauges above, read again when older than `REFRESH_S`."""

    def __init__(self, parts: Sequence[WorldGauges] = (), *, clock: Clock) -> None:
        """`parts`: the side checks' own (controller.sidechecks.world.world_gauges)."""
        self._parts = tuple(parts)
        self._clock = clock
        self._read_at = -float("inf")

    async def refresh(self, pool: asyncpg.Pool) -> None:
        """Read them again when stale; a failure is logged, the last values kept."""
        now = self._clock.monotonic()
        if now - self._read_at < REFRESH_S:
            return
        self._read_at = now
        try:
            async with pool.acquire() as conn:
                await self._read(conn)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("world metrics not read", error=repr(exc))

    async def _read(self, conn: Conn) -> None:
        since = self._clock.now() - timedelta(days=1)
        seen = await db.world(conn)
        for gauge in (FINDINGS, ORACLES, FLEET):
            gauge.clear()
        findings = {key: float(n) for key, n in seen.findings.items()}
        for part in self._parts:
            part.clear()
            for key, n in (await part.show(conn, since)).items():
                findings[key] = findings.get(key, 0.0) + n
        for (code, sev), n in findings.items():
            FINDINGS.labels(code, sev).set(n)
        for (oracle, country), now in seen.oracles.items():
            if now not in STATES:
                continue  # `unchecked`: no round asked it lately
            for state in STATES:
                ORACLES.labels(oracle, country, state).set(float(now == state))
        for (check, country), now in seen.fleet.items():
            if now in FLEET_STATES:
                for state in FLEET_STATES:
                    FLEET.labels(check, country, state).set(float(now == state))
