"""The one way a notice goes out: `notify(conn, Notice(...))`, in the caller's transaction.

Whoever tells an organization something (the alerter's incidents, posture findings, blocklists,
report findings, logins and tokens, round-trip delivery, status pages, the owners' budget
notice) builds the notes (controller.notify.recipients) and calls `notify`; nothing else writes
the outbox. The notice names its `Source`: the hourly budget of its organization it draws on
(controller.notify.budget, taken by the outbox worker), so no other source can ever use up the
outage notices' budget. A finding (or a report finding) about a monitor while a mail-flow
problem touching it is open is that incident's evidence instead (controller.notify.
evidence_store). Maintenance is decided here too, for every writer: what it holds back
(controller.notify.maintenance `held`) is not queued while the monitor is in maintenance
(`in_maintenance`, which the alerter asks as well before it marks a notice told).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from controller.db.pool import Conn
from controller.monitors.store import Monitor
from controller.notify import evidence_store, maintenance, outbox_store
from controller.notify import maintenance_store as windows_db
from controller.notify.recipients import CHANNELS, Outgoing
from controller.notify.sources import Source

__all__ = ["Notice", "Source", "in_maintenance", "notify"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice: its notes, one outbox row each (the `CHANNELS` row one per notification
    channel of the monitor)."""

    source: Source  # which budget it draws on
    organization_id: int
    monitor: Monitor | None  # None: about the organization (owners, subscribers, fleet)
    incident_id: int | None
    notes: Sequence[Outgoing]


async def notify(conn: Conn, notice: Notice, now: datetime) -> bool:
    """Queue `notice`'s notes at `now` (the instant the caller was given); a dedupe
    key already queued is skipped. True when any note was queued (not held for maintenance,
    not attached to an open incident). ValueError when the notice contradicts itself (a
    monitor of another organization; the monitor's notification channels with no monitor)."""
    at = now
    monitor = notice.monitor
    if monitor is None:
        if any(n.channel == CHANNELS for n in notice.notes):
            raise ValueError("a notice about no monitor cannot go to a monitor's channels")
        await outbox_store.enqueue_for_organization(
            conn, notice.organization_id, notice.notes, notice.source, at
        )
        return bool(notice.notes)
    if monitor.organization_id != notice.organization_id:
        raise ValueError(
            f"notice for organization {notice.organization_id} about a monitor of"
            f" organization {monitor.organization_id}"
        )
    notes = notice.notes
    if any(maintenance.held(notice.source, n.kind) for n in notes) and await in_maintenance(
        conn, monitor, at
    ):
        notes = [n for n in notes if not maintenance.held(notice.source, n.kind)]
        log.info(
            "notice not queued: the monitor is in maintenance",
            monitor_id=str(monitor.public_id),
            source=str(notice.source),
            kinds=sorted({n.kind for n in notice.notes}),
        )
    if await evidence_store.attach(conn, monitor, notice.source, notes):
        log.info(
            "finding attached to an open incident as evidence, not sent on its own",
            monitor_id=str(monitor.public_id),
            source=str(notice.source),
            kinds=sorted({n.kind for n in notes}),
        )
        return False
    if not notes:
        return False
    await outbox_store.enqueue(conn, monitor.id, notice.incident_id, notes, notice.source, at)
    return True


async def in_maintenance(
    conn: Conn, monitor: Monitor, at: datetime, *, windows: bool = True
) -> bool:
    """Whether `monitor` is in maintenance at `at` (controller.notify.maintenance `quiet`);
    `windows` False when none cover it (the alerter knows it from its batch's read)."""
    if monitor.status == maintenance.MAINTENANCE or not windows:
        return maintenance.quiet(monitor.status, (), at)
    found = await windows_db.for_monitor(conn, monitor.id, monitor.customer_id)
    return maintenance.quiet(monitor.status, found, at)
