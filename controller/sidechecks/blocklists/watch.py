"""The `blocklisted` findings, moved every pass (the alerter role, `BlocklistWatch.run_once`):
for each monitor whose names were seen lately, each (list, name) is read per country from the
shared answers (only where the list is healthy in that country), held, raised and cleared by
`rules.hold_step`, and each raise, clear or move (a raised listing seen from other countries
now) is one event and one notice on the channels its severity goes by (a major list's listing
is `critical`, another's `warning`). A listing several monitors of a customer hold (a name they
share) is one fact: every one of them shows it, its raise is told once to each of their
recipients (`_fact_key`), and it is told when the last clears it (to the recipients of every
monitor that held it in the episode) and as the first of them moves it (`_news`)."""

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Final, NamedTuple

import asyncpg
import structlog

from controller.db.pool import Conn
from controller.monitors import store as monitors
from controller.monitors import thresholds_store as thresholds_db
from controller.monitors.kinds import ALL_TYPES
from controller.monitors.store import Monitor
from controller.notify import events_store as events_db
from controller.notify import recipients
from controller.notify.entry import Notice, Source, notify
from controller.notify.links import NO_LINKS, Links
from controller.notify.texts import Texts, monitor_facts, one_line, target, with_facts, with_link
from controller.sidechecks.blocklists import rules
from controller.sidechecks.blocklists import store as db
from controller.sidechecks.blocklists.rules import BlockList, Change, Fresh, ListHealth, Listing
from controller.sidechecks.blocklists.standing_rules import reason
from shared.clock import Clock
from shared.guards import BrokenInvariant
from shared.messages import MonitorEvent, PostureNote, encode
from shared.subjects import events_subject
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

WAYS = ("email", "sms", recipients.CHANNELS)
# A listing raised is a finding that appeared; a move changes the countries it is seen from.
EVENT_CHANGE: Final[Mapping[str, str]] = {
    "raised": "appeared",
    "cleared": "cleared",
    "moved": "changed",
}


class Told(NamedTuple):
    change: Change
    listing: Listing
    before: Listing | None


def healths(
    lists: Iterable[BlockList],
    answers: Iterable[db.Answer],
    failures: Mapping[tuple[str, str], db.Failure] | None = None,
) -> dict[tuple[str, str], ListHealth]:
    """(zone, country) → the list's health there, from its test entries' real answers; where
    none is left, its latest failure there (`failures`) says why it is not known."""
    by = {(a.zone, a.name, a.country): a for a in answers if a.a is not None}
    failed = failures or {}
    countries = {a.country for a in by.values()} | {cc for _, cc in failed}
    out: dict[tuple[str, str], ListHealth] = {}
    for b in lists:
        for cc in countries:
            tests = [by.get((b.zone, t, cc)) for t in b.tests]
            verdicts = [None if t is None else rules.read(b, t.a) for t in tests]
            h = rules.health(b, verdicts[0], verdicts[1])
            failure = failed.get((b.zone, cc))
            if None in verdicts and failure is not None:
                h = ListHealth("unknown", f"its test entries got no answer: {failure.error}")
            out[(b.zone, cc)] = h
    return out


class BlocklistWatch:
    def __init__(
        self,
        pool: asyncpg.Pool,
        lists: tuple[BlockList, ...],
        *,
        interval_s: int,
        hold_s: int,
        links: Links = NO_LINKS,
        clock: Clock,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._lists = {b.zone: b for b in lists}
        self._interval = timedelta(seconds=interval_s)
        self._hold = timedelta(seconds=hold_s)
        self._links = links

    async def run_once(self, now: datetime | None = None) -> None:
        at = now or self._clock.now()
        # Answers older than two intervals are no longer what a list says.
        since = at - 2 * self._interval
        async with self._pool.acquire() as conn:
            watched = await db.watched(conn, since)
            tests = {t for b in self._lists.values() for t in b.tests}
            failed = await db.failures(conn, since)
            health = healths(self._lists.values(), await db.answers(conn, tests, since), failed)
        for w in watched:
            async with self._pool.acquire() as conn, conn.transaction():
                await self._monitor(conn, w, health, since, at)

    async def _monitor(
        self,
        conn: Conn,
        w: db.Watched,
        health: dict[tuple[str, str], ListHealth],
        since: datetime,
        at: datetime,
    ) -> None:
        names = {n for per in w.names.values() for n, src in per.items() if src != "listed"}
        names |= {
            n
            for per in w.names.values()
            for n, src in per.items()
            if src == "listed" and n not in {t for b in self._lists.values() for t in b.tests}
        }
        found = await db.answers(conn, names, since)
        seen: dict[tuple[str, str], tuple[dict[str, str], set[str]]] = {}
        for a in found:
            b = self._lists.get(a.zone)
            if b is None or a.name not in w.names.get(a.country, {}):
                continue
            if health.get((a.zone, a.country), ListHealth("unknown")).state != "healthy":
                continue  # an unhealthy list's answers are no findings
            if rules.vouch(b, a.tests).state != "healthy":
                continue  # nor those its own round's test entries do not vouch for
            verdict = rules.read(b, a.a, a.error)
            listed, clean = seen.setdefault((a.zone, a.name), ({}, set()))
            if verdict.state == "listed":
                listed[a.country] = reason(verdict, a.txt)
            elif verdict.state == "clean":
                clean.add(a.country)
        current = await db.open_listings(conn, w.monitor_id)
        told: list[Told] = []
        for key in sorted(set(seen) | set(current)):
            listed, clean = seen.get(key, ({}, set()))
            # Where the name was met but the list said nothing usable: no change there.
            met = {cc for cc, per in w.names.items() if key[1] in per}
            quiet = met - set(listed) - clean
            before = current.get(key)
            after, change = rules.hold_step(before, *key, listed, clean, at, self._hold, quiet)
            if after == before:
                continue
            await db.save_listing(conn, w.monitor_id, before, after, at)
            if change is not None:
                listing = after or before
                if listing is None:
                    raise BrokenInvariant("watch.BlocklistWatch._monitor: listing is unset")
                told.append(Told(change, listing, before))
        if told:
            await self._tell(conn, w.monitor_id, told, at)

    async def _tell(self, conn: Conn, monitor_id: int, told: list[Told], at: datetime) -> None:
        monitor = await monitors.get(conn, monitor_id, ALL_TYPES, None)
        if monitor is None:
            return
        t = await thresholds_db.thresholds(conn, monitor.id, monitor.organization_id)
        for change, listing, before in told:
            b = self._lists[listing.zone]
            severity = rules.severity(b)
            note = PostureNote(
                change=EVENT_CHANGE[change],
                code="blocklisted",
                severity=severity,
                detail=_detail(b, listing),
            )
            await _event(conn, monitor, note, at)
            log.info("blocklist listing " + change, monitor_id=str(monitor.public_id))
            told_to = await _fact_key(conn, monitor, change, listing, at)
            if told_to is None:
                continue
            key, holders = told_to
            for holder_id in holders:
                holder = monitor
                if holder_id != monitor.id:
                    found = await monitors.get(conn, holder_id, ALL_TYPES, None)
                    if found is None or found.organization_id != monitor.organization_id:
                        continue
                    holder = found
                ht = (
                    t
                    if holder is monitor
                    else await thresholds_db.thresholds(conn, holder.id, holder.organization_id)
                )
                texts = notice(holder, b, listing, change, self._links, before)
                for way in WAYS:
                    if way in ht.finding_channels(severity):
                        notes = recipients.to_recipients(
                            "finding", holder, texts, key, (way,), severity, by_target=True
                        )
                        org = holder.organization_id
                        await notify(conn, Notice(Source.FINDING, org, holder, None, notes), at)


async def _fact_key(
    conn: Conn, monitor: Monitor, change: Change, listing: Listing, at: datetime
) -> tuple[str, list[int]] | None:
    """The dedupe key of the change's notice (made per address and channel) and the monitors
    whose recipients hear it, None when it is no news. A raise is the customer's one fact: each
    monitor raising it tells its recipients under the key of its first raise among the monitors
    holding it, so every holder's recipient hears of it once, whichever raised it first. Its
    clear, by the last holder, goes under the episode's key to the recipients of every monitor
    that held it in the episode (`db.episode`), whenever each stopped holding it."""
    fact = f"blocklisted:{listing.zone}:{listing.name}"
    if change == "raised":
        first = await db.first_raised(conn, monitor.id, listing.zone, listing.name)
        return f"{fact}:c{monitor.customer_id}:{iso_ms(first or at)}:raised", [monitor.id]
    if not await _news(conn, monitor.id, change, listing):
        return None
    if change == "cleared":
        ep = await db.episode(conn, monitor.id, listing.zone, listing.name)
        if ep is not None:
            key = f"{fact}:c{monitor.customer_id}:{iso_ms(ep.first_raised)}:cleared"
            return key, ep.holders
    key = f"{fact}:m{monitor.id}:{iso_ms(listing.since)}"
    if change == "moved":  # a listing moves as often as its countries change
        key += f":{iso_ms(at)}"
    return f"{key}:{change}", [monitor.id]


async def _news(conn: Conn, monitor_id: int, change: Change, listing: Listing) -> bool:
    """Whether the change is news for the customer: a listing other monitors of the customer
    hold raised is one fact, raised and cleared with the first and the last of them, moved by
    the first of them (by id)."""
    others = await db.held_elsewhere(conn, monitor_id, listing.zone, listing.name)
    if change == "moved":
        return not others or monitor_id < others[0]
    return not others


def _detail(b: BlockList, listing: Listing) -> str:
    countries = ", ".join(sorted(listing.countries)) or "no country now"
    return (
        f"{listing.name} on {b.label} ({b.zone}) since {iso_ms(listing.since)}, seen from"
        f" {countries}: {listing.reason}"
    )


def notice(
    monitor: Monitor,
    b: BlockList,
    listing: Listing,
    change: str,
    links: Links,
    before: Listing | None = None,
) -> Texts:
    """One listing raised, cleared or moved (seen from other countries than `before`), in
    words."""
    name = one_line(monitor.name)
    sms_change = change
    if change == "raised":
        subject = f"[mailprobe] Blocklisted on {b.label}: {name}"
        lead = (
            f"{listing.name}, which {name} ({target(monitor)}) depends on, is listed on {b.label}."
        )
    elif change == "moved":
        now = spoken(listing.countries)
        subject = f"[mailprobe] On {b.label}, now seen from {now}: {name}"
        lead = f"{listing.name}, listed on {b.label}, is now seen listed from {now}"
        was = before.countries if before is not None else frozenset()
        if gained := listing.countries - was:
            lead += f" (newly from {spoken(gained)})"
        if lost := was - listing.countries:
            lead += f"; no longer from {spoken(lost)}"
        lead += "."
        sms_change = f"now seen from {now}"
    else:
        subject = f"[mailprobe] No longer on {b.label}: {name}"
        lead = f"{listing.name} is no longer listed on {b.label}."
    facts = [
        ("List", f"{b.label} ({b.zone}), {rules.severity(b)}"),
        ("Listed", listing.name),
        ("Since", iso_ms(listing.since)),
        ("Seen from", ", ".join(sorted(listing.countries)) or "-"),
        ("Why", listing.reason or "-"),
        ("Delisting", b.delisting(listing.name) or "-"),
        *monitor_facts(monitor, links),
    ]
    sms = f"mailprobe {rules.severity(b)}: {listing.name} ({name}) {sms_change} on {b.label}"
    return with_facts(subject, lead, facts, with_link(sms, links.monitor(monitor.public_id)))


def spoken(countries: Iterable[str]) -> str:
    """`DE`, `DE and US`, `DE, FR and US`."""
    ordered = sorted(countries)
    if len(ordered) < 2:
        return "".join(ordered) or "no country"
    return f"{', '.join(ordered[:-1])} and {ordered[-1]}"


async def _event(conn: Conn, monitor: Monitor, note: PostureNote, at: datetime) -> None:
    public_id = str(monitor.public_id)
    stamp = iso_ms(at)
    state = await db.alert_state(conn, monitor.id)
    event = MonitorEvent(
        monitor_id=public_id,
        state=state,
        previous_state=state,
        at=stamp,
        cause=note.detail,
        posture=note,
    )
    msg_id = f"{public_id}:{stamp}:blocklisted:{note.change}:{note.detail[:120]}"
    await events_db.add_event(conn, events_subject(public_id), msg_id, encode(event))


class FreshNames:
    """The scheduler's view of the lists' answers (`Answers`): what each list answered in each
    country within the interval and the lists dead there (`Fresh`, read every `REFRESH_S`), so
    a round skips them: a popular address is one query per list per interval, however many
    monitors depend on it and whatever another list does (give or take a refresh)."""

    REFRESH_S = 60.0

    def __init__(
        self,
        pool: asyncpg.Pool,
        lists: tuple[BlockList, ...],
        interval_s: int,
        clock: Clock,
    ) -> None:
        self._clock = clock
        self._pool = pool
        self.lists = lists
        self.interval_s = interval_s
        self._interval = timedelta(seconds=interval_s)
        self._fresh: dict[str, Fresh] = {}
        self._known: dict[tuple[int, str], frozenset[str]] = {}
        self._asked: dict[tuple[int, str], datetime] = {}

    def fresh(self, country: str) -> Fresh:
        return self._fresh.get(country, Fresh())

    def known(self, monitor_id: int, country: str) -> frozenset[str]:
        """The names the monitor's last asking round in `country` found (within two
        intervals): what its next round may meet besides its own, so only those of the fresh
        names travel in its job's `skip`."""
        return self._known.get((monitor_id, country), frozenset())

    def asked_at(self, monitor_id: int, country: str) -> datetime | None:
        """When the monitor's last round in `country` asked the lists (within two intervals;
        None: none did)."""
        return self._asked.get((monitor_id, country))

    async def refresh(self, now: datetime | None = None) -> None:
        at = now or self._clock.now()
        async with self._pool.acquire() as conn:
            self._fresh = await db.fresh(conn, at - self._interval, self.lists)
            found = await db.watched(conn, at - 2 * self._interval)
        self._known = {
            (w.monitor_id, cc): frozenset(names) for w in found for cc, names in w.names.items()
        }
        self._asked = {(w.monitor_id, cc): at for w in found for cc, at in w.seen_at.items()}
