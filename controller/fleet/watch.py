"""The fleet's health, moved every pass (the alerter role, `FleetWatch.run_once`): each
country's live agents and their features from this controller's live view
(controller.fleet.live), its `saturated` rounds from PostgreSQL, judged by
controller.fleet.health and stepped by the operator health rule (controller.operator_health);
a change that held is one `fleet` notice (what is wrong, where, what the operator does; the
fleet's own budget, never the outages') to the owners of each organization whose monitors list
that country, and, where the fleet serves it (`health.served`), to the owners of those whose
monitors run everywhere and to the deployment's operators; and a log line. A country only a
tenant lists is that tenant's own notice: no other organization, and no operator, hears of it.
Nothing is judged while the live view is not warm (NATS away or just back): an incomplete view
is no outage of the fleet.

A country once served stays expected for `health.FORGET` after its agents went (then
`unchecked`, never told again), beside the countries monitors list.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

import asyncpg
import structlog

from controller.db.pool import Conn
from controller.fleet import health
from controller.fleet import health_store as db
from controller.fleet.live import LiveAgents
from controller.notify.texts import Texts, with_facts
from controller.operator_health import store as health_db
from controller.operator_health.rules import HOLD, Change, Health, Stored
from controller.operator_health.watch import move, tell_operators, tell_owners
from shared.clock import Clock
from shared.messages import AGENT_FEATURES
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

WINDOW: Final = timedelta(minutes=15)  # the rounds whose saturated share is judged


class FleetWatch:
    def __init__(
        self,
        pool: asyncpg.Pool,
        agents: LiveAgents,
        *,
        saturated_ratio_max: float,
        hold: timedelta = HOLD,
        window: timedelta = WINDOW,
        needed: Sequence[str] = AGENT_FEATURES,
        clock: Clock,
    ) -> None:
        """`clock`: the instant health is judged at when a pass is not given one."""
        self._pool = pool
        self._clock = clock
        self._agents = agents
        self._ratio_max = saturated_ratio_max
        self._hold = hold
        self._window = window
        self._needed = tuple(needed)

    async def run_once(self, now: datetime | None = None) -> None:
        if not self._agents.is_warm():
            return
        at = now or self._clock.now()
        live: dict[str, dict[str, list[str]]] = {}
        for beat in self._agents.agents():
            live.setdefault(beat.country, {})[beat.agent_id] = beat.features
        async with self._pool.acquire() as conn, conn.transaction():
            stored = await health_db.healths(conn, db.HEALTH, lock=True)
            served = health.served(stored, at)
            now_health = health.judge(
                expected=await db.listed_countries(conn) | served,
                agents=live,
                rounds=await db.rounds(conn, at - self._window),
                ratio_max=self._ratio_max,
                needed=self._needed,
            )
            gone = Health("unchecked", "not judged now")
            told = await move(conn, db.HEALTH, stored, now_health, at, hold=self._hold, gone=gone)
            for t in told:
                await self._tell(conn, *t, t.country in served, at)

    async def _tell(
        self,
        conn: Conn,
        check: str,
        country: str,
        s: Stored,
        change: Change,
        served: bool,
        now: datetime,
    ) -> None:
        log.warning("fleet " + change, check=check, country=country, reason=s.reason)
        texts = notice(check, country, s, change)
        key = f"fleet:{check}:{country}:{change}:{iso_ms(s.since)}"
        orgs = await db.affected_organizations(conn, country, served)
        await tell_owners(conn, orgs, texts, key, now)
        if served:
            await tell_operators(conn, texts, key, now)


LABELS: Final = {
    health.AGENTS: "No live agent",
    health.SATURATION: "Saturated",
    health.FEATURES: "Agents too old",
}


def notice(check: str, country: str, s: Stored, change: Change) -> Texts:
    """A fleet check that failed in a country, or recovered, in words, with what to do."""
    label = LABELS.get(check, check)
    if change == "unhealthy":
        subject = f"[mailprobe] {label} in {country}"
        lead = f"{label} in {country} since {iso_ms(s.since)}: {s.reason}."
        facts = [
            ("Check", check),
            ("Country", country),
            ("Why", s.reason or "-"),
            ("What to do", health.FIXES.get(check, "-")),
        ]
        sms = f"mailprobe: {label.lower()} in {country}"
    else:
        subject = f"[mailprobe] Fleet well again in {country}: {check}"
        lead = f"The fleet's `{check}` check in {country} is healthy again."
        facts = [("Check", check), ("Country", country), ("Since", iso_ms(s.since))]
        sms = f"mailprobe: {check} in {country} healthy again"
    return with_facts(subject, lead, facts, sms)
