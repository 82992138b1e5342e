"""A monitor's blocklist standing as its page and `GET …/blocklists` show it: read from the
shared answers, the names its rounds found, its listings, and the lists' health
(`standing_rules` decides each cell)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.db.pool import Conn
from controller.monitors.store import Monitor
from controller.sidechecks.blocklists import store as db
from controller.sidechecks.blocklists.rules import BlockList, ListHealth, vouch
from controller.sidechecks.blocklists.standing_rules import Name, Own, Seen, standing
from controller.sidechecks.blocklists.store import ListingEntry
from controller.sidechecks.blocklists.watch import healths


@dataclass(frozen=True)
class MonitorStanding:
    names: list[Name]
    history: list[ListingEntry]  # its listings, open ones first
    health: dict[tuple[str, str], ListHealth]  # (zone, country) → the list's health there
    checked: dict[tuple[str, str], datetime]  # (zone, country) → the monitor's last round there


async def monitor_standing(
    conn: Conn,
    monitor: Monitor,
    lists: tuple[BlockList, ...],
    interval_s: int,
    now: datetime,
) -> MonitorStanding:
    """Answers older than two intervals are no longer what a list says (as the watch reads
    them)."""
    since = now - timedelta(seconds=2 * interval_s)
    rounds = await db.own_rounds(conn, monitor.id)
    names = {cc: r.names for cc, r in rounds.items()}
    own = {cc: Own(r.seen_at, r.errors) for cc, r in rounds.items()}
    listed = [
        *(monitor.reputation or {}).get("ips", ()),
        *(monitor.reputation or {}).get("domains", ()),
    ]
    wanted = {n for found in names.values() for n in found} | set(listed)
    tests = {t for b in lists for t in b.tests}
    answers = await db.answers(conn, wanted | tests, since) if lists else []
    by_zone = {b.zone: b for b in lists}
    seen = {
        (a.zone, a.name, a.country): Seen(a.a or [], a.txt, vouch(by_zone[a.zone], a.tests))
        for a in answers
        if a.zone in by_zone and a.a is not None
    }
    failed = await db.failures(conn, since) if lists else {}
    health = healths(lists, [a for a in answers if a.name in tests], failed)
    # Dated by the monitor's own rounds: a shared answer's time is another round's.
    checked = {(b.zone, cc): r.seen_at for b in lists for cc, r in rounds.items()}
    listings = await db.open_listings(conn, monitor.id, lock=False)
    history = await db.listings(conn, monitor.id)
    shown = standing(lists, names, listed, seen, health, listings, own) if lists else []
    return MonitorStanding(shown, history, health, checked)


@dataclass(frozen=True)
class ListsHealth:
    """Each list's health per country that asked its test entries lately, and when they were
    last answered there, as `GET /api/blocklists` and the console's Reputation page show it."""

    health: dict[tuple[str, str], ListHealth]  # (zone, country) → its health there
    checked: dict[tuple[str, str], datetime]  # (zone, country) → its test entries' last answer


async def lists_health(
    conn: Conn, lists: tuple[BlockList, ...], interval_s: int, now: datetime
) -> ListsHealth:
    """The lists' health from their test entries' real answers and the failed asks of the last
    two intervals; each (list, country) dated by the hour of its newest answer only (when
    another organization's round asked reveals nothing finer)."""
    tests = {t for b in lists for t in b.tests}
    since = now - timedelta(seconds=2 * interval_s)
    answers = await db.answers(conn, tests, since) if lists else []
    failed = await db.failures(conn, since) if lists else {}
    checked: dict[tuple[str, str], datetime] = {}
    for a in answers:
        key = (a.zone, a.country)
        hour = a.answered_at.replace(minute=0, second=0, microsecond=0)
        checked[key] = max(checked.get(key, hour), hour)
    return ListsHealth(healths(lists, answers, failed), checked)
