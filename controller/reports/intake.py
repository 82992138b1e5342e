"""A report taken in (by HTTPS or from a mailbox) and a domain's report findings judged: the one
place reports become rows and findings.

`take` parses outside any transaction, then stores the report and judges its domains in one
transaction, holding the domain's lock (`store.lock_domain`), so two reports of a domain
arriving together judge one after the other. A refused report is one `rejected_reports` row
and nothing else. `judge_domain` is also run on its own (`sweep`), so findings clear once
their reports fall out of the organization's window.

Findings go on every monitor of the organization whose `mailDomain` is the domain, as posture
findings (country ""): their notices are `finding` notices on the channels chosen for their
severity, their appearance and clearing `MonitorEvent`s, like the agents' own findings.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import structlog

from controller.db.pool import Conn
from controller.monitors import thresholds_store as thresholds_db
from controller.monitors.store import Monitor
from controller.notify import events_store as events_db
from controller.notify import recipients
from controller.notify.entry import Notice, Source, notify
from controller.notify.links import Links
from controller.observability import metrics
from controller.posture import notices
from controller.posture import store as posture
from controller.posture.observe import WAYS
from controller.posture.rules import Finding
from controller.reports import store as db
from controller.reports.parse import Rejected, Report, known_domains, parse
from controller.sidechecks.reports import SIDE_CHECK as REPORTS
from controller.sidechecks.reports import rules
from shared.messages import MonitorEvent, PostureNote, encode
from shared.subjects import events_subject
from shared.timefmt import iso_ms, utcnow

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Taken:
    """What became of a report: stored (`stored`), or refused with `reason` and `message`."""

    stored: bool
    reason: str = ""
    message: str = ""
    kind: str = ""


async def take(
    pool: asyncpg.Pool,
    organization_id: int,
    data: bytes,
    via: str,
    source: str,
    links: Links,
    domain: str | None = None,
    kind: str | None = None,
) -> Taken:
    """Parse `data` and store it for the organization (`domain`: the only domain it may be
    about, the HTTPS endpoint's; `kind`: the only kind it may be); judge its domains. `source`
    says where it came from."""
    now = utcnow()
    try:
        report = parse(data, now)
        if kind is not None and report.kind != kind:
            raise Rejected("wrong_kind", f"a {report.kind} report where {kind} reports go")
    except Rejected as exc:
        return await _refused(pool, organization_id, via, source, len(data), exc)
    try:
        async with pool.acquire() as conn, conn.transaction():
            monitored = await db.monitored_domains(conn, organization_id)
            if domain is not None:
                monitored &= {domain}
            known_domains(report, monitored)
            for d in sorted(report.domains):
                await db.lock_domain(conn, organization_id, d)
            stored = await db.insert(conn, organization_id, report, via, len(data))
            if stored is None:
                raise Rejected(
                    "duplicate",
                    f"report {report.report_id!r} of {report.reporter!r} was taken already",
                )
            for d in sorted(report.domains):
                await judge_domain(conn, organization_id, d, links, now)
    except Rejected as exc:
        return await _refused(pool, organization_id, via, source, len(data), exc, report)
    metrics.report_taken(report.kind, via, "stored")
    metrics.side_check_facts(REPORTS.name)
    log.info(
        "report stored",
        organization_id=organization_id,
        kind=report.kind,
        reporter=report.reporter,
        domains=list(report.domains),
        via=via,
    )
    return Taken(True, kind=report.kind)


async def _refused(
    pool: asyncpg.Pool,
    organization_id: int,
    via: str,
    source: str,
    size: int,
    exc: Rejected,
    report: Report | None = None,
) -> Taken:
    async with pool.acquire() as conn:
        await db.reject(conn, organization_id, via, exc.reason, exc.message, source, size)
    kind = report.kind if report is not None else ""
    metrics.report_taken(kind or "unknown", via, exc.reason)
    log.info(
        "report rejected",
        organization_id=organization_id,
        via=via,
        reason=exc.reason,
        detail=exc.message,
    )
    return Taken(False, exc.reason, exc.message, kind)


async def judge_domain(
    conn: Conn, organization_id: int, domain: str, links: Links, now: datetime
) -> None:
    """Move the report findings of the domain's monitors to what its window's counts say."""
    settings = await db.settings(conn, organization_id)
    since = (now - timedelta(days=settings.window_days)).date()
    counts = await db.window_counts(conn, organization_id, domain, since)
    for monitor in await db.domain_monitors(conn, organization_id, domain):
        await _judge_monitor(conn, monitor, counts, settings, links, now)


async def _judge_monitor(
    conn: Conn,
    monitor: Monitor,
    counts: Sequence[rules.Count],
    settings: rules.ReportSettings,
    links: Links,
    now: datetime,
) -> None:
    own = await posture.open_findings(conn, monitor.id)
    verdicts = rules.judge(counts, settings, monitor.hostname, own)
    told_before = await db.items(conn, monitor.id)
    state = await db.alert_state(conn, monitor.id)
    news: list[tuple[Finding, tuple[str, ...]]] = []
    for code in rules.CODES:
        verdict, open_ = verdicts.get(code), own.get((code, ""))
        if verdict is None:
            if open_ is not None:
                await posture.clear(conn, monitor.id, open_, now)
                await db.drop_items(conn, monitor.id, code)
                await _event(conn, monitor, state, now, "cleared", open_)
            continue
        before = told_before.get(code) if open_ is not None else None
        if open_ is None:
            await posture.appear(conn, monitor.id, verdict.finding, now)
            await _event(conn, monitor, state, now, "appeared", verdict.finding)
        else:
            await posture.seen(conn, monitor.id, [verdict.finding], now)
        if rules.told(verdict, before):
            together = tuple(sorted(set(before or ()) | set(verdict.items)))
            await db.save_items(conn, monitor.id, code, together)
            news.append((verdict.finding, verdict.items))
    if news:
        await _tell(conn, monitor, news, links)


async def _tell(
    conn: Conn, monitor: Monitor, news: list[tuple[Finding, tuple[str, ...]]], links: Links
) -> None:
    """One notice of what is new, on the ways chosen for each finding's severity."""
    t = await thresholds_db.thresholds(conn, monitor.id, monitor.organization_id)
    said = "|".join(f"{f.code}:{','.join(items)}" for f, items in news)
    key = f"report:{monitor.id}:{hashlib.blake2b(said.encode(), digest_size=8).hexdigest()}"
    for way in WAYS:
        chosen = [f for f, _ in news if way in t.finding_channels(f.severity)]
        if not chosen:
            continue
        texts = notices.findings(monitor, chosen, links)
        worst = min(chosen, key=lambda f: ("critical", "warning", "info").index(f.severity))
        notes = recipients.to_recipients("finding", monitor, texts, key, (way,), worst.severity)
        await notify(conn, Notice(Source.REPORT, monitor.organization_id, monitor, None, notes))
    log.info("report finding notice", monitor_id=str(monitor.public_id), codes=said)


async def _event(
    conn: Conn, monitor: Monitor, state: str, at: datetime, change: str, f: Finding
) -> None:
    public_id = str(monitor.public_id)
    note = PostureNote(change=change, code=f.code, severity=f.severity, detail=f.detail)
    stamp = iso_ms(at)
    event = MonitorEvent(
        monitor_id=public_id,
        state=state,
        previous_state=state,
        at=stamp,
        countries=[],
        cause=f.detail,
        posture=note,
    )
    msg_id = f"{public_id}:{stamp}:posture:{change}:{f.code}:"
    await events_db.add_event(conn, events_subject(public_id), msg_id, encode(event))


async def sweep(pool: asyncpg.Pool, links: Links) -> None:
    """Judge again every domain with an open report finding: it clears once its reports have
    left the window."""
    now = utcnow()
    async with pool.acquire() as conn:
        domains = await db.domains_with_findings(conn)
    for d in domains:
        async with pool.acquire() as conn, conn.transaction():
            await db.lock_domain(conn, d.organization_id, d.domain)
            await judge_domain(conn, d.organization_id, d.domain, links, now)
