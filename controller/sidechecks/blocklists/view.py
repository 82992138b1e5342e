"""A monitor's blocklist standing as its page and `GET …/blocklists` show it: read from the
shared answers, the names its rounds found, its listings, and the lists' health
(`standing_rules` decides each cell)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.db.pool import Conn
from controller.monitors.store import Monitor
from controller.sidechecks.blocklists import store as db
from controller.sidechecks.blocklists.rules import BlockList, ListHealth
from controller.sidechecks.blocklists.standing_rules import Name, Seen, standing
from controller.sidechecks.blocklists.store import ListingEntry
from controller.sidechecks.blocklists.watch import healths
from shared.timefmt import utcnow


@dataclass(frozen=True)
class MonitorStanding:
    names: list[Name]
    history: list[ListingEntry]  # its listings, open ones first
    health: dict[tuple[str, str], ListHealth]  # (zone, country) → the list's health there
    checked: dict[tuple[str, str], datetime]  # (zone, country) → its test entries' last answer


async def monitor_standing(
    conn: Conn,
    monitor: Monitor,
    lists: tuple[BlockList, ...],
    interval_s: int,
    now: datetime | None = None,
) -> MonitorStanding:
    """Answers older than two intervals are no longer what a list says (as the watch reads
    them)."""
    since = (now or utcnow()) - timedelta(seconds=2 * interval_s)
    names = await db.names_of(conn, monitor.id)
    listed = [
        *(monitor.reputation or {}).get("ips", ()),
        *(monitor.reputation or {}).get("domains", ()),
    ]
    wanted = {n for found in names.values() for n in found} | set(listed)
    tests = {t for b in lists for t in b.tests}
    answers = await db.answers(conn, wanted | tests, since) if lists else []
    zones = {b.zone for b in lists}
    seen = {
        (a.zone, a.name, a.country): Seen(a.a, a.error, a.answered_at)
        for a in answers
        if a.zone in zones
    }
    health = healths(lists, [a for a in answers if a.name in tests])
    checked: dict[tuple[str, str], datetime] = {}
    for a in answers:
        if a.name in tests:
            key = (a.zone, a.country)
            checked[key] = max(checked.get(key, a.answered_at), a.answered_at)
    listings = await db.open_listings(conn, monitor.id, lock=False)
    history = await db.listings(conn, monitor.id)
    shown = standing(lists, names, listed, seen, health, listings) if lists else []
    return MonitorStanding(shown, history, health, checked)
