"""A round-trip monitor's delivery record, moved by the rounds the alerter judges
(controller.roundtrips.rules): a delivered round confirms the mailbox; `BACK_OFF_AFTER`
`not_delivered` rounds in a row slow its sending to a trickle, and the owners are told once."""

import dataclasses
from collections.abc import Sequence
from datetime import datetime

import structlog

from controller.db.pool import Conn
from controller.monitors.store import Monitor
from controller.notify import recipients
from controller.notify.entry import Notice, Source, notify
from controller.notify.links import Links
from controller.notify.texts import render_delivery_backoff
from controller.roundtrips import delivery_store as delivery_db
from controller.roundtrips import rules
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

# A judged round as the record needs it: (scheduled time, some country passed, failure kinds).
Seen = tuple[datetime, bool, Sequence[str | None]]


async def observe(
    conn: Conn,
    monitor: Monitor,
    judged: Sequence[Seen],
    quiet: bool,
    links: Links,
    now: datetime,
) -> None:
    """Move the monitor's record over the rounds just judged; tell the owners once per back-off
    (while notifications are held, at the next round judged outside the quiet), at `now`."""
    before = d = await delivery_db.get(conn, monitor.id)
    for at, up, kinds in judged:
        d = rules.after_round(d, rules.outcome(up, kinds), at)
    bound = log.bind(monitor_id=str(monitor.public_id))
    if d.state != before.state:
        bound.info("round-trip delivery", state=d.state, previous=before.state)
    if d.state == "backed_off" and not d.notified and not quiet:
        texts = render_delivery_backoff(monitor, d.not_delivered, rules.BACKED_OFF_PER_HOUR, links)
        key = f"delivery-backoff:{monitor.id}:{iso_ms(judged[-1][0])}"
        notes = recipients.to_recipients("delivery", monitor, texts, key)
        await notify(
            conn, Notice(Source.ACCOUNT, monitor.organization_id, monitor, None, notes), now
        )
        d = dataclasses.replace(d, notified=True)
        bound.warning(
            "round trip not delivered: sending slowed, owners told", rounds=d.not_delivered
        )
    if d != before:
        await delivery_db.put(conn, monitor.id, d)
