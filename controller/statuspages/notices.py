"""Notices written by a person on a status page (an incident or a maintenance) and what each of
their updates sets off: the page shows it at once (its cache key has the newest update) and
every confirmed subscriber is mailed it through the outbox, on the organization's subscriber
budget, with a one-click unsubscribe link. Callers (API and console) check rights: owners and
admins of the page's organization write notices, as they alone publish pages."""

from datetime import datetime
from uuid import UUID

import structlog

from controller.db.pool import Conn
from controller.notify import entry as notify_entry
from controller.secrets.box import SecretBox
from controller.statuspages import notices_store as notices
from controller.statuspages import subscribers as rules
from controller.statuspages import subscribers_store as subscribers
from controller.statuspages.notices_store import Notice

log = structlog.get_logger(__name__)


async def tell_subscribers(
    conn: Conn,
    box: SecretBox,
    public_url: str | None,
    notice: Notice,
    state: str,
    body: str,
    now: datetime,
) -> int:
    """Queue the update for every confirmed subscriber of the notice's page; how many (none
    without PUBLIC_URL: a mail needs links that work)."""
    if public_url is None:
        log.warning("status update not mailed: PUBLIC_URL is unset", notice=str(notice.public_id))
        return 0
    url = f"{public_url.rstrip('/')}/status/{notice.slug}"
    unsubscribe = rules.Unsubscribe.of(box)
    seq = await notices.update_count(conn, notice.id)
    notes = []
    for s in await subscribers.confirmed(conn, notice.status_page_id):
        sid = str(s.public_id)
        notes.append(
            rules.update(
                s.email,
                notice.page_title,
                notice.title,
                state,
                body,
                url,
                f"{url}/unsubscribe?s={sid}&t={unsubscribe.token(sid)}",
                f"status_update:{notice.public_id}:{seq}:{sid}",
            )
        )
    subscribers_ = notify_entry.Source.SUBSCRIBERS
    told = notify_entry.Notice(subscribers_, notice.organization_id, None, None, notes)
    await notify_entry.notify(conn, told, now)
    log.info(
        "status notice update queued for subscribers",
        slug=notice.slug,
        notice=str(notice.public_id),
        state=state,
        subscribers=len(notes),
    )
    return len(notes)


async def create(
    conn: Conn,
    box: SecretBox,
    public_url: str | None,
    page_id: int,
    title: str,
    impact: str,
    state: str,
    body: str,
    author_id: int,
    now: datetime,
) -> Notice:
    notice = await notices.create(conn, page_id, title, impact, state, body, author_id, now)
    await tell_subscribers(conn, box, public_url, notice, state, body, now)
    return notice


async def update(
    conn: Conn,
    box: SecretBox,
    public_url: str | None,
    public_id: UUID,
    organization_id: int,
    state: str,
    body: str,
    author_id: int,
    now: datetime,
) -> Notice | None:
    """None when the organization has no such notice."""
    notice = await notices.by_public_id(conn, public_id, organization_id)
    if notice is None:
        return None
    await notices.add_update(conn, notice.id, state, body, author_id, now)
    await tell_subscribers(conn, box, public_url, notice, state, body, now)
    return await notices.by_id(conn, notice.id)
