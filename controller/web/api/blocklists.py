"""`GET /api/blocklists`: the lists the operator's `BLOCKLISTS` asks and each one's health in
every country that asked it lately (RFC 5782 test entries,
controller/sidechecks/blocklists/rules.py)."""

import msgspec
from litestar import get

from controller.sidechecks.blocklists.rules import lists_setting
from controller.sidechecks.blocklists.view import lists_health
from controller.web.services import ClockDep, PoolDep, ReputationSettingsDep
from shared.timefmt import iso_ms_or_none


class ListHealthOut(msgspec.Struct, rename="camel"):
    country: str
    state: str  # healthy, unhealthy, unknown
    reason: str
    # the hour its test entries were last answered there: to the hour, as the round that asked
    # them is some organization's
    checked_at: str | None


class BlocklistOut(msgspec.Struct, rename="camel"):
    zone: str
    kind: str  # ip or domain
    label: str
    severity: str  # of its listings: critical (a major list) or warning
    delisting: str  # its delisting page (`{name}`: the listed name)
    test_entries: list[str]  # RFC 5782: listed, never listed
    countries: list[ListHealthOut]


class BlocklistsOut(msgspec.Struct, rename="camel"):
    enabled: bool  # BLOCKLISTS is set
    interval_seconds: int
    hold_seconds: int
    lists: list[BlocklistOut]


@get("/api/blocklists", tags=["blocklists"], summary="The blocklists asked and their health")
async def list_blocklists(
    pool: PoolDep, reputation_settings: ReputationSettingsDep, clock: ClockDep
) -> BlocklistsOut:
    lists = lists_setting(reputation_settings.blocklists)
    interval = reputation_settings.blocklist_interval_seconds
    async with pool.acquire() as conn:
        seen = await lists_health(conn, lists, interval, clock.now())
    out = []
    for b in lists:
        countries = [
            ListHealthOut(cc, h.state, h.reason, iso_ms_or_none(seen.checked.get((zone, cc))))
            for (zone, cc), h in sorted(seen.health.items())
            if zone == b.zone
        ]
        severity = "critical" if b.major else "warning"
        out.append(
            BlocklistOut(b.zone, b.kind, b.label, severity, b.delist, list(b.tests), countries)
        )
    return BlocklistsOut(bool(lists), interval, reputation_settings.blocklist_hold_seconds, out)
