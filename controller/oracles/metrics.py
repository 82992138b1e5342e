"""What a person alerts on about the world, as gauges read from PostgreSQL (issue 65): open
findings by kind and severity (posture, reports and `blocklisted` listings), each oracle's state
per country (the agents' resolver, each list), each fleet check's state per country
(controller.fleet.health), the open raised listings per list, and the reports received within
a day with the messages they count per result.

They are read when `/metrics` is scraped, at most once every `REFRESH_S` per process (a scrape in
between gets the last values), by a few grouped queries on indexed columns. Every API replica
exposes the same values: aggregate them with `max`, never `sum`. Labels stay bounded: finding
codes and severities are the product's own, oracles are `dns` and the lists of `BLOCKLISTS`,
countries are ISO codes, report results at most `RESULTS_MAX` per kind.
"""

from collections.abc import Iterable
from datetime import timedelta
from typing import Final

import asyncpg
import structlog
from prometheus_client import Gauge

from controller.db.pool import Conn
from controller.oracles import store as db
from controller.sidechecks.blocklists.rules import BlockList, severity
from shared.clock import WALL, Clock

log = structlog.get_logger(__name__)

REFRESH_S: Final = 30.0
RESULTS_MAX: Final = 20
STATES: Final = ("healthy", "unhealthy", "unknown")
FLEET_STATES: Final = ("healthy", "unhealthy")

FINDINGS = Gauge(
    "mailprobe_findings_open",
    "open findings by code and severity, every organization's (posture, report findings, and"
    " raised blocklist listings as `blocklisted`); the same on every replica: use max",
    ["code", "severity"],
)
ORACLES = Gauge(
    "mailprobe_oracle_state",
    "each oracle's state per country, 1 for the state it is in (oracle: `dns`, the agents'"
    " resolver for mail and reverse DNS, or a blocklist's zone; state: healthy, unhealthy,"
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
LISTINGS = Gauge(
    "mailprobe_blocklist_listings_open",
    "raised blocklist listings still open, per list and its listings' severity",
    ["list", "severity"],
)
REPORTS_DAY = Gauge(
    "mailprobe_reports_received_day",
    "TLS-RPT and DMARC reports stored within the last 24 h, per kind",
    ["kind"],
)
REPORT_MESSAGES_DAY = Gauge(
    "mailprobe_report_messages_day",
    "messages (DMARC) or sessions (TLS-RPT) reported for yesterday and today (UTC), per kind"
    " and result",
    ["kind", "result"],
)


class World:
    """The gauges above, read again when older than `REFRESH_S`."""

    def __init__(self, lists: Iterable[BlockList] = (), clock: Clock = WALL) -> None:
        self._severity = {b.zone: severity(b) for b in lists}
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
        seen = await db.world(conn, self._clock.now() - timedelta(days=1))
        for gauge in (FINDINGS, ORACLES, FLEET, LISTINGS, REPORTS_DAY, REPORT_MESSAGES_DAY):
            gauge.clear()
        blocklisted: dict[str, float] = {}
        for zone, n in seen.listings.items():
            sev = self._severity.get(zone, "warning")
            LISTINGS.labels(zone, sev).set(n)
            blocklisted[sev] = blocklisted.get(sev, 0) + n
        for (code, sev), n in seen.findings.items():
            FINDINGS.labels(code, sev).set(n)
        for sev, total in blocklisted.items():
            FINDINGS.labels("blocklisted", sev).set(total)
        for (oracle, country), now in seen.oracles.items():
            if now not in STATES:
                continue  # `unchecked`: no round asked it lately
            for state in STATES:
                ORACLES.labels(oracle, country, state).set(float(now == state))
        for (check, country), now in seen.fleet.items():
            if now in FLEET_STATES:
                for state in FLEET_STATES:
                    FLEET.labels(check, country, state).set(float(now == state))
        for kind, n in seen.reports.items():
            REPORTS_DAY.labels(kind).set(n)
        kept: dict[str, int] = {}
        for kind, result, n in seen.messages:
            if kept.get(kind, 0) >= RESULTS_MAX:
                continue
            kept[kind] = kept.get(kind, 0) + 1
            REPORT_MESSAGES_DAY.labels(kind, result[:64]).set(float(n))
