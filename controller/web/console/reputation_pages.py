"""The console's Reputation page (`/console/reputation`, the menu's Reputation): the blocklists
the operator's `BLOCKLISTS` asks and each one's health in every country that asked it lately
(controller.sidechecks.blocklists.view `lists_health`, as `GET /api/blocklists` shows it). A
monitor's own listings are on its page and among the findings."""

from litestar import get
from litestar.response import Template

from controller.sidechecks.blocklists.view import lists_health
from controller.web.console.pages import blocklists_of, page
from controller.web.request_types import AnyRequest
from controller.web.services import PoolDep, ReputationSettingsDep
from shared.timefmt import utcnow


@get("/reputation", name="console-reputation")
async def reputation_page(
    request: AnyRequest, pool: PoolDep, reputation_settings: ReputationSettingsDep
) -> Template:
    lists = blocklists_of(reputation_settings)
    interval = reputation_settings.blocklist_interval_seconds
    async with pool.acquire() as conn:
        seen = await lists_health(conn, lists, interval, utcnow())
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
    return page(request, "reputation.html", lists=rows)
