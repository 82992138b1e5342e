"""`/api/smtp-monitors`, `/api/imap-pop-monitors` and `/api/roundtrip-monitors`: create, read,
list, update, delete."""

from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.openapi.spec import Example
from litestar.params import Body, JSONBody, PathParameter, QueryParameter
from msgspec import UNSET

from controller.api import fair_use, guards, validation
from controller.api.errors import invalid_customer, not_found
from controller.api.monitor_rules import (
    IMAP_POP,
    ROUNDTRIP,
    SMTP,
    Kind,
    create_values,
    customer_id,
    customer_ident,
    keep_unchanged_secrets,
    present,
    public_id,
    require_secret_resent,
    sent_fields,
    strict_body,
    update_values,
)
from controller.api.monitor_schemas import (
    ImapPopMonitor,
    ImapPopMonitorCreate,
    ImapPopMonitorDetail,
    ImapPopMonitorPage,
    ImapPopMonitorUpdate,
    LatestResult,
    MonitorCreate,
    MonitorUpdate,
    RoundTripMonitor,
    RoundTripMonitorCreate,
    RoundTripMonitorDetail,
    RoundTripMonitorPage,
    RoundTripMonitorUpdate,
    SmtpMonitor,
    SmtpMonitorCreate,
    SmtpMonitorDetail,
    SmtpMonitorPage,
    SmtpMonitorUpdate,
)
from controller.db import customers, monitors
from controller.db.accounts import Principal
from controller.db.latest import monitor_with_latest
from controller.secretbox import SecretBox
from shared.timefmt import iso_ms, iso_ms_or_none

AuthedRequest = Request[Principal, Any, Any]

SMTP_EXAMPLE = {
    "customerId": "11111111-1111-4111-8111-111111111111",
    "name": "Outbound SMTP",
    "hostname": "smtp.example.com",
    "port": 587,
    "status": "active",
    "checkInterval": 60,
    "timeoutSeconds": 30,
    "smtpConfig": {
        "secure": False,
        "ignoreTls": False,
        "requireTls": False,
        "auth": {"user": "username", "pass": "password"},
    },
}
SMTP_PATCH_EXAMPLE = {  # seed 002's request body
    "name": "Outbound SMTP (Primary)",
    "hostname": "smtp.example.com",
    "port": 587,
    "status": "paused",
    "checkInterval": 60,
    "timeoutSeconds": 30,
    "allowedCheckCountryCodes": ["de", "us"],
    "smtpConfig": {
        "secure": False,
        "requireTls": True,
        "auth": {"user": "username", "pass": "password"},
    },
}
IMAP_EXAMPLE = {
    "customerId": "11111111-1111-4111-8111-111111111111",
    "name": "Mailbox Access",
    "hostname": "mail.example.com",
    "port": 993,
    "status": "active",
    "checkInterval": 30,
    "timeoutSeconds": 30,
    "imapPopConfig": {
        "protocol": "imap",
        "user": "monitor@example.com",
        "password": "password",
        "tls": True,
        "tlsOptions": {"rejectUnauthorized": True},
    },
}

ROUNDTRIP_EXAMPLE = {
    "customerId": "11111111-1111-4111-8111-111111111111",
    "name": "Mail arrives",
    "checkInterval": 300,
    "timeoutSeconds": 120,
    "roundtripConfig": {
        "send": {
            "hostname": "smtp.example.com",
            "port": 587,
            "requireTls": True,
            "auth": {"user": "probe@example.com", "pass": "password"},
            "from": "probe@example.com",
        },
        "to": "probe@example.net",
        "receive": {
            "protocol": "imap",
            "hostname": "imap.example.net",
            "port": 993,
            "tls": True,
            "user": "probe@example.net",
            "password": "password",
            "folders": ["INBOX", "Junk"],
            "spamFolders": ["Junk"],
        },
        "slowAfterSeconds": 60,
        "spamIsFailure": True,
    },
}

PageParam = Annotated[int, QueryParameter(ge=1, le=1_000_000, description="1-based page number")]
PerPageParam = Annotated[
    int, QueryParameter(name="perPage", ge=1, le=200, description="items per page")
]


def _pool(request: AuthedRequest) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def _box(request: AuthedRequest) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


def _limits(request: AuthedRequest) -> fair_use.Limits:
    return fair_use.Limits.of(request.app.state.settings)


# The columns that add checks → their field names, cited when the check budget refuses.
BUDGET_FIELDS = {
    "allowed_country_codes": "allowedCheckCountryCodes",
    "check_interval": "checkInterval",
    "status": "status",
}
CREATE_BUDGET_FIELDS = ("allowedCheckCountryCodes", "checkInterval")


async def _create(kind: Kind, request: AuthedRequest, body: MonitorCreate) -> asyncpg.Record:
    guards.requires_writer(request.user)
    return await create_checked(kind, request, await strict_body(request, body))


async def create_checked(kind: Kind, request: AuthedRequest, body: MonitorCreate) -> asyncpg.Record:
    """Create from a body already converted strictly (the API's JSON, the console's form)."""
    principal = request.user
    guards.requires_writer(principal)
    validation.no_nul(body, "")
    values = create_values(kind, body, _box(request))
    org, lim = principal.organization_id, _limits(request)
    async with _pool(request).acquire() as conn, conn.transaction():
        values["customer_id"] = await customer_id(conn, body.customer_id, org)
        await fair_use.admit_new_monitor(conn, lim, org)
        row = await monitors.insert(conn, org, values)
        await fair_use.admit_checks(conn, lim, org, row["id"], 0.0, CREATE_BUDGET_FIELDS)
        return row


async def _update(
    kind: Kind, request: AuthedRequest, raw_id: str, body: MonitorUpdate, *, checked: bool = False
) -> asyncpg.Record:
    """`checked`: `body` is already converted strictly (the console's form), else the JSON is."""
    principal = request.user
    monitor_id = public_id(kind, raw_id)
    async with _pool(request).acquire() as conn, conn.transaction():
        # Look up before the role check: another organization's monitor is a 404, never a 403.
        row = await monitors.get(
            conn, monitor_id, kind.types, guards.read_scope(principal), for_update=True
        )
        if row is None:
            raise not_found()
        guards.requires_updater(principal, sent_fields(body))
        if not checked:
            body = await strict_body(request, body)
        validation.no_nul(body, "")
        changes = update_values(kind, body, row, _box(request))
        require_secret_resent(kind, body, row, changes)
        keep_unchanged_secrets(row, changes, _box(request))
        if body.customer_id is not UNSET:
            changes["customer_id"] = await customer_id(
                conn, body.customer_id, principal.organization_id
            )
        if all(row[column] == value for column, value in changes.items()):
            return row  # nothing changes (a secret sent again as stored, say): no write
        org, lim = row["organization_id"], _limits(request)
        before = await fair_use.checks_of(conn, lim, org, row["id"])
        updated = await monitors.update(conn, row["id"], changes)
        fields = fair_use.budget_fields(changes, BUDGET_FIELDS)
        await fair_use.admit_checks(conn, lim, org, row["id"], before, fields)
        return updated


async def update_checked(
    kind: Kind, request: AuthedRequest, raw_id: str, body: MonitorUpdate
) -> asyncpg.Record:
    """Update from a body already converted strictly (the console's form)."""
    return await _update(kind, request, raw_id, body, checked=True)


async def _get(
    kind: Kind, request: AuthedRequest, raw_id: str
) -> tuple[asyncpg.Record, list[LatestResult]]:
    """The monitor's row and its latest result per country."""
    monitor_id = public_id(kind, raw_id)
    async with _pool(request).acquire() as conn:
        found = await monitor_with_latest(
            conn, monitor_id, kind.types, guards.read_scope(request.user)
        )
    if found is None:
        raise not_found()
    row, latest = found
    return row, [_latest(r) for r in latest]


def _latest(row: asyncpg.Record) -> LatestResult:
    return LatestResult(
        country=row["country"],
        status=row["last_status"],
        error_kind=row["last_error_kind"],
        message=row["last_message"],
        response_time_ms=row["response_time_ms"],
        scheduled_at=iso_ms(row["last_scheduled_at"]),
        checked_at=iso_ms_or_none(row["finished_at"]),
        job_id=row["last_job_id"],
    )


async def _list(
    kind: Kind,
    request: AuthedRequest,
    customer: str | None,
    search: str | None,
    status: str | None,
    page: int,
    per_page: int,
) -> tuple[list[asyncpg.Record], int]:
    scope = guards.read_scope(request.user)
    validation.no_nul(search, "search")
    status_value = None if status is None else validation.status(status, "status")
    async with _pool(request).acquire() as conn:
        customer_row_id: int | None = None
        if customer is not None:
            ident = customer_ident(customer)
            if ident is None:
                raise invalid_customer()
            found = await customers.find(conn, ident, scope)
            if found is None:
                return [], 0
            customer_row_id = found["id"]
        return await monitors.list_page(
            conn,
            organization_id=scope,
            types=kind.types,
            customer_id=customer_row_id,
            search=search or None,
            status=status_value,
            limit=per_page,
            offset=(page - 1) * per_page,
        )


async def _delete(kind: Kind, request: AuthedRequest, raw_id: str) -> None:
    principal = request.user
    monitor_id = public_id(kind, raw_id)
    async with _pool(request).acquire() as conn:
        # Look up before the role check: another organization's monitor is a 404, never a 403.
        row = await monitors.get(conn, monitor_id, kind.types, guards.read_scope(principal))
        if row is None:
            raise not_found()
        guards.requires_writer(principal)
        await monitors.delete(conn, row["id"])


def _smtp(row: asyncpg.Record) -> SmtpMonitor:
    out = present(SMTP, row)
    assert isinstance(out, SmtpMonitor)
    return out


def _imap(row: asyncpg.Record) -> ImapPopMonitor:
    out = present(IMAP_POP, row)
    assert isinstance(out, ImapPopMonitor)
    return out


def _roundtrip(row: asyncpg.Record) -> RoundTripMonitor:
    out = present(ROUNDTRIP, row)
    assert isinstance(out, RoundTripMonitor)
    return out


SmtpId = Annotated[str, PathParameter(name="smtpMonitorPublicId", description="public UUID")]
RoundTripId = Annotated[
    str, PathParameter(name="roundtripMonitorPublicId", description="public UUID")
]
ImapPopId = Annotated[str, PathParameter(name="imapPopMonitorPublicId", description="public UUID")]
CustomerParam = Annotated[
    str | None, QueryParameter(name="customerId", description="numeric id or public UUID")
]
SearchParam = Annotated[
    str | None, QueryParameter(max_length=200, description="in name or hostname")
]
StatusParam = Annotated[str | None, QueryParameter(description="active, maintenance or disabled")]


class SmtpMonitorController(Controller):
    path = "/api/smtp-monitors"
    tags = ["smtp monitors"]

    @post("/", summary="Create SMTP Monitor")
    async def create(
        self,
        request: AuthedRequest,
        data: Annotated[SmtpMonitorCreate, Body(examples=[Example("seed", value=SMTP_EXAMPLE)])],
    ) -> SmtpMonitor:
        return _smtp(await _create(SMTP, request, data))

    @get("/", summary="List SMTP Monitors")
    async def list_monitors(
        self,
        request: AuthedRequest,
        customer_id: CustomerParam = None,
        search: SearchParam = None,
        status: StatusParam = None,
        page: PageParam = 1,
        per_page: PerPageParam = 50,
    ) -> SmtpMonitorPage:
        rows, total = await _list(SMTP, request, customer_id, search, status, page, per_page)
        return SmtpMonitorPage([_smtp(r) for r in rows], total, page, per_page)

    @get("/{smtpMonitorPublicId:str}", summary="Get SMTP Monitor, with its latest results")
    async def get_monitor(self, request: AuthedRequest, monitor_id: SmtpId) -> SmtpMonitorDetail:
        row, latest = await _get(SMTP, request, monitor_id)
        return SmtpMonitorDetail(**msgspec.structs.asdict(_smtp(row)), latest_results=latest)

    @patch("/{smtpMonitorPublicId:str}", summary="Update SMTP Monitor")
    async def update(
        self,
        request: AuthedRequest,
        monitor_id: SmtpId,
        data: Annotated[
            SmtpMonitorUpdate, Body(examples=[Example("seed", value=SMTP_PATCH_EXAMPLE)])
        ],
    ) -> SmtpMonitor:
        return _smtp(await _update(SMTP, request, monitor_id, data))

    @delete("/{smtpMonitorPublicId:str}", summary="Delete SMTP Monitor")
    async def delete_monitor(self, request: AuthedRequest, monitor_id: SmtpId) -> None:
        await _delete(SMTP, request, monitor_id)


class ImapPopMonitorController(Controller):
    path = "/api/imap-pop-monitors"
    tags = ["imap/pop monitors"]

    @post("/", summary="Create IMAP/POP Monitor")
    async def create(
        self,
        request: AuthedRequest,
        data: Annotated[ImapPopMonitorCreate, Body(examples=[Example("seed", value=IMAP_EXAMPLE)])],
    ) -> ImapPopMonitor:
        return _imap(await _create(IMAP_POP, request, data))

    @get("/", summary="List IMAP/POP Monitors")
    async def list_monitors(
        self,
        request: AuthedRequest,
        customer_id: CustomerParam = None,
        search: SearchParam = None,
        status: StatusParam = None,
        page: PageParam = 1,
        per_page: PerPageParam = 50,
    ) -> ImapPopMonitorPage:
        rows, total = await _list(IMAP_POP, request, customer_id, search, status, page, per_page)
        return ImapPopMonitorPage([_imap(r) for r in rows], total, page, per_page)

    @get("/{imapPopMonitorPublicId:str}", summary="Get IMAP/POP Monitor, with its latest results")
    async def get_monitor(
        self, request: AuthedRequest, monitor_id: ImapPopId
    ) -> ImapPopMonitorDetail:
        row, latest = await _get(IMAP_POP, request, monitor_id)
        return ImapPopMonitorDetail(**msgspec.structs.asdict(_imap(row)), latest_results=latest)

    @patch("/{imapPopMonitorPublicId:str}", summary="Update IMAP/POP Monitor")
    async def update(
        self,
        request: AuthedRequest,
        monitor_id: ImapPopId,
        data: JSONBody[ImapPopMonitorUpdate],
    ) -> ImapPopMonitor:
        return _imap(await _update(IMAP_POP, request, monitor_id, data))

    @delete("/{imapPopMonitorPublicId:str}", summary="Delete IMAP/POP Monitor")
    async def delete_monitor(self, request: AuthedRequest, monitor_id: ImapPopId) -> None:
        await _delete(IMAP_POP, request, monitor_id)


class RoundTripMonitorController(Controller):
    path = "/api/roundtrip-monitors"
    tags = ["round-trip monitors"]

    @post("/", summary="Create Round-trip Monitor")
    async def create(
        self,
        request: AuthedRequest,
        data: Annotated[
            RoundTripMonitorCreate, Body(examples=[Example("example", value=ROUNDTRIP_EXAMPLE)])
        ],
    ) -> RoundTripMonitor:
        return _roundtrip(await _create(ROUNDTRIP, request, data))

    @get("/", summary="List Round-trip Monitors")
    async def list_monitors(
        self,
        request: AuthedRequest,
        customer_id: CustomerParam = None,
        search: SearchParam = None,
        status: StatusParam = None,
        page: PageParam = 1,
        per_page: PerPageParam = 50,
    ) -> RoundTripMonitorPage:
        rows, total = await _list(ROUNDTRIP, request, customer_id, search, status, page, per_page)
        return RoundTripMonitorPage([_roundtrip(r) for r in rows], total, page, per_page)

    @get("/{roundtripMonitorPublicId:str}", summary="Get Round-trip Monitor, with latest results")
    async def get_monitor(
        self, request: AuthedRequest, monitor_id: RoundTripId
    ) -> RoundTripMonitorDetail:
        row, latest = await _get(ROUNDTRIP, request, monitor_id)
        return RoundTripMonitorDetail(
            **msgspec.structs.asdict(_roundtrip(row)), latest_results=latest
        )

    @patch("/{roundtripMonitorPublicId:str}", summary="Update Round-trip Monitor")
    async def update(
        self,
        request: AuthedRequest,
        monitor_id: RoundTripId,
        data: JSONBody[RoundTripMonitorUpdate],
    ) -> RoundTripMonitor:
        return _roundtrip(await _update(ROUNDTRIP, request, monitor_id, data))

    @delete("/{roundtripMonitorPublicId:str}", summary="Delete Round-trip Monitor")
    async def delete_monitor(self, request: AuthedRequest, monitor_id: RoundTripId) -> None:
        await _delete(ROUNDTRIP, request, monitor_id)
