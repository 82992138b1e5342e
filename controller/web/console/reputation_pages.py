"""The console's Reputation page (`/console/reputation`, the menu's Reputation): the blocklists
the operator's `BLOCKLISTS` asks and each one's health in every country that asked it lately
(controller.sidechecks.blocklists.view `lists_health`, as `GET /api/blocklists` shows it). A
monitor's own listings are on its page and among the findings."""

from litestar import get
from litestar.response import Template

from controller.sidechecks.blocklists.view import lists_health
from controller.web.console.oracles_view import not_believed
from controller.web.console.pages import blocklists_of, page
from controller.web.console.session import principal_of
from controller.web.request_types import AnyRequest
from controller.web.services import ClockDep, PoolDep, ReputationSettingsDep


@get("/reputation", name="console-reputation")
async def reputation_page(
    request: AnyRequest,
    pool: PoolDep,
    reputation_settings: ReputationSettingsDep,
    clock: ClockDep,
) -> Template:
    lists = blocklists_of(reputation_settings)
    interval = reputation_settings.blocklist_interval_seconds
    now = clock.now()
    async with pool.acquire() as conn:
        seen = await lists_health(conn, lists, interval, now)
        dark = await not_believed(conn, principal_of(request), now, interval)
    rows = [
        {
            "zone": b.zone,
            "label": b.label,
            "kind": b.kind,
            "severity": "critical" if b.major else "warning",
            "countries": [
                {"country": cc, "state": h.state, "reason": h.reason}
                for (zone, cc), h in sorted(seen.health.items())
                if zone == b.zone
            ],
        }
        for b in lists
    ]
    behind = {n.country: n for n in dark if n.lists}
    return page(request, "reputation.html", lists=rows, not_believed=dark, behind=behind)
