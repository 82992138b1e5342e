"""What a caller reads of the live agents (`GET /api/agents`, the console's agents page): the
deployment's operators and global supporters every agent (its id, version, load and
self-check); anyone else, per country, only whether a live agent serves it, for the countries
agents serve now and those their organization's monitors list (`fleet_db.countries_of`)."""

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from controller.access.accounts_store import Principal
from controller.fleet import health_store as fleet_db
from controller.fleet.live import LiveAgents
from controller.web.api.guards import sees_every_country
from shared.messages import AgentHeartbeat


@dataclass(frozen=True, slots=True)
class CountryView:
    """A country as the caller sees it: `live` while an agent serves it, and its agents (none
    shown to a tenant)."""

    country: str
    live: bool
    agents: list[AgentHeartbeat] = field(default_factory=list)


async def agents_view(
    pool: asyncpg.Pool, principal: Principal, agents: LiveAgents, now: datetime
) -> list[CountryView]:
    """The countries the caller reads at `now`, in code order."""
    beats = agents.agents()
    if sees_every_country(principal):
        by_country: dict[str, list[AgentHeartbeat]] = {}
        for b in beats:
            by_country.setdefault(b.country, []).append(b)
        return [CountryView(cc, True, a) for cc, a in sorted(by_country.items())]
    live = {b.country for b in beats}
    async with pool.acquire() as conn:
        theirs = await fleet_db.countries_of(conn, principal.organization_id, now)
    return [CountryView(cc, cc in live) for cc in sorted(live | theirs)]
