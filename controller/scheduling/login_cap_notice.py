"""Reaching a login cap is never silent: the monitor shows it (`login_caps`) and its
organization's owners and the monitor's notification channels get one notice per episode,
through the notification outbox."""

from datetime import datetime

import structlog

from controller.db.pool import Conn
from controller.logins import cap_store as login_caps
from controller.monitors import store as monitors
from controller.notify import budget_store as budget_db
from controller.notify import recipients
from controller.notify.entry import Notice, Source, notify
from controller.notify.links import Links
from controller.notify.texts import render_login_cap
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

KIND = "login_cap"


async def reached(conn: Conn, monitor_id: int, cap: int, now: datetime, links: Links) -> None:
    """The monitor's login was capped at `now` (its cap `cap`): record it, and tell the owners
    once per episode."""
    if not await login_caps.reached(conn, monitor_id, cap, now):
        return
    try:
        watched = await monitors.watched(conn, monitor_id)
    except monitors.MonitorConfigError as exc:
        log.error(
            "monitor config unreadable: owners not told a login cap was reached",
            monitor=monitor_id,
            error=str(exc),
        )
        return
    if watched is None:
        return
    monitor = watched.monitor
    bound = log.bind(monitor_id=str(monitor.public_id), cap=cap)
    episode = await login_caps.get(conn, monitor_id, now)
    since = episode.since if episode else now
    _, owners = await budget_db.owners(conn, monitor.organization_id)
    if not owners:
        bound.warning("no owner to tell a login cap was reached")
    texts = render_login_cap(monitor, cap, since, links)
    key = f"{KIND}:{monitor_id}:{iso_ms(since)}"
    notes = recipients.to_owners(KIND, owners, texts, key)
    to_channels = recipients.to_channels(KIND, texts, key)
    org = monitor.organization_id
    await notify(conn, Notice(Source.ACCOUNT, org, monitor, None, notes + to_channels), now)
    await login_caps.told(conn, monitor_id)
    bound.warning("login cap reached: owners told", owners=len(notes))
