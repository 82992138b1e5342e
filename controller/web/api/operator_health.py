"""What `GET /api/fleet` and `GET /api/oracles` share: the stored operator healths
(controller.operator_health) as rows, in (name, country) order, each with the advice its owner
gives for its state; every country's for the deployment's operators, the caller's
organization's countries for its owners and admins (`readable`)."""

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TypeVar

from controller.access.accounts_store import Principal
from controller.db.pool import Conn
from controller.fleet import health_store as fleet_db
from controller.operator_health.rules import Stored
from controller.web.api.guards import sees_every_country
from shared.timefmt import iso_ms

Row = TypeVar("Row")


def health_rows(
    stored: Mapping[tuple[str, str], Stored],
    advice: Callable[[str, str, str], str],
    row: Callable[[str, str, str, str, str, str], Row],
) -> list[Row]:
    """`row(name, country, state, reason, since, advice(name, state, reason))` for each stored
    health."""
    return [
        row(name, country, s.state, s.reason, iso_ms(s.since), advice(name, s.state, s.reason))
        for (name, country), s in sorted(stored.items())
    ]


async def readable(
    conn: Conn, principal: Principal, stored: Mapping[tuple[str, str], Stored], now: datetime
) -> Mapping[tuple[str, str], Stored]:
    """Those of `stored` the caller reads: all for the deployment's operators and global
    supporters; for anyone else those of the countries their organization is told of
    (`fleet_db.countries_of`: its monitors' countries), so no tenant learns which countries
    another lists."""
    if sees_every_country(principal):
        return stored
    theirs = await fleet_db.countries_of(conn, principal.organization_id, now)
    return {key: s for key, s in stored.items() if key[1] in theirs}
