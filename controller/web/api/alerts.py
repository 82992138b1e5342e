"""Incidents, delivery history and alert thresholds of a monitor; the organization's defaults.

Under each kind's `/api/…-monitors/{id}/…` (`router`), with the monitor endpoints' tenancy
(another organization's monitor is a 404), and `/api/alert-settings`.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Router, get, put
from litestar.params import JSONBody, QueryParameter
from msgspec import Meta

from controller.alerting import incident_store as incident_db
from controller.alerting.incident_store import ListedIncident
from controller.logins import backoff_store as backoff_db
from controller.logins import cap_store as login_caps
from controller.monitors import thresholds_store as thresholds_db
from controller.monitors.kinds import Kind
from controller.monitors.thresholds import Thresholds
from controller.notify import outbox_store as outbox_db
from controller.roundtrips import delivery_store as delivery_db
from controller.roundtrips import sends_store as mail_sends
from controller.web.api import guards
from controller.web.api.monitor_kinds import KindApi
from controller.web.api.monitor_lookup import visible_monitor
from controller.web.api.monitor_rules import strict_body
from controller.web.api.page import Page, published
from controller.web.authed_request import AuthedRequest
from controller.web.services import ClockDep, PoolDep
from shared.timefmt import iso_ms, iso_ms_or_none

PageParam = Annotated[int, QueryParameter(ge=1, le=1_000_000, description="1-based page number")]
PerPageParam = Annotated[
    int, QueryParameter(name="perPage", ge=1, le=200, description="items per page")
]
Share = Annotated[
    float,
    Meta(
        ge=0,
        lt=1,
        description="a round fails when more than this share of its expected countries "
        "failed (0.5: a majority; 0: any one country; a country that did not run it counts "
        "as not failing)",
    ),
]
Rounds = Annotated[int, Meta(ge=1, le=100)]
ExpiryDays = Annotated[
    list[Annotated[int, Meta(ge=0, le=365)]],
    Meta(
        max_length=5,
        description="days before a certificate expires at which a notice goes out, one per "
        "threshold per certificate (default [21, 7])",
    ),
]

FindingSeverities = Annotated[
    list[Literal["critical", "warning", "info"]],
    Meta(
        max_length=3,
        description="the severities of posture findings and certificate expiry notices told on "
        "this channel (a finding kind's severity is listed with it in docs/alerts.md); [] for "
        "none",
    ),
]


Delivery = Annotated[
    str,
    Meta(
        description="its down notices and reminders: `sent` (at least one was delivered), "
        "`pending` (queued, none delivered yet: retrying, or no controller has the channel "
        "configured), `failed` (none delivered, none left to try), `none` (nothing queued: "
        "opened in maintenance, or the monitor has no notification address)"
    ),
]


class Incident(msgspec.Struct, rename="camel"):
    """`durationSeconds` is null while the incident is open; `endReason` says why it ended when
    not by recovering (`monitoring disabled`), else null. `notified` is true only once a notice
    about it was delivered (`delivery`): its own, or its flow incident's naming it."""

    id: str
    monitor_id: str
    state: str  # `open` or `closed`
    started_at: str
    ended_at: str | None
    duration_seconds: float | None
    cause_kind: str
    cause: str
    countries: list[str]
    notified: bool
    delivery: Delivery
    end_reason: str | None


IncidentPage = Annotated[Page[Incident], published("IncidentPage")]


class DeliveryAttempt(msgspec.Struct, rename="camel"):
    id: int
    incident_id: str | None
    kind: str  # `down`, `reminder`, `recovered`, `no_data` (closed for lack of data), `finding`,
    # `cert_expiry`, `credentials`, `held_back` (the owners' notice that the notification budget
    # was reached)
    channel: str  # `email`, `sms`, or a notification channel's kind (`webhook`, `slack`, ...)
    target: str  # the address, the number, or the notification channel's public id
    attempt: int
    status: str  # `sent`, `failed`, `dropped` (not sent on purpose: `error` says why)
    error: str | None
    at: str


DeliveryAttemptPage = Annotated[Page[DeliveryAttempt], published("DeliveryAttemptPage")]


class AlertSettings(msgspec.Struct, rename="camel"):
    """Organization defaults (`GET/PUT /api/alert-settings`)."""

    failure_threshold: Share
    down_after_rounds: Rounds
    recover_after_rounds: Rounds
    cert_expiry_days: ExpiryDays
    # A failing round is checked again at once from all the monitor's countries (a
    # confirmation round, counted like any round), so an outage is down within seconds.
    confirm_failures: bool
    # Default ["critical", "warning"]: what a person should act on.
    finding_email_severities: FindingSeverities
    # Default []: a finding is a state to fix, not an outage to wake anyone for.
    finding_sms_severities: FindingSeverities
    # Default ["critical", "warning"]: what goes to the monitor's notification channels.
    finding_channel_severities: FindingSeverities


class AlertSettingsUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    failure_threshold: Share | msgspec.UnsetType = msgspec.UNSET
    down_after_rounds: Rounds | msgspec.UnsetType = msgspec.UNSET
    recover_after_rounds: Rounds | msgspec.UnsetType = msgspec.UNSET
    cert_expiry_days: ExpiryDays | msgspec.UnsetType = msgspec.UNSET
    confirm_failures: bool | msgspec.UnsetType = msgspec.UNSET
    finding_email_severities: FindingSeverities | msgspec.UnsetType = msgspec.UNSET
    finding_sms_severities: FindingSeverities | msgspec.UnsetType = msgspec.UNSET
    finding_channel_severities: FindingSeverities | msgspec.UnsetType = msgspec.UNSET


class MonitorAlertSettingsUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """The monitor's own values; null or absent inherits the organization's."""

    failure_threshold: Share | None = None
    down_after_rounds: Rounds | None = None
    recover_after_rounds: Rounds | None = None
    cert_expiry_days: ExpiryDays | None = None
    confirm_failures: bool | None = None
    finding_email_severities: FindingSeverities | None = None
    finding_sms_severities: FindingSeverities | None = None
    finding_channel_severities: FindingSeverities | None = None


class MonitorAlertSettings(msgspec.Struct, rename="camel"):
    """The monitor's own values (null: inherited) and the `effective` ones."""

    monitor_id: str
    failure_threshold: float | None
    down_after_rounds: int | None
    recover_after_rounds: int | None
    cert_expiry_days: list[int] | None
    confirm_failures: bool | None
    finding_email_severities: list[str] | None
    finding_sms_severities: list[str] | None
    finding_channel_severities: list[str] | None
    effective: AlertSettings


class LoginBackoff(msgspec.Struct, rename="camel"):
    """Whether the monitor's logins are backed off because its credentials were rejected
    (`GET …/login-backoff`); new credentials (PATCH) end it. `loginCapped`: whether its
    account's login cap (`loginCap` per 10 minutes) was reached within the last 10 minutes,
    first at `loginCappedSince`; its checks that would log in are recorded `login_capped`."""

    monitor_id: str
    backed_off: bool
    reason: str | None = None
    rejected_rounds: int = 0
    since: str | None = None
    next_login_at: str | None = None
    login_capped: bool = False
    login_cap: int | None = None
    login_capped_since: str | None = None


def _incident(row: ListedIncident, monitor_public_id: str) -> Incident:
    return Incident(
        id=str(row.public_id),
        monitor_id=monitor_public_id,
        state="open" if row.ended_at is None else "closed",
        started_at=iso_ms(row.started_at),
        ended_at=iso_ms_or_none(row.ended_at),
        duration_seconds=row.duration_seconds,
        cause_kind=row.cause_kind,
        cause=row.cause,
        countries=list(row.countries),
        notified=row.delivered > 0,
        delivery=delivery(row.queued, row.delivered, row.waiting),
        end_reason=row.end_reason,
    )


def delivery(queued: int, delivered: int, waiting: int) -> str:
    if delivered:
        return "sent"
    if waiting:
        return "pending"
    return "failed" if queued else "none"


async def _incidents(
    kind: Kind, request: AuthedRequest, pool: asyncpg.Pool, raw_id: str, page: int, per_page: int
) -> IncidentPage:
    monitor = await visible_monitor(kind, request, raw_id, pool)
    async with pool.acquire() as conn:
        rows, total = await incident_db.list_incidents(
            conn, monitor.id, per_page, (page - 1) * per_page
        )
    pid = str(monitor.public_id)
    return Page([_incident(r, pid) for r in rows], total, page, per_page)


async def _history(
    kind: Kind, request: AuthedRequest, pool: asyncpg.Pool, raw_id: str, page: int, per_page: int
) -> DeliveryAttemptPage:
    monitor = await visible_monitor(kind, request, raw_id, pool)
    async with pool.acquire() as conn:
        rows, total = await outbox_db.list_history(
            conn, monitor.id, per_page, (page - 1) * per_page
        )
    items = [
        DeliveryAttempt(
            id=r.id,
            incident_id=None if r.incident_public_id is None else str(r.incident_public_id),
            kind=r.kind,
            channel=r.channel,
            target=r.target,
            attempt=r.attempt,
            status=r.status,
            error=r.error,
            at=iso_ms(r.at),
        )
        for r in rows
    ]
    return Page(items, total, page, per_page)


def _settings(t: Thresholds) -> AlertSettings:
    return AlertSettings(
        t.failure_threshold,
        t.down_after_rounds,
        t.recover_after_rounds,
        list(t.cert_expiry_days),
        t.confirm_failures,
        list(t.finding_email_severities),
        list(t.finding_sms_severities),
        list(t.finding_channel_severities),
    )


async def _monitor_settings(
    kind: Kind,
    request: AuthedRequest,
    pool: asyncpg.Pool,
    raw_id: str,
    data: MonitorAlertSettingsUpdate | None,
    now: datetime,
) -> MonitorAlertSettings:
    monitor = await visible_monitor(kind, request, raw_id, pool)
    async with pool.acquire() as conn, conn.transaction():
        if data is not None:
            guards.requires_updater(request.user, {"alertSettings"})
            data = await strict_body(request, data)
            await thresholds_db.put_monitor_overrides(
                conn, monitor.id, msgspec.structs.asdict(data), now
            )
        own = await thresholds_db.monitor_overrides(conn, monitor.id)
        effective = await thresholds_db.thresholds(conn, monitor.id, monitor.organization_id)
    return MonitorAlertSettings(
        monitor_id=str(monitor.public_id),
        failure_threshold=own.failure_threshold,
        down_after_rounds=own.down_after_rounds,
        recover_after_rounds=own.recover_after_rounds,
        cert_expiry_days=own.cert_expiry_days,
        confirm_failures=own.confirm_failures,
        finding_email_severities=own.finding_email_severities,
        finding_sms_severities=own.finding_sms_severities,
        finding_channel_severities=own.finding_channel_severities,
        effective=_settings(effective),
    )


async def _login_backoff(
    kind: Kind, request: AuthedRequest, pool: asyncpg.Pool, raw_id: str, now: datetime
) -> LoginBackoff:
    monitor = await visible_monitor(kind, request, raw_id, pool)
    async with pool.acquire() as conn:
        b = await backoff_db.get(conn, monitor.id)
        capped = await login_caps.get(conn, monitor.id, now)
    pid = str(monitor.public_id)
    cap: dict[str, Any] = (
        {}
        if capped is None
        else {
            "login_capped": True,
            "login_cap": capped.cap,
            "login_capped_since": iso_ms(capped.since),
        }
    )
    if b is None:
        return LoginBackoff(pid, False, **cap)
    return LoginBackoff(
        pid,
        True,
        "credentials rejected: checks that log in are slowed so the account is not locked;"
        " new credentials resume them",
        b.failures,
        iso_ms(b.since),
        iso_ms(b.retry_at),
        **cap,
    )


class MailboxDelivery(msgspec.Struct, rename="camel"):
    """Whether a round trip's mailbox has shown it receives the probe (`GET …/delivery`):
    `unconfirmed` (no round delivered yet, or its mailbox changed since), `confirmed`, or
    `backed_off` (rounds in a row not delivered); `sentLastHour`: its messages of the last
    hour that count (not those no server took); `allowedPerHour`: the monitor's own cap of
    messages an hour (null: none; each recipient domain has its own cap per minute too)."""

    monitor_id: str
    state: str
    confirmed_at: str | None
    not_delivered_rounds: int
    sent_last_hour: int
    allowed_per_hour: int | None


async def _delivery(
    kind: Kind, request: AuthedRequest, pool: asyncpg.Pool, raw_id: str, now: datetime
) -> MailboxDelivery:
    monitor = await visible_monitor(kind, request, raw_id, pool)
    async with pool.acquire() as conn:
        d = await delivery_db.seen(conn, monitor.id)
        sent = await mail_sends.sent_last_hour(conn, monitor.id, now)
    return MailboxDelivery(
        str(monitor.public_id),
        d.state,
        iso_ms(d.confirmed_at) if d.confirmed_at else None,
        d.not_delivered,
        sent,
        d.per_hour,
    )


def router(api: KindApi) -> Router:
    """`api`'s kind's incidents, notification history, login back-off and alert thresholds."""
    kind = api.kind

    async def incidents(
        request: AuthedRequest,
        pool: PoolDep,
        monitor_id: str,
        page: PageParam = 1,
        per_page: PerPageParam = 50,
    ) -> IncidentPage:
        return await _incidents(kind, request, pool, monitor_id, page, per_page)

    async def alert_history(
        request: AuthedRequest,
        pool: PoolDep,
        monitor_id: str,
        page: PageParam = 1,
        per_page: PerPageParam = 50,
    ) -> DeliveryAttemptPage:
        return await _history(kind, request, pool, monitor_id, page, per_page)

    async def login_backoff(
        request: AuthedRequest, pool: PoolDep, clock: ClockDep, monitor_id: str
    ) -> LoginBackoff:
        return await _login_backoff(kind, request, pool, monitor_id, clock.now())

    async def delivery(
        request: AuthedRequest, pool: PoolDep, clock: ClockDep, monitor_id: str
    ) -> MailboxDelivery:
        return await _delivery(kind, request, pool, monitor_id, clock.now())

    async def get_alert_settings(
        request: AuthedRequest, pool: PoolDep, clock: ClockDep, monitor_id: str
    ) -> MonitorAlertSettings:
        return await _monitor_settings(kind, request, pool, monitor_id, None, clock.now())

    async def put_alert_settings(
        request: AuthedRequest,
        pool: PoolDep,
        clock: ClockDep,
        monitor_id: str,
        data: JSONBody[MonitorAlertSettingsUpdate],
    ) -> MonitorAlertSettings:
        return await _monitor_settings(kind, request, pool, monitor_id, data, clock.now())

    one, label = api.by_id, api.label
    handlers = [
        get("/incidents", summary=f"{label} incidents, newest first")(one(incidents)),
        get("/alert-history", summary=f"{label} notification delivery attempts, newest first")(
            one(alert_history)
        ),
        get("/alert-settings", summary=f"{label} alert thresholds")(one(get_alert_settings)),
        put("/alert-settings", summary=f"Set {label} alert thresholds (null: inherit)")(
            one(put_alert_settings)
        ),
    ]
    summary = f"{label} logins backed off (credentials rejected)"
    handlers.append(get("/login-backoff", summary=summary)(one(login_backoff)))
    if api.delivery:
        summary = f"{label}: whether its mailbox has shown it receives the probe"
        handlers.append(get("/delivery", summary=summary)(one(delivery)))
    return Router(api.item_path, tags=[api.tag], route_handlers=handlers)


class AlertSettingsController(Controller):
    path = "/api/alert-settings"
    tags = ["alerts"]

    @get("/", summary="The organization's default alert thresholds")
    async def get_settings(self, request: AuthedRequest, pool: PoolDep) -> AlertSettings:
        async with pool.acquire() as conn:
            t = await thresholds_db.org_thresholds(conn, request.user.organization_id)
        return _settings(t)

    @put("/", summary="Change the organization's default alert thresholds (owners, admins)")
    async def put_settings(
        self,
        request: AuthedRequest,
        data: JSONBody[AlertSettingsUpdate],
        pool: PoolDep,
        clock: ClockDep,
    ) -> AlertSettings:
        guards.requires_admin(request.user)
        data = await strict_body(request, data)
        changes = {
            k: None if v is msgspec.UNSET else v for k, v in msgspec.structs.asdict(data).items()
        }
        async with pool.acquire() as conn:
            t = await thresholds_db.put_org_thresholds(
                conn, request.user.organization_id, **changes, now=clock.now()
            )
        return _settings(t)
