"""A monitor's blocklist standing: `GET /api/{kind}-monitors/{id}/blocklists` (every kind; any
role; another organization's monitor is a 404). Each name its mail depends on (its host's and
MX hosts' addresses as found from each country, its mail domain, the outbound names it lists),
on every list of its kind, per country: `listed`, `not_listed`, `list_unhealthy` or `unknown`,
since when, why, and the list's delisting page; then its listings with their history."""

from datetime import datetime

import asyncpg
import msgspec
from litestar import Router, get

from controller.monitors.kinds import Kind
from controller.settings import BlocklistSettings
from controller.sidechecks.blocklists import rules
from controller.sidechecks.blocklists.rules import lists_setting
from controller.sidechecks.blocklists.view import monitor_standing
from controller.web.api.monitor_kinds import KindApi
from controller.web.api.monitor_lookup import visible_monitor
from controller.web.authed_request import AuthedRequest
from controller.web.services import ClockDep, PoolDep, ReputationSettingsDep
from shared.timefmt import iso_ms, iso_ms_or_none


class StandingOut(msgspec.Struct, rename="camel"):
    country: str
    # `listed`, `not_listed`, `list_unhealthy` (its answers there say nothing), `unknown`
    state: str
    reason: str  # why listed (the list's codes as it documents them), unhealthy or unknown
    since: str | None  # listed: since when (the monitor's listing opened, else the answer)
    checked_at: str | None  # when the list last answered about the name from that country


class OnListOut(msgspec.Struct, rename="camel"):
    zone: str
    label: str
    severity: str  # of a listing there: `critical` (a major list) or `warning`
    delisting: str  # the list's delisting page for this name ("" when it has none)
    raised: bool  # a listing there held BLOCKLIST_HOLD_SECONDS: the `blocklisted` finding
    countries: list[StandingOut]


class NameOut(msgspec.Struct, rename="camel"):
    name: str
    kind: str  # `ip` or `domain`
    sources: list[str]  # `host`, `mx:<MX host>`, `listed` (the monitor's `reputation`)
    countries: list[str]  # where its rounds found it
    lists: list[OnListOut]


class ListingOut(msgspec.Struct, rename="camel"):
    zone: str
    label: str
    name: str
    severity: str
    since: str
    countries: list[str]  # that saw it listed last
    reason: str
    raised_at: str | None  # when it became the `blocklisted` finding (null: not held yet)
    cleared_at: str | None  # null: still listed
    delisting: str


class MonitorBlocklists(msgspec.Struct, rename="camel"):
    """`enabled`: BLOCKLISTS is set (else `names` is empty)."""

    monitor_id: str
    enabled: bool
    interval_seconds: int
    hold_seconds: int
    names: list[NameOut]
    listings: list[ListingOut]


async def _blocklists(
    kind: Kind,
    request: AuthedRequest,
    raw_id: str,
    pool: asyncpg.Pool,
    reputation_settings: BlocklistSettings,
    now: datetime,
) -> MonitorBlocklists:
    monitor = await visible_monitor(kind, request, raw_id, pool)
    lists = lists_setting(reputation_settings.blocklists)
    interval = reputation_settings.blocklist_interval_seconds
    async with pool.acquire() as conn:
        seen = await monitor_standing(conn, monitor, lists, interval, now)
    known = {b.zone: b for b in lists}
    names = [
        NameOut(
            n.name,
            n.kind,
            list(n.sources),
            list(n.countries),
            [
                OnListOut(
                    on.list.zone,
                    on.list.label,
                    rules.severity(on.list),
                    on.list.delisting(n.name),
                    on.listing is not None and on.listing.raised,
                    [
                        StandingOut(
                            c.country,
                            c.state,
                            c.reason,
                            iso_ms_or_none(c.since),
                            iso_ms_or_none(c.checked_at),
                        )
                        for c in on.cells
                    ],
                )
                for on in n.lists
            ],
        )
        for n in seen.names
    ]
    listings = []
    for row in seen.history:
        b = known.get(row.zone)
        listings.append(
            ListingOut(
                row.zone,
                b.label if b else row.zone,
                row.name,
                rules.severity(b) if b else "warning",
                iso_ms(row.since),
                list(row.countries),
                row.reason,
                iso_ms_or_none(row.raised_at),
                iso_ms_or_none(row.cleared_at),
                b.delisting(row.name) if b else "",
            )
        )
    return MonitorBlocklists(
        str(monitor.public_id),
        bool(lists),
        interval,
        reputation_settings.blocklist_hold_seconds,
        names,
        listings,
    )


def router(api: KindApi) -> Router:
    """`api`'s kind's blocklist standing."""
    kind = api.kind

    async def blocklists(
        request: AuthedRequest,
        monitor_id: str,
        pool: PoolDep,
        reputation_settings: ReputationSettingsDep,
        clock: ClockDep,
    ) -> MonitorBlocklists:
        return await _blocklists(kind, request, monitor_id, pool, reputation_settings, clock.now())

    summary = f"{api.label} blocklist standing: each name per list and country, listings"
    handler = get("/blocklists", summary=summary)(api.by_id(blocklists))
    return Router(api.item_path, tags=[api.tag], route_handlers=[handler])
