"""Subscribing to a public status page by e-mail, anonymously (controller.statuspages.subscribers
has the rules): ask, confirm from the mailed link, unsubscribe from any mail's link without a login.

Following a link only shows a page with one button (a POST does the change), so mail scanners
that open every link in a message neither confirm nor unsubscribe anyone."""

from uuid import UUID

import asyncpg
import structlog
from litestar import get, post
from litestar.exceptions import NotFoundException
from litestar.response import Template

from controller.monitors.validation import email as valid_email
from controller.notify.entry import Notice, Source, notify
from controller.statuspages import pages_store as status_pages
from controller.statuspages import subscribers as rules
from controller.statuspages import subscribers_store as subscribers
from controller.statuspages.pages_store import StatusPage
from controller.web.api.errors import ApiError
from controller.web.console.status import SLUG, PathStr
from controller.web.console.status_feeds import public_url
from controller.web.request_types import AnyRequest
from controller.web.services import (
    BoxDep,
    ClockDep,
    NotifySettingsDep,
    PoolDep,
    StatusPageSettingsDep,
)

log = structlog.get_logger(__name__)

ASKED = (
    "Thank you. If this address can be subscribed, a mail with a link to confirm is on its way;"
    " nothing more is sent until it is followed."
)


def _message(
    page: StatusPage,
    message: str,
    status_code: int = 200,
    *,
    error: bool = False,
    action: str | None = None,
    fields: dict[str, str] | None = None,
    button: str = "",
) -> Template:
    return Template(
        template_name="status_message.html",
        status_code=status_code,
        context={
            "title": page.title,
            "slug": page.slug,
            "message": message,
            "error": error,
            "action": action,
            "fields": fields or {},
            "button": button,
        },
    )


async def _page(request: AnyRequest, pool: asyncpg.Pool, slug: str) -> StatusPage:
    if not SLUG.match(slug):
        raise NotFoundException()
    async with pool.acquire() as conn:
        found = await status_pages.by_slug(conn, slug)
    if found is None:
        raise NotFoundException()
    return found[0]


@post("/status/{slug:str}/subscribe", status_code=200)
async def subscribe(
    slug: PathStr,
    request: AnyRequest,
    pool: PoolDep,
    notify_settings: NotifySettingsDep,
    status_page_settings: StatusPageSettingsDep,
    clock: ClockDep,
) -> Template:
    page = await _page(request, pool, slug)
    if notify_settings.public_url is None:
        return _message(
            page,
            "This status page takes no subscriptions: its operator has not set PUBLIC_URL.",
            503,
            error=True,
        )
    form = await request.form()
    try:
        address = valid_email(str(form.get("email", ""))[:254], "email")
    except ApiError as exc:
        return _message(page, exc.args[0] if exc.args else "email: invalid", 400, error=True)
    if address is None:
        return _message(page, "email: required", 400, error=True)
    token, kept = rules.new_confirm_token()
    now = clock.now()
    async with pool.acquire() as conn, conn.transaction():
        asked, subscriber = await subscribers.ask(
            conn,
            page.id,
            address,
            rules.address_hash(address),
            kept,
            now,
            rules.CONFIRM_TTL,
            status_page_settings.status_subscribe_per_page_per_hour,
            status_page_settings.status_subscribe_per_address_per_day,
        )
        if asked is subscribers.Asked.MAIL:
            url = f"{public_url(notify_settings)}/status/{slug}"
            note = rules.confirmation(
                address,
                f"{url}/confirm?token={token}",
                url,
                f"status_confirm:{subscriber}:{kept.hex()[:16]}",
            )
            org = page.organization_id
            await notify(conn, Notice(Source.SUBSCRIBERS, org, None, None, [note]), now)
    log.info("status subscription asked", slug=slug, outcome=asked.value)
    if asked is subscribers.Asked.PAGE_LIMIT:
        return _message(
            page,
            "Too many subscription requests for this page in the last hour: try again later.",
            429,
            error=True,
        )
    # The same answer whether the address was new, subscribed already or over its own limit.
    return _message(page, ASKED)


@get("/status/{slug:str}/confirm")
async def confirm_form(slug: PathStr, request: AnyRequest, pool: PoolDep) -> Template:
    page = await _page(request, pool, slug)
    token = request.query_params.get("token", "")[:100]
    return _message(
        page,
        f"Confirm that you want updates of {page.title} by e-mail.",
        action=f"/status/{slug}/confirm",
        fields={"token": token},
        button="Confirm subscription",
    )


@post("/status/{slug:str}/confirm", status_code=200)
async def confirm(slug: PathStr, request: AnyRequest, pool: PoolDep, clock: ClockDep) -> Template:
    page = await _page(request, pool, slug)
    token = str((await request.form()).get("token", ""))[:100]
    async with pool.acquire() as conn:
        done = await subscribers.confirm(conn, page.id, rules.confirm_hash(token), clock.now())
    log.info("status subscription confirmed" if done else "status confirmation refused", slug=slug)
    if not done:
        return _message(
            page,
            "token: this confirmation link is unknown, used or expired; subscribe again.",
            400,
            error=True,
        )
    return _message(page, "Subscribed: you will get this page's updates by e-mail.")


def _subscriber(raw: str) -> UUID | None:
    try:
        return UUID(raw)
    except ValueError:
        return None


@get("/status/{slug:str}/unsubscribe")
async def unsubscribe_form(slug: PathStr, request: AnyRequest, pool: PoolDep) -> Template:
    page = await _page(request, pool, slug)
    return _message(
        page,
        f"Stop e-mails from {page.title}?",
        action=f"/status/{slug}/unsubscribe",
        fields={
            "s": request.query_params.get("s", "")[:40],
            "t": request.query_params.get("t", "")[:100],
        },
        button="Unsubscribe",
    )


@post("/status/{slug:str}/unsubscribe", status_code=200)
async def unsubscribe(
    slug: PathStr,
    request: AnyRequest,
    pool: PoolDep,
    box: BoxDep,
) -> Template:
    """One POST, no login: the button of the page the mail links to, or a mail client's
    one-click unsubscribe (RFC 8058) to the same address."""
    page = await _page(request, pool, slug)
    form = await request.form()
    raw = str(form.get("s", "") or request.query_params.get("s", ""))[:40]
    token = str(form.get("t", "") or request.query_params.get("t", ""))[:100]
    subscriber = _subscriber(raw)
    if subscriber is None or not rules.Unsubscribe.of(box).valid(str(subscriber), token):
        return _message(page, "t: this unsubscribe link is not valid.", 400, error=True)
    async with pool.acquire() as conn:
        await subscribers.unsubscribe(conn, page.id, subscriber)
    log.info("status subscriber unsubscribed", slug=slug)
    return _message(page, "Unsubscribed: no more e-mails from this page.")
