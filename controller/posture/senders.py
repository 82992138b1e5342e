"""Senders' grading moved by what arrived (controller.arrivals.grading's rules): the one place
arrivals become findings. The arrivals intake calls `Grader.grade` (given it by runtime/) in the
transaction that stored a batch, for the monitors it brought news of, so the findings, their
events and notices commit with the arrivals, once, whichever replica stored them.

Findings go where posture's do (`posture_findings`, per country): shown on the monitor, in
the findings API and console, each appearing once and cleared when a later arrival shows it
fixed (controller.arrivals.grading). Each grading that found something new tells it in one
notice, on the ways the organization chose for its severities, through the notification
budgets and maintenance windows like any finding."""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from controller.arrivals import grading
from controller.arrivals import store as db
from controller.db.pool import Conn
from controller.monitors import thresholds_store as thresholds_db
from controller.monitors.store import Monitor
from controller.notify import events_store as events_db
from controller.notify import recipients
from controller.notify.entry import Notice, Source, notify
from controller.notify.links import Links
from controller.posture import notices
from controller.posture import store as posture
from controller.posture.observe import WAYS
from controller.sidechecks.findings import Finding, Key
from shared.messages import MonitorEvent, PostureNote, encode
from shared.subjects import events_subject
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Grader:
    """`links`: what the notices link to."""

    links: Links

    async def grade(self, conn: Conn, monitor_ids: Sequence[int], now: datetime) -> None:
        """Move the grading findings of `monitor_ids` to what their arrivals say at `now`."""
        if not monitor_ids:
            return
        await db.lock_grading(conn, monitor_ids)
        seen: dict[int, dict[str, grading.Latest]] = {}
        for row in await db.latest(conn, monitor_ids):
            seen.setdefault(row.monitor_id, {})[row.country] = grading.Latest(
                normal_tls=row.normal_tls, dkim=row.dkim, dmarc=row.dmarc, twins={}
            )
        for t in await db.twins(conn, monitor_ids, now, grading.SETTLE):
            latest = seen.setdefault(t.monitor_id, {}).get(t.country, grading.Latest())
            twins = {**latest.twins, t.twin: grading.Twin(t.at, t.refused_at)}
            seen[t.monitor_id][t.country] = replace(latest, twins=twins)
        for graded in await db.graded_monitors(conn, monitor_ids):
            await _grade_one(conn, graded, seen.get(graded.monitor.id, {}), self.links, now)


async def _grade_one(
    conn: Conn,
    graded: db.GradedMonitor,
    seen: dict[str, grading.Latest],
    links: Links,
    now: datetime,
) -> None:
    monitor = graded.monitor
    verdicts: dict[Key, Finding | None] = {}
    for country, latest in sorted(seen.items()):
        verdicts |= grading.verdicts(country, latest)
    open_ = await posture.open_findings(conn, monitor.id)
    held: list[Finding] = []
    appeared: list[tuple[int, Finding]] = []
    for key, finding in sorted(verdicts.items()):
        before = open_.get(key)
        if finding is None:
            if before is not None:
                await posture.clear(conn, monitor.id, before, now)
                await _event(conn, graded, now, "cleared", before)
        elif before is None:
            appeared.append((await posture.appear(conn, monitor.id, finding, now), finding))
            await _event(conn, graded, now, "appeared", finding)
        else:
            held.append(finding)
    await posture.seen(conn, monitor.id, held, now)
    if appeared:
        log.info(
            "sender grading findings appeared",
            monitor_id=str(monitor.public_id),
            codes=sorted({f.code for _, f in appeared}),
        )
        await _tell(conn, monitor, appeared, links, now)


async def _tell(
    conn: Conn, monitor: Monitor, appeared: list[tuple[int, Finding]], links: Links, now: datetime
) -> None:
    """One notice of what appeared, per way, holding the severities chosen for it."""
    t = await thresholds_db.thresholds(conn, monitor.id, monitor.organization_id)
    key = f"finding:{min(i for i, _ in appeared)}"
    found = [f for _, f in appeared]
    for way in WAYS:
        chosen = [f for f in found if way in t.finding_channels(f.severity)]
        if not chosen:
            continue
        worst = min(chosen, key=lambda f: ("critical", "warning", "info").index(f.severity))
        texts = notices.findings(monitor, chosen, links)
        notes = recipients.to_recipients("finding", monitor, texts, key, (way,), worst.severity)
        await notify(
            conn, Notice(Source.FINDING, monitor.organization_id, monitor, None, notes), now
        )


async def _event(
    conn: Conn, graded: db.GradedMonitor, at: datetime, change: str, f: Finding
) -> None:
    public_id = str(graded.monitor.public_id)
    note = PostureNote(
        change=change, code=f.code, severity=f.severity, country=f.country, detail=f.detail
    )
    stamp = iso_ms(at)
    event = MonitorEvent(
        monitor_id=public_id,
        state=graded.alert_state,
        previous_state=graded.alert_state,
        at=stamp,
        countries=[f.country] if f.country else [],
        cause=f.detail,
        posture=note,
    )
    msg_id = f"{public_id}:{stamp}:posture:{change}:{f.code}:{f.country}"
    await events_db.add_event(conn, events_subject(public_id), msg_id, encode(event))
