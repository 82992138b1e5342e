"""`/api/notification-channels`: where an organization's incidents are told besides a monitor's
e-mail and phone (docs/alerts.md, "Notification channels").

Owners and admins create, change, delete and test channels; every user of the organization may
list and read them; another organization's channel is not found (404). `secret` (and the URL of
Slack and Teams, which is its own credential) is write-only: sealed at rest with SECRETS_KEY and
shown as the mask; sending the mask back keeps it. Any other kind's URL that may hold a token
(a path, a query, user info) is shown masked too (`channel_shown`), and kept the same way. An
Apprise URL (`apprise`) is its own credential too, of the schemes
`controller.notify.apprise_channel.SCHEMES` allows.
`monitorIds` (public UUIDs) and `customerIds` choose who is told: a monitor's own choice, else
its customer's default.
"""

import re
from datetime import datetime
from typing import Annotated
from uuid import UUID

import asyncpg
import msgspec
import structlog
from litestar import Controller, delete, get, patch, post
from litestar.params import JSONBody, PathParameter, QueryParameter
from msgspec import Meta

from controller.db.pool import Conn
from controller.monitors import validation
from controller.notify import (
    DeliveryError,
    apprise_channel,
    channel_binding,
    channel_kinds,
    channel_store,
)
from controller.notify import budget as notify_budget
from controller.notify import budget_store as budget_db
from controller.notify.budget import Budget
from controller.notify.channel_send import ChannelSender
from controller.notify.channel_shown import shown_url
from controller.notify.channel_store import StoredChannel
from controller.notify.egress import OrgEgress
from controller.notify.sources import Source
from controller.secrets.box import SecretBox
from controller.settings import NoticeBudgetSettings
from controller.web.api import guards
from controller.web.api.errors import ApiError, bad_request, not_found
from controller.web.api.monitor_rules import strict_body
from controller.web.api.page import Page, published
from controller.web.authed_request import AuthedRequest
from controller.web.services import BoxDep, BudgetSettingsDep, ClockDep, PoolDep, SenderDep
from shared.guards import BrokenInvariant
from shared.secret import SECRET_MASK
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

ChannelId = Annotated[str, PathParameter(name="channelId", description="public UUID")]

MAX_CHANNELS = 100  # per organization: bounds one notice's fan-out
MAX_CHOSEN = 1000
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Url = Annotated[str, Meta(min_length=1, max_length=2048)]
SecretText = Annotated[str, Meta(min_length=1, max_length=1024)]
# A Telegram chat: a numeric id (groups and channels negative) or a public channel's @name.
CHAT_ID = r"^(?:-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$"
ChatId = Annotated[str, Meta(pattern=CHAT_ID)]


# A customer's numeric id: a PostgreSQL bigint, so anything larger is refused as a 400.
CustomerId = Annotated[int, Meta(ge=1, le=2**63 - 1)]


class ChannelCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    name: Name
    kind: channel_kinds.Kind
    url: Url | None = None
    secret: SecretText | None = None
    chat_id: ChatId | None = None
    monitor_ids: Annotated[list[str], Meta(max_length=MAX_CHOSEN)] = []
    customer_ids: Annotated[list[CustomerId], Meta(max_length=MAX_CHOSEN)] = []


class ChannelUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    name: Name | None = None
    url: Url | None = None
    secret: SecretText | None = None
    chat_id: ChatId | None = None
    monitor_ids: Annotated[list[str], Meta(max_length=MAX_CHOSEN)] | None = None
    customer_ids: Annotated[list[CustomerId], Meta(max_length=MAX_CHOSEN)] | None = None


class NotificationChannel(msgspec.Struct, rename="camel"):
    id: str
    organization_id: int
    name: str
    kind: str
    url: str  # as controller.notify.channel_shown shows it: masked when it may hold a token
    secret: str | None  # the mask when one is set, never the secret
    chat_id: str | None  # Telegram's chat
    monitor_ids: list[str]
    customer_ids: list[int]
    created_at: str
    updated_at: str


class ChannelTestResult(msgspec.Struct, rename="camel"):
    delivered: bool
    error: str | None = None


NotificationChannelPage = Annotated[Page[NotificationChannel], published("NotificationChannelPage")]


def _present(row: StoredChannel) -> NotificationChannel:
    return NotificationChannel(
        id=str(row.public_id),
        organization_id=row.organization_id,
        name=row.name,
        kind=row.kind,
        url=row.url_shown,
        secret=SECRET_MASK if row.secret else None,
        chat_id=row.chat_id,
        monitor_ids=list(row.monitor_ids),
        customer_ids=list(row.customer_ids),
        created_at=iso_ms(row.created_at),
        updated_at=iso_ms(row.updated_at),
    )


def stored(
    box: SecretBox,
    egress: OrgEgress,
    kind: str,
    name: str,
    url: str | None,
    secret: str | None,
    before: StoredChannel | None,
    chat_id: str | None = None,
) -> dict[str, object]:
    """The row's name, url, url_shown and secret (sealed) from what was sent; `before` the row
    being updated (its sealed secret and URL kept when not sent again, or sent as the mask; a
    new URL needs the secret again, by `channel_binding`). A URL is checked as the sender
    parses it, with the channel's organization's `egress` (`Egress.url_problem`, Apprise's own
    for `apprise`)."""
    values: dict[str, object] = {"name": name}
    sent = secret is not None and secret != SECRET_MASK
    plain = None if before is None or kind in channel_kinds.SECRET_URL else before.url
    if before is not None and channel_binding.moves_secret(
        kind, before.secret is not None, before.url_shown, plain, url, sent
    ):
        raise secret_required()
    if url is None or (before is not None and url == before.url_shown):
        if before is not None:
            values |= {"url": before.url, "url_shown": before.url_shown}
        elif kind in channel_kinds.DEFAULT_URL:
            url = channel_kinds.DEFAULT_URL[kind]
        else:
            raise bad_request("url", f"a {kind} channel needs url")
    if url is not None and "url" not in values:
        if url.endswith("/" + SECRET_MASK):
            raise bad_request(
                "url",
                f"url ends in the mask {SECRET_MASK!r}: it keeps a channel's stored URL only as"
                " the channel shows it; send the whole URL",
            )
        if kind == "apprise":
            problem = apprise_channel.url_problem(url, egress.networks)
        else:
            problem = egress.url_problem(url)
        if problem:
            raise bad_request("url", f"url {problem}")
        if kind == "apprise":
            values |= {"url": box.seal(url), "url_shown": apprise_channel.shown(url)}
        elif kind in channel_kinds.SECRET_URL:
            values |= {"url": box.seal(url), "url_shown": shown_url(kind, url)}
        else:
            values |= {"url": url, "url_shown": shown_url(kind, url)}
    if secret is None or not sent:
        values["secret"] = None if before is None else before.secret
    else:
        values["secret"] = box.seal(secret)
    if values["secret"] is None and kind in channel_kinds.NEEDS_SECRET:
        what = {
            "webhook": "signing key",
            "pagerduty": "routing key",
            "opsgenie": "API key",
            "telegram": "bot token",
        }
        raise bad_request("secret", f"a {kind} channel needs secret (its {what[kind]})")
    if chat_id is not None and not re.fullmatch(CHAT_ID, chat_id):
        raise bad_request("chatId", "chatId must be a chat's number or a channel's @name")
    values["chat_id"] = chat_id or (None if before is None else before.chat_id)
    if kind == "telegram" and not values["chat_id"]:
        raise bad_request("chatId", "a telegram channel needs chatId (the chat its bot posts to)")
    if kind != "telegram":
        values["chat_id"] = None
    return values


def secret_required() -> ApiError:
    """The 400 for a URL change that would send the stored secret to the new URL unsent."""
    return ApiError(
        400,
        "secret must be sent again to change url: a stored secret is only sent to the URL it"
        f" was given with, and the mask {SECRET_MASK!r} keeps it only while the URL stays",
        code="secret_required",
        fields=["secret"],
    )


async def _chosen(
    conn: Conn, org: int, monitor_ids: list[str], customer_ids: list[int]
) -> tuple[list[int], list[int]]:
    """Internal ids of the monitors and customers named, all of the caller's organization."""
    try:
        publics = [UUID(m) for m in monitor_ids]
    except ValueError:
        raise bad_request("monitorIds", "monitorIds must be monitors' public UUIDs") from None
    monitors = await channel_store.monitor_ids(conn, publics, org)
    if len(monitors) != len(set(publics)):
        raise ApiError(404, "Monitor not found", code="not_found", fields=["monitorIds"])
    customers = await channel_store.customer_ids(conn, customer_ids, org)
    if len(customers) != len(set(customer_ids)):
        raise ApiError(404, "Customer not found", code="customer_not_found", fields=["customerIds"])
    return monitors, customers


async def choose_for(
    conn: Conn, row: StoredChannel, monitor_ids: list[str], customer_ids: list[int]
) -> None:
    """Replace who chose the channel of `row` (the console's picker); ApiError as the API's."""
    if len(monitor_ids) > MAX_CHOSEN or len(customer_ids) > MAX_CHOSEN:
        raise bad_request("monitorIds", f"at most {MAX_CHOSEN} monitors and customers")
    if any(not 1 <= c <= 2**63 - 1 for c in customer_ids):
        raise ApiError(404, "Customer not found", code="customer_not_found", fields=["customerIds"])
    monitors, customers = await _chosen(conn, row.organization_id, monitor_ids, customer_ids)
    await channel_store.choose(conn, row.id, monitors, customers)


def _public_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise ApiError(
            400, "Channel ID (UUID) required", code="invalid_public_id", fields=["id"]
        ) from None


class NotificationChannelController(Controller):
    path = "/api/notification-channels"
    tags = ["notification channels"]

    @post("/", summary="Create a notification channel")
    async def create(
        self,
        request: AuthedRequest,
        data: JSONBody[ChannelCreate],
        pool: PoolDep,
        box: BoxDep,
        sender: SenderDep,
    ) -> NotificationChannel:
        guards.requires_admin(request.user)
        data = await strict_body(request, data)
        validation.no_nul(data, "")
        name = validation.name(data.name)
        org = request.user.organization_id
        egress = sender.egress.of(org)
        values = stored(box, egress, data.kind, name, data.url, data.secret, None, data.chat_id)
        async with pool.acquire() as conn, conn.transaction():
            await channel_store.lock_organization(conn, org)
            if await channel_store.count(conn, org) >= MAX_CHANNELS:
                raise ApiError(
                    403,
                    f"Your organization has {MAX_CHANNELS} notification channels, the most it may",
                    code="channel_limit",
                )
            monitors, customers = await _chosen(conn, org, data.monitor_ids, data.customer_ids)
            new_id = await channel_store.insert(conn, org, values | {"kind": data.kind})
            await channel_store.choose(conn, new_id, monitors, customers)
            row = await channel_store.by_id(conn, new_id)
        if row is None:
            raise BrokenInvariant(
                "channels.NotificationChannelController.create: the statement returned no row"
            )
        log.info("notification channel created", channel=str(row.public_id), kind=data.kind)
        return _present(row)

    @get("/", summary="List notification channels")
    async def list_channels(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        page: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        per_page: Annotated[int, QueryParameter(name="perPage", ge=1, le=200)] = 50,
    ) -> NotificationChannelPage:
        async with pool.acquire() as conn:
            rows, total = await channel_store.list_page(
                conn, guards.read_scope(request.user), per_page, (page - 1) * per_page
            )
        return Page([_present(r) for r in rows], total, page, per_page)

    @get("/{channelId:str}", summary="Get a notification channel")
    async def get_channel(
        self, request: AuthedRequest, pool: PoolDep, channel_id: ChannelId
    ) -> NotificationChannel:
        async with pool.acquire() as conn:
            row = await channel_store.get(
                conn, _public_id(channel_id), guards.read_scope(request.user)
            )
        if row is None:
            raise not_found()
        return _present(row)

    @patch("/{channelId:str}", summary="Change a notification channel (its kind stays)")
    async def update_channel(
        self,
        request: AuthedRequest,
        channel_id: ChannelId,
        data: JSONBody[ChannelUpdate],
        pool: PoolDep,
        box: BoxDep,
        sender: SenderDep,
        clock: ClockDep,
    ) -> NotificationChannel:
        ident = _public_id(channel_id)
        async with pool.acquire() as conn, conn.transaction():
            row = await channel_store.get(conn, ident, guards.read_scope(request.user))
            if row is None:
                raise not_found()
            guards.requires_admin(request.user)
            data = await strict_body(request, data)
            validation.no_nul(data, "")
            values = stored(
                box,
                sender.egress.of(row.organization_id),
                row.kind,
                row.name if data.name is None else validation.name(data.name),
                data.url,
                data.secret,
                row,
                data.chat_id,
            )
            await channel_store.update(conn, row.id, values, clock.now())
            if data.monitor_ids is not None or data.customer_ids is not None:
                org = row.organization_id
                monitors, customers = await _chosen(
                    conn,
                    org,
                    list(row.monitor_ids) if data.monitor_ids is None else data.monitor_ids,
                    list(row.customer_ids) if data.customer_ids is None else data.customer_ids,
                )
                await channel_store.choose(conn, row.id, monitors, customers)
            row = await channel_store.by_id(conn, row.id)
        if row is None:
            raise BrokenInvariant(
                "channels.NotificationChannelController.update_channel: the statement returned"
                " no row"
            )
        return _present(row)

    @delete("/{channelId:str}", summary="Delete a notification channel", status_code=204)
    async def delete_channel(
        self, request: AuthedRequest, pool: PoolDep, channel_id: ChannelId
    ) -> None:
        async with pool.acquire() as conn:
            row = await channel_store.get(
                conn, _public_id(channel_id), guards.read_scope(request.user)
            )
            if row is None:
                raise not_found()
            guards.requires_admin(request.user)
            await channel_store.delete(conn, row.id)

    @post(
        "/{channelId:str}/test",
        summary="Send a test notice to a channel now; counts against the channel budget",
        status_code=200,
    )
    async def test_channel(
        self,
        request: AuthedRequest,
        channel_id: ChannelId,
        pool: PoolDep,
        sender: SenderDep,
        budget_settings: BudgetSettingsDep,
        clock: ClockDep,
    ) -> ChannelTestResult:
        async with pool.acquire() as conn:
            row = await channel_store.get(
                conn, _public_id(channel_id), guards.read_scope(request.user)
            )
            if row is None:
                raise not_found()
            guards.requires_admin(request.user)
        return await send_test(pool, sender, budget_settings, row, clock.now())


async def send_test(
    pool: asyncpg.Pool,
    sender: ChannelSender,
    budget_settings: NoticeBudgetSettings,
    row: StoredChannel,
    now: datetime,
) -> ChannelTestResult:
    """Tell the channel of `row` a test notice now, from the organization's channel budget
    (429 past it); the API's and the console's "send a test". An endpoint the sender could not
    send to is reported before any of the budget is taken."""
    if problem := sender.endpoint_problem(row):
        return ChannelTestResult(False, f"not sent: {problem} (not retried)")
    pot = notify_budget.budget_of(Source.ACCOUNT, row.kind)
    per_hour = Budget.of(budget_settings).per_hour(pot)
    start = notify_budget.window(now)
    async with pool.acquire() as conn, conn.transaction():
        taken, _ = await budget_db.take(conn, row.organization_id, pot, start, per_hour, 1)
    if not taken:
        raise ApiError(
            429, notify_budget.dropped_reason(pot, per_hour, start), code="notification_budget"
        )
    event = channel_kinds.test_event(str(row.public_id), row.name, now, sender.console_url_root())
    try:
        await sender.deliver(row, event)
    except DeliveryError as exc:
        log.info("channel test not delivered", channel=str(row.public_id), error=str(exc))
        return ChannelTestResult(False, str(exc))
    log.info("channel test delivered", channel=str(row.public_id), kind=row.kind)
    return ChannelTestResult(True)
