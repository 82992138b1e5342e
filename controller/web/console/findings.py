"""The organization's security findings (`/console/findings`): every open finding of the
monitors the caller may read, worst first, one row per monitor and finding naming the countries
that see it (a raised blocklist listing one row each); a fact several monitors of a customer
show (a mail domain's finding, a listing of a name they share) one row naming them; linked from
the overview."""

from litestar import get
from litestar.response import Template

from controller.monitors.thresholds import SEVERITIES
from controller.posture import store as db
from controller.sidechecks.blocklists import store as reputation
from controller.web.api import guards
from controller.web.console.pages import blocklists_of, page
from controller.web.console.posture_view import grouped, listing_counts, listing_rows, worst_first
from controller.web.console.session import principal_of
from controller.web.request_types import AnyRequest
from controller.web.services import PoolDep, ReputationSettingsDep

ORG_OPEN = 2000  # open findings read for the page, at most


@get("/findings", name="console-findings")
async def findings_page(
    request: AnyRequest,
    pool: PoolDep,
    reputation_settings: ReputationSettingsDep,
) -> Template:
    """Every open finding of the organization's monitors, worst first; `?severity=` narrows."""
    wanted = request.query_params.get("severity", "")
    severity = wanted if wanted in SEVERITIES else ""
    scope = guards.read_scope(principal_of(request))
    lists = blocklists_of(reputation_settings)
    async with pool.acquire() as conn:
        rows = await db.open_in(conn, scope, ORG_OPEN)
        by_severity = await db.open_counts(conn, scope)
        listed = listing_rows(
            await reputation.raised_open(conn, scope, None, ORG_OPEN), lists, True
        )
        for level, n in (await listing_counts(conn, scope, lists, ORG_OPEN)).items():
            by_severity[level] = by_severity.get(level, 0) + n
    shown = grouped(rows) + listed
    found = worst_first([f for f in shown if not severity or f.severity == severity])
    return page(
        request,
        "findings.html",
        findings=found,
        by_severity=by_severity,
        severities=SEVERITIES,
        severity=severity,
        cut=len(rows) == ORG_OPEN,
        monitor_ids=len(
            {m.public_id for f in found for m in ([f.monitor] if f.monitor else []) + f.others}
        ),
    )
