"""A monitor's security posture: `GET /api/{kind}-monitors/{id}/posture` (every kind), with
the
other sub-resources' tenancy (another organization's monitor is a 404; any role may read).

Open findings come first, worst first, each with a sentence a person can act on; then the
history (when each appeared and cleared), the changes every country saw alike (a renewed
certificate), and what each country normally sees (its baseline)."""

from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Router, get
from litestar.params import QueryParameter

from controller.monitors.kinds import Kind
from controller.operator_health import store as health_db
from controller.oracles import store as oracles_db
from controller.oracles.rules import RESOLVER, fix
from controller.posture import store as db
from controller.posture.notices import title
from controller.posture.rules import CODES
from controller.posture.store import ListedFinding
from controller.web.api.monitor_kinds import KindApi
from controller.web.api.monitor_lookup import visible_monitor
from controller.web.api.oracles import OracleOut
from controller.web.authed_request import AuthedRequest
from controller.web.services import PoolDep
from shared.timefmt import iso_ms, iso_ms_or_none

LimitParam = Annotated[
    int, QueryParameter(ge=1, le=1000, description="findings and changes listed, at most")
]


class FindingOut(msgspec.Struct, rename="camel"):
    code: str
    title: str
    severity: str  # `critical`, `warning`, `info`
    country: str | None  # null: the monitor as a whole
    detail: str  # what was seen
    advice: str  # what to do about it
    state: str  # `open` or `cleared`
    appeared_at: str
    last_seen_at: str
    cleared_at: str | None


class ChangeOut(msgspec.Struct, rename="camel"):
    fact: str  # `starttls`, `auth`, `tls_version`, `cert_sha256`
    before: list[Any]
    after: Any
    countries: list[str]
    at: str


class BaselineOut(msgspec.Struct, rename="camel"):
    country: str
    facts: dict[str, Any]
    updated_at: str


class Posture(msgspec.Struct, rename="camel"):
    """`worst`: the highest severity among open findings (null: none open)."""

    monitor_id: str
    worst: str | None
    open: int
    findings: list[FindingOut]
    changes: list[ChangeOut]
    baselines: list[BaselineOut]
    # The countries whose resolver is not believed now (its canaries failed): their mail DNS
    # and reverse DNS are unknown there, never a finding (controller/oracles).
    dns_not_believed: list[OracleOut] = msgspec.field(default_factory=list)


def _finding(row: ListedFinding) -> FindingOut:
    return FindingOut(
        code=row.code,
        title=title(row.code),
        severity=row.severity,
        country=row.country or None,
        detail=row.detail,
        advice=CODES[row.code][1] if row.code in CODES else "",
        state="open" if row.cleared_at is None else "cleared",
        appeared_at=iso_ms(row.appeared_at),
        last_seen_at=iso_ms(row.last_seen_at),
        cleared_at=iso_ms_or_none(row.cleared_at),
    )


async def _posture(
    kind: Kind, request: AuthedRequest, pool: asyncpg.Pool, raw_id: str, limit: int
) -> Posture:
    monitor = await visible_monitor(kind, request, raw_id, pool)
    async with pool.acquire() as conn:
        findings = [_finding(r) for r in await db.findings_page(conn, monitor.id, limit)]
        changes = [
            ChangeOut(r.fact, r.before, r.after, list(r.countries), iso_ms(r.at))
            for r in await db.changes_page(conn, monitor.id, limit)
        ]
        baselines = [
            BaselineOut(r.country, r.facts, iso_ms(r.updated_at))
            for r in await db.baseline_rows(conn, monitor.id)
        ]
        resolvers = await health_db.healths(conn, oracles_db.HEALTH)
    countries = set(monitor.allowed_country_codes or ()) | {b.country for b in baselines}
    not_believed = [
        OracleOut(oracle, cc, h.state, h.reason, iso_ms(h.since), fix(oracle))
        for (oracle, cc), h in sorted(resolvers.items())
        if oracle == RESOLVER and cc in countries and h.state in ("unhealthy", "unknown")
    ]
    still = [f for f in findings if f.state == "open"]
    return Posture(
        monitor_id=str(monitor.public_id),
        worst=still[0].severity if still else None,
        open=len(still),
        findings=findings,
        changes=changes,
        baselines=baselines,
        dns_not_believed=not_believed,
    )


def router(api: KindApi) -> Router:
    """`api`'s kind's security posture."""
    kind = api.kind

    async def posture(
        request: AuthedRequest,
        pool: PoolDep,
        monitor_id: str,
        limit: LimitParam = 200,
    ) -> Posture:
        return await _posture(kind, request, pool, monitor_id, limit)

    summary = f"{api.label} security posture: findings, changes, baselines"
    handler = get("/posture", summary=summary)(api.by_id(posture))
    return Router(api.item_path, tags=[api.tag], route_handlers=[handler])
