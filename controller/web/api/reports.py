"""Reports about an organization's monitored domains (TLS-RPT, DMARC aggregate):

- `POST /reports/tls/{domain}/{token}`: where reporters send TLS-RPT reports by HTTPS (RFC 8460
  §3, `application/tlsrpt+gzip` or `application/tlsrpt+json`); no login, the token routes it.
  An unknown domain and a wrong token get the same 404, so the endpoint never tells whether a
  domain is monitored; each client address may post `REPORTS_POSTS_PER_MINUTE` a minute. A
  report of the wrong content type (415), too large to read (413) or too slow (408) is counted in
  `mailprobe_reports` like every refused report (it is not listed: nothing of it was read), and
  so is one refused because the bodies held at once, counted as they arrive, or the requests
  of its organization or its client address are at their bound (503 `reports_busy`,
  controller/reports/inflight.py).
- `/api/report-domains` (the domains and the addresses to publish, with a warning when
  reporters cannot use them), `.../{domain}/totals` (counts per day and the largest failures,
  read from the running aggregates), `.../{domain}/rotate-token` (owners and admins: a new
  token, the old one accepted for REPORT_TOKEN_GRACE_HOURS), `/api/reports`,
  `/api/rejected-reports` (what came, what was refused and why) and `/api/report-settings`
  (the findings' thresholds; owners and admins change them).
"""

import ipaddress
from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post, put
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.params import FromPath, JSONBody, QueryParameter
from msgspec import Meta

from controller.monitors import validation
from controller.monitors.errors import Invalid
from controller.notify.links import Links
from controller.observability import metrics
from controller.reports import addresses, inflight, intake, senders, tokens
from controller.reports import store as db
from controller.reports.addresses import TLS_PATH
from controller.reports.parse import MAX_PACKED
from controller.secrets.box import SecretBox
from controller.settings import NotifySettings, ReportsSettings
from controller.sidechecks.reports.rules import ReportSettings
from controller.web.api import guards
from controller.web.api.auth import client_address
from controller.web.api.errors import ApiError, bad_request, not_found
from controller.web.api.monitor_rules import strict_body
from controller.web.authed_request import AuthedRequest
from controller.web.body_bounds import BodyTimeout
from controller.web.request_types import AnyRequest
from controller.web.services import BoxDep, ClockDep, NotifySettingsDep, PoolDep, ReportsSettingsDep
from shared.timefmt import iso_ms

TLS_TYPES = ("application/tlsrpt+gzip", "application/tlsrpt+json")
BUSY_RETRY_S = 60
LimitParam = Annotated[int, QueryParameter(ge=1, le=1000, description="rows listed, at most")]
DaysParam = Annotated[int, QueryParameter(ge=1, le=400, description="days back from today")]


def post_guard(reports: ReportsSettings) -> RateLimitConfig:
    """Litestar's rate limiter on the report endpoint: per client address, per replica."""

    async def is_report(request: AnyRequest) -> bool:  # a coroutine function: as flood_guard
        return request.scope["path"].startswith(TLS_PATH + "/")

    return RateLimitConfig(
        rate_limit=("minute", reports.reports_posts_per_minute),
        identifier_for_request=client_address,
        check_throttle_handler=is_report,
        store="report_rate_limit",
    )


class Taken(msgspec.Struct, rename="camel"):
    """`stored` false with `reason` "duplicate": the report was taken before (a retry)."""

    stored: bool
    kind: str
    reason: str | None = None


def _unknown() -> ApiError:
    # One answer for an unknown domain and a wrong token alike.
    return not_found("Not found")


@post(
    TLS_PATH + "/{domain:str}/{token:str}",
    tags=["reports"],
    summary="Receive a TLS-RPT report (RFC 8460) for a monitored domain",
    request_max_body_size=MAX_PACKED,
    status_code=200,
)
async def receive_tls(
    request: AnyRequest,
    pool: PoolDep,
    notify_settings: NotifySettingsDep,
    reports_settings: ReportsSettingsDep,
    box: BoxDep,
    clock: ClockDep,
    domain: FromPath[str],
    token: FromPath[str],
) -> Response[Taken]:
    try:
        name = validation.mail_domain(domain) or ""
    except Invalid:
        raise _unknown() from None
    keys = box.subkeys(tokens.PURPOSE)
    now = clock.now()
    async with pool.acquire() as conn:
        candidates = await db.organizations_monitoring(conn, name)
        generations = [await db.generation(conn, o, name) for o in candidates]
    owner = next(
        (
            o
            for o, g in zip(candidates, generations, strict=True)
            if tokens.matches(
                keys, o, name, token, tokens.accepted(g.generation, g.grace_until, now)
            )
        ),
        None,
    )
    if owner is None:
        tokens.matches(keys, 0, name, token)  # as long for a domain nobody monitors
        raise _unknown()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in TLS_TYPES:
        metrics.report_taken("unknown", "https", "unsupported_type")
        raise ApiError(
            415, f"Content-Type must be one of {', '.join(TLS_TYPES)}", code="unsupported_type"
        )
    source = client_address(request)
    if not inflight.BODIES.admit(owner, source):
        raise _busy()
    held = [0]
    try:
        taken = await _take(
            request, pool, owner, name, source, held, notify_settings, reports_settings, now
        )
    finally:
        inflight.BODIES.leave(owner, source, held[0])
    if taken.stored:
        return Response(Taken(True, "tls"))
    if taken.reason == "duplicate":
        return Response(Taken(False, "tls", "duplicate"))
    raise ApiError(400, f"Report rejected: {taken.message}", code=taken.reason)


def _busy() -> ApiError:
    metrics.report_taken("unknown", "https", "busy")
    return ApiError(
        503,
        "Too many reports are being received for this domain's organization; retry later",
        code="reports_busy",
        headers={"Retry-After": str(BUSY_RETRY_S)},
    )


async def _body(request: AnyRequest, owner: int, held: list[int]) -> bytes:
    """The request's body, each piece counted in the bodies held (`held[0]`: what it holds) as
    it arrives; 503 `reports_busy` when a piece would pass their bound."""
    pieces: list[bytes] = []
    try:
        async for piece in request.stream():
            if not inflight.BODIES.grow(owner, len(piece)):
                raise _busy()
            held[0] += len(piece)
            pieces.append(piece)
    except RequestEntityTooLarge:
        metrics.report_taken("unknown", "https", "too_large")
        raise
    except BodyTimeout:
        metrics.report_taken("unknown", "https", "too_slow")
        raise
    return b"".join(pieces)


async def _take(
    request: AnyRequest,
    pool: PoolDep,
    owner: int,
    name: str,
    address: str,
    held: list[int],
    notify_settings: NotifySettings,
    reports_settings: ReportsSettings,
    now: datetime,
) -> intake.Taken:
    data = await _body(request, owner, held)
    return await intake.take(
        pool,
        owner,
        data,
        "https",
        f"{address} POST for {name}",
        Links.of(notify_settings),
        name,
        kind="tls",
        limits=intake.Limits.of(reports_settings),
        sender=senders.by_https(address),
        now=now,
    )


class ReportDomain(msgspec.Struct, rename="camel"):
    """A domain the organization's monitors name (`mailDomain`), and what to publish for it."""

    domain: str
    monitors: int
    tls_rpt_https: str | None  # the `rua=https://...` address; null without PUBLIC_URL
    tls_rpt_record: str | None  # the whole TXT record at _smtp._tls.<domain>
    tls_rpt_warning: str | None  # why reporters cannot use it (not https), and what to set
    token_generation: int  # 0 until the token is first rotated
    token_rotated_at: str | None
    previous_token_until: str | None  # the previous token is accepted until then


class DayTotal(msgspec.Struct, rename="camel"):
    day: str
    kind: str  # `tls` or `dmarc`
    result: str  # `success` or an RFC 8460 result type; `pass` or `fail` (DMARC)
    count: int


class Failure(msgspec.Struct, rename="camel"):
    kind: str
    reporter: str
    result: str
    mx: str | None
    ip: str | None  # receiving IP (TLS) or source IP (DMARC)
    count: int


class Totals(msgspec.Struct, rename="camel"):
    domain: str
    since: str
    days: list[DayTotal]
    failures: list[Failure]  # the largest, over the same days


class ReceivedReport(msgspec.Struct, rename="camel"):
    kind: str
    reporter: str
    report_id: str
    domains: list[str]
    begins_at: str
    ends_at: str
    via: str
    bytes: int
    received_at: str


class RejectedReport(msgspec.Struct, rename="camel"):
    via: str
    reason: str  # stable: too_large, bomb, bad_packing, malformed, xml_forbidden, ...
    detail: str
    source: str
    bytes: int
    at: str


class ReportSettingsOut(msgspec.Struct, rename="camel"):
    window_days: int
    tls_failures_min: int
    dmarc_failures_min: int
    dmarc_unknown_min: int
    known_networks: list[str]


class ReportSettingsUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    window_days: Annotated[int, Meta(ge=1, le=90)] | msgspec.UnsetType = msgspec.UNSET
    tls_failures_min: Annotated[int, Meta(ge=1)] | msgspec.UnsetType = msgspec.UNSET
    dmarc_failures_min: Annotated[int, Meta(ge=1)] | msgspec.UnsetType = msgspec.UNSET
    dmarc_unknown_min: Annotated[int, Meta(ge=1)] | msgspec.UnsetType = msgspec.UNSET
    known_networks: Annotated[list[str], Meta(max_length=100)] | msgspec.UnsetType = msgspec.UNSET


def _settings_out(s: ReportSettings) -> ReportSettingsOut:
    return ReportSettingsOut(
        s.window_days,
        s.tls_failures_min,
        s.dmarc_failures_min,
        s.dmarc_unknown_min,
        list(s.known_networks),
    )


def _networks(values: list[str]) -> tuple[str, ...]:
    out = []
    for i, value in enumerate(values):
        try:
            out.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise bad_request(
                f"knownNetworks[{i}]", f"knownNetworks[{i}] is not a network: {value[:60]!r}"
            ) from None
    return tuple(out)


class ReportsController(Controller):
    path = "/api"
    tags = ["reports"]

    @get("/report-domains", summary="The monitored domains and the report addresses to publish")
    async def domains(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        notify_settings: NotifySettingsDep,
        box: BoxDep,
        clock: ClockDep,
    ) -> list[ReportDomain]:
        org = request.user.organization_id
        async with pool.acquire() as conn:
            rows = await db.domains_monitored(conn, org)
            generations = await db.generations(conn, org)
        none = db.Generation(0, None, None)
        return [
            _domain(
                notify_settings,
                box,
                org,
                r.domain,
                r.monitors,
                generations.get(r.domain, none),
                clock.now(),
            )
            for r in rows
        ]

    @post(
        "/report-domains/{domain:str}/rotate-token",
        summary="Give a domain a new TLS-RPT token; the old one is accepted for a grace period"
        " (owners, admins)",
        status_code=200,
    )
    async def rotate_token(
        self,
        request: AuthedRequest,
        domain: FromPath[str],
        pool: PoolDep,
        notify_settings: NotifySettingsDep,
        reports_settings: ReportsSettingsDep,
        box: BoxDep,
        clock: ClockDep,
    ) -> ReportDomain:
        guards.requires_admin(request.user)
        org = request.user.organization_id
        name = _monitored_name(domain)
        grace = timedelta(hours=reports_settings.report_token_grace_hours)
        async with pool.acquire() as conn, conn.transaction():
            monitored = {d.domain: d.monitors for d in await db.domains_monitored(conn, org)}
            if name not in monitored:
                raise not_found("No such domain")
            now = clock.now()
            generation = await db.rotate(conn, org, name, now, grace)
        return _domain(notify_settings, box, org, name, monitored[name], generation, now)

    @get(
        "/report-domains/{domain:str}/totals",
        summary="A domain's report counts per day, kind and result, and its largest failures",
    )
    async def totals(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        clock: ClockDep,
        domain: FromPath[str],
        days: DaysParam = 30,
    ) -> Totals:
        org = request.user.organization_id
        name = _monitored_name(domain)
        since = (clock.now() - timedelta(days=days)).date()
        async with pool.acquire() as conn:
            if name not in await db.monitored_domains(conn, org):
                raise not_found("No such domain")
            rows = await db.totals(conn, org, name, since)
            worst = await db.breakdown(conn, org, name, since, 50)
        return Totals(
            domain=name,
            since=since.isoformat(),
            days=[DayTotal(r.day.isoformat(), r.kind, r.result, r.n) for r in rows],
            failures=[
                Failure(r.kind, r.reporter, r.result, r.mx or None, r.ip or None, r.n)
                for r in worst
            ],
        )

    @get("/reports", summary="Reports received, newest first")
    async def received(
        self, request: AuthedRequest, pool: PoolDep, limit: LimitParam = 100
    ) -> list[ReceivedReport]:
        async with pool.acquire() as conn:
            rows = await db.received(conn, request.user.organization_id, limit)
        return [
            ReceivedReport(
                r.kind,
                r.reporter,
                r.report_id,
                list(r.domains),
                iso_ms(r.begins_at),
                iso_ms(r.ends_at),
                r.via,
                r.bytes,
                iso_ms(r.received_at),
            )
            for r in rows
        ]

    @get("/rejected-reports", summary="Reports refused, newest first, each with its reason")
    async def rejected(
        self, request: AuthedRequest, pool: PoolDep, limit: LimitParam = 100
    ) -> list[RejectedReport]:
        async with pool.acquire() as conn:
            rows = await db.rejected(conn, request.user.organization_id, limit)
        return [
            RejectedReport(r.via, r.reason, r.detail, r.source, r.bytes, iso_ms(r.at)) for r in rows
        ]

    @get("/report-settings", summary="The thresholds of the findings reports raise")
    async def get_settings(self, request: AuthedRequest, pool: PoolDep) -> ReportSettingsOut:
        async with pool.acquire() as conn:
            s = await db.settings(conn, request.user.organization_id)
        return _settings_out(s)

    @put("/report-settings", summary="Change the report findings' thresholds (owners, admins)")
    async def put_settings(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        clock: ClockDep,
        data: JSONBody[ReportSettingsUpdate],
    ) -> ReportSettingsOut:
        guards.requires_admin(request.user)
        data = await strict_body(request, data)
        org = request.user.organization_id
        async with pool.acquire() as conn, conn.transaction():
            s = await db.settings(conn, org)
            changes = {
                k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET
            }
            if "known_networks" in changes:
                changes["known_networks"] = _networks(changes["known_networks"])
            s = ReportSettings(**{**_as_dict(s), **changes})
            await db.save_settings(conn, org, s, clock.now())
        return _settings_out(s)


def _monitored_name(domain: str) -> str:
    try:
        return validation.mail_domain(domain, "domain") or ""
    except Invalid:
        raise not_found("No such domain") from None


def _domain(
    notify_settings: NotifySettings,
    box: SecretBox,
    org: int,
    domain: str,
    monitors: int,
    generation: db.Generation,
    now: datetime,
) -> ReportDomain:
    key = box.subkeys(tokens.PURPOSE)[0]
    shown = addresses.tls_rpt(Links.of(notify_settings), key, org, domain, generation.generation)
    grace = generation.grace_until
    return ReportDomain(
        domain,
        monitors,
        shown.url,
        shown.record,
        shown.warning,
        generation.generation,
        iso_ms(generation.rotated_at) if generation.rotated_at else None,
        iso_ms(grace) if grace is not None and grace > now else None,
    )


def _as_dict(s: ReportSettings) -> dict[str, object]:
    return {
        "window_days": s.window_days,
        "tls_failures_min": s.tls_failures_min,
        "dmarc_failures_min": s.dmarc_failures_min,
        "dmarc_unknown_min": s.dmarc_unknown_min,
        "known_networks": s.known_networks,
    }
