"""Posture of one monitor, moved over the rounds the alerter has judged: the one place results
become findings. The alerter calls `observe` in the transaction of the monitor's evaluation, so
findings, baselines, events and notifications commit with its state, once, whichever replica
evaluates it.

Only judged rounds are read (their results are all in, or the round closed), each once: the
cursor `posture_state.last_round_at` follows the alerter's. Nothing is told while the monitor
is in maintenance (the notify entry holds findings back; controller.notify.maintenance);
findings are still recorded, and an expiry notice due then waits for the first round after it.

One call tells what it found in one notice per kind (posture.notices): the findings that
appeared in its rounds, from every country, in one `finding` notice; the certificates that
crossed an expiry threshold in one `cert_expiry` notice. Each goes by e-mail, by SMS and to the
monitor's notification channels only for the severities the organization (or the monitor)
chose for each (`Thresholds.finding_channels`).
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import groupby
from typing import NamedTuple

import structlog

from controller.db.pool import Conn
from controller.monitors import thresholds_store as thresholds_db
from controller.monitors.store import Monitor
from controller.monitors.thresholds import SEVERITIES, Thresholds
from controller.notify import events_store as events_db
from controller.notify import recipients
from controller.notify.entry import Notice, Source, notify
from controller.notify.links import Links
from controller.notify.texts import Texts
from controller.posture import notices
from controller.posture import store as db
from controller.posture.facts import Observation, StoredFacts
from controller.posture.facts import observe as facts_of
from controller.posture.rules import (
    Baseline,
    Finding,
    Key,
    Tracker,
    Verdicts,
    baseline_moves,
    crossed,
    drift,
    expiry_notice,
    quality,
)
from controller.sidechecks.findings import DOMAIN_FACTS, concerns
from controller.sidechecks.frame import Judging
from controller.sidechecks.registry import SIDE_CHECKS, WIRED
from shared.guards import BrokenInvariant
from shared.messages import (
    MonitorEvent,
    PostureNote,
    encode,
)
from shared.sidechecks import SideCheckError
from shared.subjects import events_subject
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

ROWS_PER_PASS = 5000
LOOKBACK = timedelta(hours=1)  # where a monitor's first posture pass starts


class Read(NamedTuple):
    """Results the caller has read in this transaction: all that ran (`db.rounds_after`'s
    rows) scheduled after `after`, however late, oldest first."""

    after: datetime
    facts: list[StoredFacts]


async def observe(
    conn: Conn,
    monitor: Monitor,
    judged_until: datetime | None,
    state: str,
    quiet: bool,
    links: Links,
    now: datetime,
    thresholds: Thresholds | None = None,
    read: Read | None = None,
) -> None:
    """Move the monitor's posture over its rounds judged since the last call, up to
    `judged_until` (the alerter's cursor), at `now`; `state`: the monitor's alert state now;
    `thresholds`: the monitor's, when the caller has read them already; `read`: the results
    the caller has read, taken instead of reading them again when they start at the cursor."""
    if judged_until is None:
        return
    monitor_id = monitor.id
    start = await db.known(conn, monitor_id)
    last, streaks = start.last_round_at, start.streaks
    after = last or judged_until - LOOKBACK
    if after >= judged_until:
        return
    if read is not None and read.after == last and len(read.facts) < ROWS_PER_PASS:
        rows = [r for r in read.facts if r.scheduled_at <= judged_until]
    else:
        rows = await db.rounds_after(conn, monitor_id, after, judged_until, ROWS_PER_PASS)
    if not rows:
        await db.save_state(conn, monitor_id, judged_until, streaks, now)
        return
    until = judged_until
    rounds = [(at, list(group)) for at, group in groupby(rows, key=lambda r: r.scheduled_at)]
    if len(rows) == ROWS_PER_PASS and len(rounds) > 1:
        rounds.pop()  # may be cut short; read on the next pass
        until = rounds[-1][0]
    t = thresholds
    if t is None:
        t = await thresholds_db.thresholds(conn, monitor_id, monitor.organization_id)
    days = t.cert_expiry_days
    pass_ = _Pass(conn, monitor, state, quiet, t, links, now)
    tracker = Tracker(open=start.open, streaks=streaks)
    stored = start.baselines
    base = stored
    for at, group in rounds:
        seen, verdicts = _round_verdicts(monitor, group, base, days)
        verdicts |= _unwatched(monitor, tracker.open)
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
    await pass_.tell()
    # only the countries whose baseline moved: one statement a round for nothing cost more
    # than the rest of the pass
    moved = {cc: facts for cc, facts in base.items() if stored.get(cc) != facts}
    if moved:
        await db.save_baselines(conn, monitor_id, moved, now)
    await db.save_state(conn, monitor_id, until, tracker.streaks, now)


class CursorMove(NamedTuple):
    """A posture pass that only moves the cursor (and the drift streaks); `last_round_at`
    None: the pass writes nothing at all."""

    last_round_at: datetime | None
    streaks: dict[Key, int]


def cursor_move(
    monitor: Monitor,
    start: db.Known,
    expiry_sent: dict[str, set[int]],
    judged_until: datetime | None,
    quiet: bool,
    t: Thresholds,
    read: Read,
) -> CursorMove | None:
    """What `observe` would write when it is nothing but the cursor and the streaks, by the
    same rules over the results the caller read (`read`); None when it would write anything
    else (a finding appearing, held or cleared, a baseline or certificate change, an expiry
    notice) or read more."""
    if judged_until is None:
        return CursorMove(None, start.streaks)
    last = start.last_round_at
    after = last or judged_until - LOOKBACK
    if after >= judged_until:
        return CursorMove(None, start.streaks)
    if read.after != last or len(read.facts) >= ROWS_PER_PASS or start.open:
        return None
    rows = [r for r in read.facts if r.scheduled_at <= judged_until]
    tracker = Tracker(open={}, streaks=dict(start.streaks))
    base = start.baselines
    days = t.cert_expiry_days
    before: _Judged | None = None
    for _, grouped in groupby(rows, key=lambda r: r.scheduled_at):
        group = list(grouped)
        said = [_said(r) for r in group]
        if before is not None and before.said == said and before.base == base:
            # What the round before said, judged against the same baselines: the same
            # observations and core verdicts, no baseline moved and no expiry notice due.
            seen, verdicts = before.seen, dict(before.core)
            for o, row in zip(seen, group, strict=True):
                verdicts |= _side_verdicts(monitor, row, o)
            appeared, cleared = tracker.step(verdicts)
            if appeared or cleared or tracker.open:
                return None
            continue
        seen, core = _core_verdicts(monitor, group, base, days)
        verdicts = dict(core)
        for o, row in zip(seen, group, strict=True):
            verdicts |= _side_verdicts(monitor, row, o)
        appeared, cleared = tracker.step(verdicts)
        if appeared or cleared or tracker.open:
            return None
        before = _Judged(said, base, seen, core)
        base, changes = baseline_moves(seen, base)
        if changes:
            return None
        if not quiet and any(
            expiry_notice(o.days_left, days, expiry_sent.get(o.cert_sha256, ())) is not None
            for o in seen
            if o.cert_sha256 and o.days_left is not None
        ):
            return None
    if base != start.baselines:
        return None
    return CursorMove(judged_until, tracker.streaks)


class _Judged(NamedTuple):
    """A round `cursor_move` judged: what its results said of the core check's facts
    (`_said`), the baselines it was judged against, its observations and core verdicts."""

    said: list[tuple[object, ...]]
    base: Mapping[str, Baseline]
    seen: list[Observation]
    core: Verdicts


def _said(row: StoredFacts) -> tuple[object, ...]:
    """What the core check's verdicts of a stored result are made of (`facts_of`'s inputs)."""
    return (row.country, row.tls, row.capabilities, row.capabilities_before_tls)


def _core_verdicts(
    monitor: Monitor, group: list[StoredFacts], base: Mapping[str, Baseline], days: Sequence[int]
) -> tuple[list[Observation], Verdicts]:
    """One round's observations and the core check's verdicts on them: drift from `base`, each
    result's quality against the expiry warning `days`."""
    seen = [facts_of(monitor.type, r) for r in group]
    verdicts = drift(seen, base)
    for o in seen:
        verdicts |= quality(o, days)
    return seen, verdicts


def _round_verdicts(
    monitor: Monitor, group: list[StoredFacts], base: Mapping[str, Baseline], days: Sequence[int]
) -> tuple[list[Observation], Verdicts]:
    """One round's observations and what posture's rules say of them: drift from `base`,
    each result's quality against the expiry warning `days`, its side checks' verdicts."""
    seen, verdicts = _core_verdicts(monitor, group, base, days)
    for o, row in zip(seen, group, strict=True):
        verdicts |= _side_verdicts(monitor, row, o)
    return seen, verdicts


def _side_verdicts(monitor: Monitor, row: StoredFacts, seen: Observation) -> Verdicts:
    """The verdicts of each side check that watches the monitor on its facts of one stored
    result (none on a round that did not ask it). Facts that do not fit their side check's
    types judge nothing (logged)."""
    verdicts: Verdicts = {}
    if not row.side:
        return verdicts  # no side check's facts: none judges anything
    for check in WIRED.values():
        if check.wire is None or check.judge is None or not check.watched(monitor):
            continue
        try:
            facts = check.wire.facts_of(row.side)
        except SideCheckError as exc:
            log.warning("side facts unreadable", monitor_id=str(monitor.public_id), error=str(exc))
            continue
        if facts is not None:
            verdicts |= check.judge(Judging(monitor, row, seen, facts))
    # A fact of the mail domain the monitor's type is not concerned by is never its finding.
    return {k: v if concerns(k[0], monitor.type) else None for k, v in verdicts.items()}


def _unwatched(monitor: Monitor, open_keys: Iterable[Key]) -> Verdicts:
    """Each side check no longer watching the monitor clears what it found."""
    gone = {code for c in SIDE_CHECKS.values() if not c.watched(monitor) for code in c.codes}
    return {key: None for key in open_keys if key[0] in gone}


class _Pass:
    """One observe call's writes: findings, events and notifications of one monitor. What is
    to be told is gathered over the call's rounds and told once (`tell`)."""

    def __init__(
        self,
        conn: Conn,
        monitor: Monitor,
        state: str,
        quiet: bool,
        t: Thresholds,
        links: Links,
        now: datetime,
    ) -> None:
        self.conn = conn
        self.now = now
        self.monitor = monitor
        self.state = state
        self.quiet = quiet
        self.thresholds = t
        self.links = links
        self.public_id = str(monitor.public_id)
        self.found: list[tuple[int, Finding]] = []  # (finding id, finding) to tell
        self.expiring: list[notices.Expiring] = []

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
            self.found.append((finding_id, f))

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
            if days_left is None:
                raise BrokenInvariant("observe._Pass.expiry: days_left is unset")
            sent = await db.expiry_sent(self.conn, self.monitor.id, sha)
            threshold = expiry_notice(days_left, days, sent)
            if threshold is None:
                continue
            await db.mark_expiry_sent(self.conn, self.monitor.id, sha, crossed(days_left, days))
            self.expiring.append(notices.Expiring(sha, days_left, threshold))

    async def tell(self) -> None:
        """The call's one finding notice and one expiry notice, each on the channels chosen
        for the severities it holds, each channel telling only those. The new facts of a mail
        domain several monitors of the customer name go apart, once to each of their
        recipients (`_tell_domain`)."""
        own, of_domain = await self._facts()
        domain, peers = self.monitor.mail_domain, list[Monitor]()
        if of_domain and domain is not None:
            named = await db.domain_monitors(self.conn, self.monitor.customer_id, domain)
            peers = [p for p in named if any(concerns(f.code, p.type) for _, f in of_domain)]
        if len(peers) <= 1:  # the domain's only monitor: its facts go in its one notice
            own, of_domain = sorted(own + of_domain, key=lambda x: x[0]), []
        if own:
            first = min(finding_id for finding_id, _ in own)
            found = [f for _, f in own]
            for channel in WAYS:
                chosen = [f for f in found if self._goes_by(channel, f.severity)]
                if chosen:
                    texts = notices.findings(self.monitor, chosen, self.links)
                    worst = _worst(f.severity for f in chosen)
                    await self.notify("finding", texts, f"finding:{first}", channel, worst)
        if of_domain and domain is not None:
            await self._tell_domain(domain, peers, of_domain)
        if self.expiring:
            # Each certificate's threshold is told once, so the first one names the notice.
            c = self.expiring[0]
            key = f"cert_expiry:{self.monitor.id}:{c.cert_sha256}:{c.threshold}"
            for channel in WAYS:
                chosen_certs = [c for c in self.expiring if self._goes_by(channel, c.severity)]
                if chosen_certs:
                    texts = notices.expiry(self.monitor, chosen_certs, self.links)
                    worst = _worst(c.severity for c in chosen_certs)
                    await self.notify("cert_expiry", texts, key, channel, worst)

    def _goes_by(self, channel: str, severity: str) -> bool:
        return channel in self.thresholds.finding_channels(severity)

    async def _facts(self) -> tuple[list[tuple[int, Finding]], list[tuple[int, Finding]]]:
        """The findings to tell: the monitor's own, and the news among the facts of its mail
        domain (`DOMAIN_FACTS`): a fact another monitor of the customer naming the domain has
        open was told already."""
        domain = self.monitor.mail_domain
        if domain is None:
            return self.found, []
        own = [(i, f) for i, f in self.found if f.code not in DOMAIN_FACTS]
        facts = [(i, f) for i, f in self.found if f.code in DOMAIN_FACTS]
        if not facts:
            return own, []
        m = self.monitor
        told = await db.open_elsewhere(
            self.conn, m.id, m.customer_id, domain, sorted({f.code for _, f in facts})
        )
        return own, [(i, f) for i, f in facts if f.code not in told]

    async def _tell_domain(
        self, domain: str, peers: Sequence[Monitor], facts: list[tuple[int, Finding]]
    ) -> None:
        """One notice of the domain's new facts to each recipient of the customer's monitors
        naming the domain (`peers`; an address or notification channel they share told once),
        on the ways each monitor chose for their severities."""
        first = min(finding_id for finding_id, _ in facts)
        found = [f for _, f in facts]
        key = f"finding:{first}:domain"
        texts_of: dict[tuple[str, ...], Texts] = {}
        m = self.monitor
        for peer in peers:
            t = self.thresholds
            if peer.id != m.id:
                t = await thresholds_db.thresholds(self.conn, peer.id, peer.organization_id)
            theirs = [f for f in found if concerns(f.code, peer.type)]
            for channel in WAYS:
                chosen = [f for f in theirs if channel in t.finding_channels(f.severity)]
                if not chosen:
                    continue
                codes = tuple(f"{f.code}:{f.country}" for f in chosen)
                texts = texts_of.get(codes) or notices.findings(m, chosen, self.links)
                texts_of[codes] = texts
                notes = recipients.to_recipients(
                    "finding",
                    peer,
                    texts,
                    key,
                    (channel,),
                    _worst(f.severity for f in chosen),
                    by_target=True,
                )
                await notify(
                    self.conn,
                    Notice(Source.FINDING, peer.organization_id, peer, None, notes),
                    self.now,
                )
        log.info(
            "posture domain notice queued",
            monitor_id=self.public_id,
            domain=domain,
            codes=sorted({f.code for f in found}),
        )

    async def notify(
        self, kind: str, texts: Texts, key: str, channel: str, severity: str | None = None
    ) -> None:
        notes = recipients.to_recipients(kind, self.monitor, texts, key, (channel,), severity)
        m = self.monitor
        await notify(self.conn, Notice(Source.FINDING, m.organization_id, m, None, notes), self.now)
        if notes:
            log.info("posture notice queued", monitor_id=self.public_id, kind=kind, channel=channel)

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
        await events_db.add_event(self.conn, events_subject(self.public_id), msg_id, encode(event))


# The ways a finding notice goes: e-mail, SMS, the monitor's notification channels.
WAYS = ("email", "sms", recipients.CHANNELS)


def _worst(severities: Iterable[str]) -> str:
    seen = set(severities)
    return next(s for s in SEVERITIES if s in seen)


def _note(change: str, f: Finding) -> PostureNote:
    return PostureNote(
        change=change, code=f.code, severity=f.severity, country=f.country, detail=f.detail
    )
