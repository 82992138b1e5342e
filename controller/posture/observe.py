"""Posture of one monitor, moved over the rounds the alerter has judged: the one place results
become findings. The alerter calls `observe` in the transaction of the monitor's evaluation, so
findings, baselines, events and notifications commit with its state, once, whichever replica
evaluates it.

Only judged rounds are read (their results are all in, or the round closed), each once: the
cursor `posture_state.last_round_at` follows the alerter's. Nothing is notified while the
monitor is quiet (maintenance); findings are still recorded, and an expiry notice due then goes
out at the first round after it.
"""

from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

import msgspec
import structlog

from controller.alerting import store as alerts
from controller.db.pool import Conn
from controller.monitors.store import Monitor
from controller.notify import recipients
from controller.notify.texts import Texts
from controller.posture import maildns, notices
from controller.posture import store as db
from controller.posture.facts import Observation
from controller.posture.facts import observe as facts_of
from controller.posture.rules import (
    MAIL_DNS_CODES,
    Finding,
    Tracker,
    Verdicts,
    baseline_moves,
    crossed,
    drift,
    expiry_notice,
    quality,
)
from shared.messages import MailDns, MonitorEvent, PostureNote, encode
from shared.subjects import events_subject
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

ROWS_PER_PASS = 5000
LOOKBACK = timedelta(hours=1)  # where a monitor's first posture pass starts


async def observe(
    conn: Conn, monitor: Monitor, judged_until: datetime | None, state: str, quiet: bool
) -> None:
    """Move the monitor's posture over its rounds judged since the last call, up to
    `judged_until` (the alerter's cursor); `state`: the monitor's alert state now."""
    if judged_until is None:
        return
    monitor_id = monitor.id
    last, streaks = await db.state(conn, monitor_id)
    after = last or judged_until - LOOKBACK
    if after >= judged_until:
        return
    rows = await db.rounds_after(conn, monitor_id, after, judged_until, ROWS_PER_PASS)
    if not rows:
        await db.save_state(conn, monitor_id, judged_until, streaks)
        return
    until = judged_until
    rounds = [(at, list(group)) for at, group in groupby(rows, key=lambda r: r["scheduled_at"])]
    if len(rows) == ROWS_PER_PASS and len(rounds) > 1:
        rounds.pop()  # may be cut short; read on the next pass
        until = rounds[-1][0]
    pass_ = _Pass(conn, monitor, state, quiet)
    tracker = Tracker(open=await db.open_findings(conn, monitor_id), streaks=streaks)
    stored = await db.baselines(conn, monitor_id)
    base = stored
    days = (await alerts.thresholds(conn, monitor_id, monitor.organization_id)).cert_expiry_days
    for at, group in rounds:
        seen = [facts_of(monitor.type, r) for r in group]
        verdicts = drift(seen, base)
        for o in seen:
            verdicts |= quality(o, days)
        for o, row in zip(seen, group, strict=True):
            verdicts |= _mail_dns(monitor, row, o)
        if not monitor.mail_domain:  # no longer watched: what it found is over
            verdicts |= {key: None for key in tracker.open if key[0] in MAIL_DNS_CODES}
        appeared, cleared = tracker.step(verdicts)
        held = [f for key, f in verdicts.items() if f is not None and key in tracker.open]
        await db.seen(conn, monitor_id, [f for f in held if f not in appeared], at)
        for f in appeared:
            await pass_.appeared(f, at)
        for f in cleared:
            await pass_.cleared(f, at)
        base, changes = baseline_moves(seen, base)
        for change in changes:
            await db.record_change(conn, monitor_id, change, at)
            detail = f"{change.fact}: {change.before} → {change.after}"
            await pass_.event(at, PostureNote(change="changed", code=change.fact, detail=detail))
        await pass_.expiry(seen, days)
    # only the countries whose baseline moved: one statement a round for nothing cost more
    # than the rest of the pass
    moved = {cc: facts for cc, facts in base.items() if stored.get(cc) != facts}
    if moved:
        await db.save_baselines(conn, monitor_id, moved)
    await db.save_state(conn, monitor_id, until, tracker.streaks)


def _mail_dns(monitor: Monitor, row: Any, seen: Observation) -> Verdicts:
    """The mail DNS verdicts of one stored result (none on a round without a DNS probe)."""
    if row["mail_dns"] is None or not monitor.mail_domain:
        return {}
    try:
        facts = msgspec.convert(row["mail_dns"], MailDns)
    except msgspec.ValidationError as exc:
        log.warning("mail dns facts unreadable", monitor_id=str(monitor.public_id), error=str(exc))
        return {}
    return maildns.mail_dns(monitor.type, monitor.hostname, facts, seen)


class _Pass:
    """One observe call's writes: findings, events and notifications of one monitor."""

    def __init__(self, conn: Conn, monitor: Monitor, state: str, quiet: bool) -> None:
        self.conn = conn
        self.monitor = monitor
        self.state = state
        self.quiet = quiet
        self.public_id = str(monitor.public_id)

    async def appeared(self, f: Finding, at: datetime) -> None:
        finding_id = await db.appear(self.conn, self.monitor.id, f, at)
        await self.event(at, _note("appeared", f))
        log.info(
            "posture finding appeared",
            monitor_id=self.public_id,
            code=f.code,
            country=f.country,
            severity=f.severity,
        )
        if f.notified:
            await self.notify("finding", notices.finding(self.monitor, f), f"finding:{finding_id}")

    async def cleared(self, f: Finding, at: datetime) -> None:
        await db.clear(self.conn, self.monitor.id, f, at)
        await self.event(at, _note("cleared", f))
        log.info("posture finding cleared", monitor_id=self.public_id, code=f.code)

    async def expiry(self, seen: list[Observation], days: tuple[int, ...]) -> None:
        """One notice per threshold per certificate (whatever country saw it)."""
        if self.quiet:
            return
        certs = {
            o.cert_sha256: o.days_left for o in seen if o.cert_sha256 and o.days_left is not None
        }
        for sha, days_left in sorted(certs.items()):
            assert days_left is not None
            sent = await db.expiry_sent(self.conn, self.monitor.id, sha)
            threshold = expiry_notice(days_left, days, sent)
            if threshold is None:
                continue
            await db.mark_expiry_sent(self.conn, self.monitor.id, sha, crossed(days_left, days))
            texts = notices.expiry(self.monitor, days_left, threshold, sha)
            key = f"cert_expiry:{self.monitor.id}:{sha}:{threshold}"
            await self.notify("cert_expiry", texts, key)

    async def notify(self, kind: str, texts: Texts, key: str) -> None:
        if self.quiet:
            return
        notes = recipients.to_recipients(kind, self.monitor, texts, key)
        await alerts.enqueue(self.conn, self.monitor.id, None, notes)

    async def event(self, at: datetime, note: PostureNote) -> None:
        stamp = iso_ms(at)
        event = MonitorEvent(
            monitor_id=self.public_id,
            state=self.state,
            previous_state=self.state,
            at=stamp,
            countries=[note.country] if note.country else [],
            cause=note.detail,
            posture=note,
        )
        msg_id = f"{self.public_id}:{stamp}:posture:{note.change}:{note.code}:{note.country}"
        await alerts.add_event(self.conn, events_subject(self.public_id), msg_id, encode(event))


def _note(change: str, f: Finding) -> PostureNote:
    return PostureNote(
        change=change, code=f.code, severity=f.severity, country=f.country, detail=f.detail
    )
