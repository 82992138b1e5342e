"""A report taken in (by HTTPS or from a mailbox) and a domain's report findings judged: the one
place reports become rows and findings, and the one place a refusal is recorded and counted.

`take` parses outside any transaction, in a process of its own (controller/reports/sandbox.py;
a domain whose reports this hour are spent is refused before its report is parsed, and a
report refused by its parser or after it counts against the hour as a taken one does: the
HTTPS address's domain, or for a mailed report the monitored domains it is about, else the one
its message's subject names, `_counted`), then, in one transaction holding each of its
domains' locks (`store.lock_domain`, so two reports of a domain judge one after the other):

- refuses a report about a domain not monitored here, one whose range ended before the
  organization's window (`too_old`: it could change no total and no finding), one past its
  domain's hourly bounds (`too_many_reports`, `too_many_rows`: REPORTS_PER_HOUR,
  REPORT_ROWS_PER_HOUR per organization and domain) or past what the domain may store
  (REPORT_ROWS_KEPT aggregate rows, each reporter's share bounded: the reporter holding the
  most rows loses its oldest days first, controller/reports/room.py, else `rows_kept_full`),
  and one whose content was taken already (`duplicate`, decided on content,
  controller.reports.content);
- adds its rows to the running aggregates (store.insert), and judges its domains from them:
  what judging reads is bounded (totals, the largest failures, the failing networks), never
  the window's rows.

A refused report is one `rejected_reports` row and one count in `mailprobe_reports`, nothing
else (`refuse`, which the mailbox readers call too). `judge_domain` is also run on its own
(`sweep`), so findings clear once their reports fall out of the organization's window.

A domain's findings are facts of each customer naming it (organization, customer, domain):
they go on that customer's monitors whose `mailDomain` is the domain and whom they concern
(`rules.shown_on`: SMTP monitors and round trips, never IMAP or POP3; TLS failures those at
an MX the failures name, when one is), as posture findings
(country ""), their appearance and clearing `MonitorEvent`s like the agents' own. Their notices
are `Source.REPORT` notices (their own hourly budget: strangers' reports can never use up an
outage notice's), one per recipient of those monitors (an address or a notification channel
several of them share is told once), on the ways each monitor chose for their severity: the
first at once, then, for `REPORT_DIGEST_MINUTES` after each, news is held and goes as one
digest per customer's domain (`send_digests`), so a flood of reports naming something new each
time is one notice per interval.
"""

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
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
from controller.posture import store as posture
from controller.posture.observe import WAYS
from controller.posture.rules import Finding
from controller.reports import content, notices, room
from controller.reports import store as db
from controller.reports.parse import Kind, Rejected, Report, known_domains
from controller.reports.sandbox import SANDBOX
from controller.settings import ReportsSettings
from controller.sidechecks.reports import SIDE_CHECK as REPORTS
from controller.sidechecks.reports import rules
from shared import strangers
from shared.messages import MonitorEvent, PostureNote, encode
from shared.subjects import events_subject
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

DIGESTS_PER_PASS = 200


MAILED_REFUSALS_PER_HOUR = 100
# The hour count of mailed messages refused whole that named no monitored domain: a key no
# domain has.
_NO_DOMAIN = ""


@dataclass(frozen=True, slots=True)
class Limits:
    """An organization's bounds per domain (the settings' defaults)."""

    reports_per_hour: int = 200
    rows_per_hour: int = 200_000
    rows_kept: int = 1_000_000
    digest: timedelta = timedelta(minutes=60)
    # mailed messages refused whole naming no monitored domain (`refuse_message`)
    mailed_refusals_per_hour: int = MAILED_REFUSALS_PER_HOUR

    @classmethod
    def of(cls, reports: ReportsSettings) -> "Limits":
        return cls(
            reports.reports_per_hour,
            reports.report_rows_per_hour,
            reports.report_rows_kept,
            timedelta(minutes=reports.report_digest_minutes),
        )


DEFAULT_LIMITS = Limits()


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
    kind: Kind | None = None,
    limits: Limits = DEFAULT_LIMITS,
    named: str = "",
    sender: str = "",
    *,
    now: datetime,
) -> Taken:
    """Parse `data` and store it for the organization (`domain`: the only domain it may be
    about, the HTTPS endpoint's; `kind`: the only kind it may be, told from its first bytes;
    `named`: the domain a mailed report's message names, unverified); judge its domains.
    `source` says where it came from, `sender` who sent it (controller.reports.senders),
    `now` when it was received."""
    counted = await _counted(pool, organization_id, domain, named)
    for d in counted:
        if spent := await _spent(pool, organization_id, d, now, limits):
            return await refuse(pool, organization_id, via, source, len(data), spent)
    try:
        report = await SANDBOX.parse(data, now, kind, organization_id=organization_id)
    except Rejected as exc:
        await _charge(pool, organization_id, counted, now)
        return await refuse(pool, organization_id, via, source, len(data), exc)
    # A report's rows (up to 100,000) hashed, summed and ranked in a thread: the event loop
    # runs between the interpreter's thread switches instead of waiting for all of it.
    digest, summed, new = await asyncio.to_thread(_prepared, report)
    try:
        async with pool.acquire() as conn, conn.transaction():
            monitored = await db.monitored_domains(conn, organization_id)
            if domain is not None:
                monitored &= {domain}
            known_domains(report, monitored)
            settings = await db.settings(conn, organization_id)
            _recent(report, settings, now)
            for d in sorted(report.domains):
                await db.lock_domain(conn, organization_id, d)
            for d in sorted(report.domains):
                within = _About(organization_id, d, now, sender)
                await _within(conn, within, report, summed.rows(d), limits)
            stored = await db.insert(
                conn, organization_id, report, summed, digest, via, len(data), sender, now
            )
            if stored is None:
                raise Rejected(
                    "duplicate",
                    f"a report of the same content from {report.reporter!r} was taken already",
                )
            for d in sorted(report.domains):
                await judge_domain(conn, organization_id, d, links, now, limits, new)
    except Rejected as exc:
        about = await _counted(pool, organization_id, domain, named, report)
        await _charge(pool, organization_id, about, now)
        return await refuse(pool, organization_id, via, source, len(data), exc, report)
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


def _prepared(report: Report) -> tuple[bytes, db.Summed, rules.Fresh]:
    """The report's content digest, its rows summed as stored, and its items that may be news."""
    new = rules.fresh(
        rules.Count(report.kind, report.reporter, r.result, r.mx, r.ip, r.count)
        for _, r in report.rows
    )
    return content.digest(report), db.summed(report), new


def _recent(report: Report, settings: rules.ReportSettings, now: datetime) -> None:
    """Refuse a report whose range ended before the organization's window began."""
    since = (now - timedelta(days=settings.window_days)).date()
    if report.ends_at.date() < since:
        raise Rejected(
            "too_old",
            f"its range ended {report.ends_at.date()}, before the {settings.window_days}-day"
            f" report window (from {since})",
        )


async def _spent(
    pool: asyncpg.Pool, organization_id: int, domain: str, now: datetime, limits: Limits
) -> Rejected | None:
    """The refusal of a report about `domain` before it is even parsed, when the domain's
    reports this hour are spent already (the count `_within` keeps)."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    async with pool.acquire() as conn:
        taken = await db.hour_reports(conn, organization_id, domain, hour)
    if taken < limits.reports_per_hour:
        return None
    return _too_many_reports(domain, limits)


async def _counted(
    pool: asyncpg.Pool,
    organization_id: int,
    domain: str | None,
    named: str,
    report: Report | None = None,
) -> list[str]:
    """The domains whose hour a report refused counts against: the HTTPS address's; for a
    mailed one, the domains of the organization's monitors it is about (once parsed), else the
    one its message names if the organization monitors it. Never a domain nobody here
    monitors: a stranger names those freely."""
    if domain is not None:
        return [domain]
    if not named and report is None:
        return []
    async with pool.acquire() as conn:
        monitored = await db.monitored_domains(conn, organization_id)
    about = sorted(d for d in (report.domains if report else ()) if d in monitored)
    return about or ([named] if named in monitored else [])


async def _charge(
    pool: asyncpg.Pool, organization_id: int, domains: Sequence[str], now: datetime
) -> None:
    """Count a report refused once parsed (or by its parser) against its domains' hour
    (`_counted`), as a taken one is: a parser's time is spent either way, so a sender of
    reports that are refused spends the domain's REPORTS_PER_HOUR like one whose reports are
    taken, by HTTPS or by mail."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    async with pool.acquire() as conn:
        for d in sorted(domains):
            await db.take_hour(conn, organization_id, d, hour, 0)


async def mailed_spent(
    pool: asyncpg.Pool, organization_id: int, now: datetime, limits: Limits
) -> Rejected | None:
    """The refusal of a mailed message before it is opened, when the organization's mailed
    messages refused whole this hour that named no monitored domain reached its bound
    (`refuse_message`); None while they have not."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    async with pool.acquire() as conn:
        refused = await db.hour_reports(conn, organization_id, _NO_DOMAIN, hour)
    if refused < limits.mailed_refusals_per_hour:
        return None
    return Rejected(
        "too_many_refused",
        f"{limits.mailed_refusals_per_hour} mailed messages were refused whole this hour naming"
        " no monitored domain (MAILED_REFUSALS_PER_HOUR): refused unopened",
    )


async def refuse_message(
    pool: asyncpg.Pool,
    organization_id: int,
    source: str,
    size: int,
    exc: Rejected,
    *,
    now: datetime,
) -> Taken:
    """Record and count a mailed message refused whole (`no_report`, `too_large`, `too_deep`):
    it counts against the hour of the monitored domain its subject names (`exc.named`), as a
    report its parser refuses does, else against the organization's bound of such refusals
    (`mailed_spent`)."""
    named = await _counted(pool, organization_id, None, exc.named)
    await _charge(pool, organization_id, named or [_NO_DOMAIN], now)
    return await refuse(pool, organization_id, "mail", source, size, exc)


def _too_many_reports(domain: str, limits: Limits) -> Rejected:
    return Rejected(
        "too_many_reports",
        f"more than {limits.reports_per_hour} reports about {domain} this hour (REPORTS_PER_HOUR)",
    )


@dataclass(frozen=True, slots=True)
class _About:
    """A report's organization and one of its domains, when it came and from whom."""

    organization_id: int
    domain: str
    now: datetime
    sender: str


async def _within(conn: Conn, about: _About, report: Report, rows: int, limits: Limits) -> None:
    """Count the report against its domain's hour; refuse it past the domain's bounds, or make
    room for its rows among what the domain stores (controller/reports/room.py: established
    reporters' days kept)."""
    organization_id, domain, now = about.organization_id, about.domain, about.now
    hour = now.replace(minute=0, second=0, microsecond=0)
    taken = await db.take_hour(conn, organization_id, domain, hour, rows)
    if taken.reports > limits.reports_per_hour:
        raise _too_many_reports(domain, limits)
    if taken.rows > limits.rows_per_hour:
        raise Rejected(
            "too_many_rows",
            f"more than {limits.rows_per_hour} report rows about {domain} this hour"
            " (REPORT_ROWS_PER_HOUR)",
        )
    if taken.stored + rows <= limits.rows_kept:
        return
    day, reporter = report.begins_at.date(), report.reporter
    held = await db.stored_days(conn, organization_id, domain)
    pairs = await db.established(conn, organization_id, domain, room.ESTABLISHED_DAYS)
    names = {name for name, _ in pairs}
    own = (reporter, about.sender) in pairs
    dropped = room.rows_to_drop(held, reporter, day, rows, limits.rows_kept, names, own)
    if dropped is None:
        raise Rejected(
            "rows_kept_full",
            f"{domain} stores {taken.stored} report rows; {rows} more would pass"
            f" {limits.rows_kept} (REPORT_ROWS_KEPT), and no reporter holds more than its share"
            f" to make room for {reporter!r} of {day} (each reporter's share bounded: the"
            " reporter holding the most rows loses its oldest days first; a reporter that has"
            f" sent on {room.ESTABLISHED_DAYS} days keeps its days until their own age)",
        )
    gone = await db.drop_days(conn, organization_id, domain, dropped)
    log.info(
        "report days dropped for room",
        organization_id=organization_id,
        domain=domain,
        days=[f"{r}/{d.isoformat()}" for r, d in dropped],
        rows=gone,
    )


async def refuse(
    pool: asyncpg.Pool,
    organization_id: int,
    via: str,
    source: str,
    size: int,
    exc: Rejected,
    report: Report | None = None,
) -> Taken:
    """Record and count a refused report (or message): one `rejected_reports` row, its
    detail and source kept as a stranger's text is."""
    detail, source = strangers.kept(exc.message, 500), strangers.kept(source, 300)
    async with pool.acquire() as conn:
        await db.reject(conn, organization_id, via, exc.reason, detail, source, size)
    kind = report.kind if report is not None else ""
    metrics.report_taken(kind or "unknown", via, exc.reason)
    log.info(
        "report rejected",
        organization_id=organization_id,
        via=via,
        reason=exc.reason,
        detail=detail,
    )
    return Taken(False, exc.reason, exc.message, kind)


async def judge_domain(
    conn: Conn,
    organization_id: int,
    domain: str,
    links: Links,
    now: datetime,
    limits: Limits = DEFAULT_LIMITS,
    new: rules.Fresh | None = None,
) -> None:
    """Move the report findings of the domain's monitors to what its window's aggregates say
    (`new`: what the report just taken holds): per customer naming the domain, one fact,
    shown on the monitors it concerns and told once."""
    settings = await db.settings(conn, organization_id)
    since = (now - timedelta(days=settings.window_days)).date()
    seen = await db.window(conn, organization_id, domain, since)
    by_customer: dict[int, list[Monitor]] = {}
    for monitor in await db.domain_monitors(conn, organization_id, domain):
        by_customer.setdefault(monitor.customer_id, []).append(monitor)
    for customer_id, monitors in by_customer.items():
        fact = _Fact(db.Fact(organization_id, customer_id, domain), links, now, limits)
        shown = _shown(monitors, seen)
        news: dict[str, tuple[Finding, int]] = {}
        for monitor in monitors:
            codes = shown.get(monitor.id, frozenset())
            for f, n in await _judge_monitor(conn, monitor, codes, now, seen, settings, new):
                # The fact's words are its first monitor's; its news, the most any held.
                first = news.setdefault(f.code, (f, n))
                news[f.code] = (first[0], max(first[1], n))
        if news:
            told = [m for m in monitors if shown.get(m.id)]
            await _tell(conn, fact, told, shown, list(news.values()))


@dataclass(frozen=True, slots=True)
class _Fact:
    fact: db.Fact
    links: Links
    now: datetime
    limits: Limits


def _shown(monitors: Sequence[Monitor], seen: rules.Window) -> dict[int, frozenset[str]]:
    """The report codes each monitor shows (`rules.shown_on`), by monitor id."""
    named = [(m.id, m.type, m.hostname) for m in monitors]
    on = {code: rules.shown_on(code, named, seen) for code in rules.CODES}
    return {m.id: frozenset(c for c in rules.CODES if m.id in on[c]) for m in monitors}


async def _judge_monitor(
    conn: Conn,
    monitor: Monitor,
    shown: frozenset[str],
    now: datetime,
    seen: rules.Window,
    settings: rules.ReportSettings,
    new: rules.Fresh | None,
) -> list[tuple[Finding, int]]:
    """Move the monitor's report findings (only the `shown` codes: none on a monitor they do
    not concern); the news: each finding that appeared or names items not told before, with
    how many."""
    own = await posture.open_findings(conn, monitor.id)
    verdicts = rules.judge(seen, settings, monitor.hostname, own, new)
    state = await db.alert_state(conn, monitor.id)
    news: list[tuple[Finding, int]] = []
    for code in rules.CODES:
        verdict = verdicts.get(code) if code in shown else None
        open_ = own.get((code, ""))
        if verdict is None:
            if open_ is not None:
                await posture.clear(conn, monitor.id, open_, now)
                await db.drop_told(conn, monitor.id, code)
                await _event(conn, monitor, state, now, "cleared", open_)
            continue
        before: list[str] | None = None
        if open_ is None:
            await posture.appear(conn, monitor.id, verdict.finding, now)
            await _event(conn, monitor, state, now, "appeared", verdict.finding)
        else:
            await posture.seen(conn, monitor.id, [verdict.finding], now)
            before = await db.told(conn, monitor.id, code, verdict.items)
        if rules.told(verdict, before):
            unsaid = sorted(set(verdict.items) - set(before or ()))
            await db.save_told(conn, monitor.id, code, unsaid, now)
            news.append((verdict.finding, len(unsaid)))
    return news


async def _tell(
    conn: Conn,
    fact: _Fact,
    monitors: Sequence[Monitor],
    shown: Mapping[int, frozenset[str]],
    news: list[tuple[Finding, int]],
) -> None:
    """The first news at once; within `limits.digest` of the fact's last notice, held for the
    digest."""
    now = fact.now
    last = await db.notices(conn, fact.fact)
    if last is not None and now < last.told_at + fact.limits.digest:
        codes = [f.code for f, _ in news]
        due = last.told_at + fact.limits.digest
        await db.notice_held(conn, fact.fact, codes, sum(n for _, n in news), due)
        log.info("report finding news held", domain=fact.fact.domain, codes=codes)
        return
    found = [f for f, _ in news]
    if await _send(conn, fact.fact, monitors, shown, found, fact.links, now, None):
        await db.notice_sent(conn, fact.fact, now)


async def _send(
    conn: Conn,
    fact: db.Fact,
    monitors: Sequence[Monitor],
    shown: Mapping[int, frozenset[str]],
    found: Sequence[Finding],
    links: Links,
    now: datetime,
    digest: tuple[int, datetime] | None,
) -> bool:
    """One notice of `found` about the fact's domain, to each recipient of the `monitors` once
    (the same dedupe key for all, made per address and per notification channel), each told
    the findings it shows (`shown`, by monitor id) on the ways it chose for their severity;
    True when any was queued (not taken as an open incident's evidence)."""
    window = (await db.settings(conn, fact.organization_id)).window_days
    since = (now - timedelta(days=window)).date()
    reporters = await db.reporters(conn, fact.organization_id, fact.domain, since)
    said = "|".join(f"{f.code}:{f.detail}" for f in found) + (f"|{iso_ms(now)}" if digest else "")
    digested = hashlib.blake2b(said.encode(), digest_size=8).hexdigest()
    key = f"report:{fact.customer_id}:{fact.domain}:{digested}"
    queued = False
    for monitor in monitors:
        own = [f for f in found if f.code in shown.get(monitor.id, frozenset())]
        t = await thresholds_db.thresholds(conn, monitor.id, monitor.organization_id)
        for way in WAYS:
            chosen = [f for f in own if way in t.finding_channels(f.severity)]
            if not chosen:
                continue
            texts = notices.report_findings(monitors, fact.domain, chosen, reporters, links, digest)
            worst = min(chosen, key=lambda f: ("critical", "warning", "info").index(f.severity))
            notes = recipients.to_recipients(
                "finding", monitor, texts, key, (way,), worst.severity, by_target=True
            )
            notice = Notice(Source.REPORT, monitor.organization_id, monitor, None, notes)
            queued = await notify(conn, notice, now) or queued
    log.info(
        "report finding notice",
        domain=fact.domain,
        monitors=[str(m.public_id) for m in monitors],
        codes=[f.code for f in found],
        digest=digest is not None,
        queued=queued,
    )
    return queued


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


async def send_digests(pool: asyncpg.Pool, links: Links, now: datetime) -> int:
    """Send every digest that is due: one notice per customer's domain of its open report
    findings and how much news they gathered. How many went."""
    sent = 0
    async with pool.acquire() as conn, conn.transaction():
        for due in await db.digests_due(conn, now, DIGESTS_PER_PASS):
            found: dict[str, Finding] = {}
            shown: dict[int, frozenset[str]] = {}
            monitors: list[Monitor] = []
            for monitor in await db.fact_monitors(conn, due.fact):
                own = await posture.open_findings(conn, monitor.id)
                codes = frozenset(code for code, _ in own if code in rules.CODES)
                if not codes:
                    continue
                monitors.append(monitor)
                shown[monitor.id] = codes
                for (code, _), f in own.items():
                    if code in codes:
                        found.setdefault(code, f)
            if found:
                digest = (due.news, due.told_at)
                said = list(found.values())
                await _send(conn, due.fact, monitors, shown, said, links, now, digest)
                sent += 1
            await db.notice_sent(conn, due.fact, now)
    return sent


async def sweep(pool: asyncpg.Pool, links: Links, now: datetime) -> None:
    """Judge again, at `now`, every domain with an open report finding: it clears once its
    reports have left the window."""
    async with pool.acquire() as conn:
        domains = await db.domains_with_findings(conn)
    for d in domains:
        async with pool.acquire() as conn, conn.transaction():
            await db.lock_domain(conn, d.organization_id, d.domain)
            await judge_domain(conn, d.organization_id, d.domain, links, now)
