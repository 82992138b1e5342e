"""What the console shows of the oracles that are not believed (controller/oracles): each
country whose agents' resolver failed its canaries, with its reason and what to set, as
`GET /api/oracles` has them, and whether that country's blocklists are asked through it (then
they are not judged apart: `oracles.rules.root_cause`). The overview, the monitor page and the
Reputation page say "not believed" from it, never "0 open findings"."""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.access.accounts_store import Principal
from controller.db.pool import Conn
from controller.operator_health import store as health_db
from controller.oracles import store as oracles_db
from controller.oracles.rules import BEHIND, RESOLVER, fix
from controller.sidechecks.blocklists import store as lists_db
from controller.web.api.operator_health import readable

_BAD = ("unhealthy", "unknown")


@dataclass(frozen=True, slots=True)
class NotBelieved:
    country: str
    state: str
    reason: str
    since: datetime
    what_to_set: str
    lists: bool  # the country's blocklists are asked through it


async def not_believed(
    conn: Conn,
    principal: Principal,
    now: datetime,
    list_interval_s: int,
    countries: Collection[str] | None = None,
) -> list[NotBelieved]:
    """The resolvers not believed now in the countries the caller reads (of `countries`, when
    given), in country order; `lists`: the country's rounds within two list intervals asked
    the lists through it, or a list there is unknown for that reason."""
    stored = await readable(conn, principal, await health_db.healths(conn, oracles_db.HEALTH), now)
    if not any(oracle == RESOLVER and s.state in _BAD for (oracle, _), s in stored.items()):
        return []
    since = now - timedelta(seconds=2 * list_interval_s)
    behind = set(await lists_db.through_resolver(conn, since)) | {
        cc
        for (oracle, cc), s in stored.items()
        if oracle != RESOLVER and s.state in _BAD and s.reason.startswith(BEHIND)
    }
    return [
        NotBelieved(cc, s.state, s.reason, s.since, fix(oracle, s.reason), cc in behind)
        for (oracle, cc), s in sorted(stored.items())
        if oracle == RESOLVER and s.state in _BAD and (countries is None or cc in countries)
    ]
