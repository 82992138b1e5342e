"""Blocklist storage: answers per list, name and country (one row for every organization that
depends on the name), the names each monitor depends on per country, and its listings."""

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn
from controller.sidechecks.blocklists.rules import TEST_NAMES, BlockList, Fresh, Listing
from controller.sidechecks.frame import Arrived
from shared.guards import BrokenInvariant
from shared.sidechecks.blocklists import Reputation
from shared.sidechecks.blocklists_bound import BUDGET_SPENT


async def record(conn: Conn, arrived: Sequence[Arrived[Reputation]]) -> int:
    """The answers and names of results' blocklist facts (the side check's store: the
    ingester's, in the results' transaction). Only real answers are shared
    (`blocklist_answers`, one per list, name and country, replaced only by a newer one): a
    lookup that failed is its round's own, kept on its monitor's names row (`errors`), and,
    unless the round's budget ran out before it was asked, as its list's latest failure in that
    country (`blocklist_failures`, which explains the list's health only when no real answer is
    left). Returns how many results' facts were taken (`_record_names`)."""
    answers: list[tuple[object, ...]] = []
    failures: dict[tuple[str, str], tuple[object, ...]] = {}
    names: list[_Names] = []
    for r in arrived:
        at = r.finished_at
        errors: dict[str, dict[str, str]] = {}
        tests = _tests(r.facts)
        for a in r.facts.answers:
            if a.a is not None:
                answers.append((a.zone, a.name, r.country, a.a, a.txt, tests.get(a.zone), at))
                continue
            errors.setdefault(a.name, {})[a.zone] = a.error or "no answer"
            if a.error != BUDGET_SPENT:
                failures[(a.zone, r.country)] = (a.zone, r.country, a.error or "no answer", at)
        facts = r.facts
        names.append(_Names(str(r.monitor_id), r.country, facts.names, errors, at, facts.resolver))
    if answers:
        await conn.executemany(
            "INSERT INTO blocklist_answers (zone, name, country, a, txt, tests, answered_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (zone, name, country) DO UPDATE"
            " SET a = EXCLUDED.a, txt = EXCLUDED.txt, tests = EXCLUDED.tests, error = '',"
            " answered_at = EXCLUDED.answered_at"
            " WHERE blocklist_answers.answered_at < EXCLUDED.answered_at",
            # In key order, as every batch writes them: rows every round shares (the lists'
            # test entries) are locked in one order, so two batches wait, never deadlock.
            sorted(answers, key=lambda a: (str(a[0]), str(a[1]), str(a[2]))),
        )
    if failures:
        await conn.executemany(
            "INSERT INTO blocklist_failures (zone, country, error, failed_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (zone, country) DO UPDATE"
            " SET error = EXCLUDED.error, failed_at = EXCLUDED.failed_at"
            " WHERE blocklist_failures.failed_at < EXCLUDED.failed_at",
            sorted(failures.values(), key=lambda f: (str(f[0]), str(f[1]))),
        )
    return await _record_names(conn, names)


class _Names(NamedTuple):
    public_id: str
    country: str
    names: dict[str, str]
    errors: dict[str, dict[str, str]]
    at: datetime
    resolver: str


async def _record_names(conn: Conn, names: Sequence[_Names]) -> int:
    """Each (monitor, country)'s names of its newest round among `names`, written over an
    older round's; returns how many were written: the results whose facts were taken (a
    redelivered result's round is the one stored already)."""
    newest: dict[tuple[str, str], _Names] = {}
    for n in names:
        key = (n.public_id, n.country)
        if key not in newest or newest[key].at < n.at:
            newest[key] = n
    if not newest:
        return 0
    rows = [newest[k] for k in sorted(newest)]
    written = await conn.fetch(
        "INSERT INTO blocklist_names (monitor_id, country, names, errors, seen_at, resolver)"
        " SELECT m.id, u.country, u.names::jsonb, u.errors::jsonb, u.seen_at, u.resolver"
        " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],"
        "  $6::text[])"
        "  WITH ORDINALITY AS u(public_id, country, names, errors, seen_at, resolver, i)"
        " JOIN monitors m ON m.public_id = u.public_id ORDER BY u.i"
        " ON CONFLICT (monitor_id, country) DO UPDATE SET names = EXCLUDED.names,"
        " errors = EXCLUDED.errors, seen_at = EXCLUDED.seen_at, resolver = EXCLUDED.resolver"
        " WHERE blocklist_names.seen_at < EXCLUDED.seen_at RETURNING 1",
        [n.public_id for n in rows],
        [n.country for n in rows],
        [_encode(n.names).decode() for n in rows],
        [_encode(n.errors).decode() for n in rows],
        [n.at for n in rows],
        [n.resolver for n in rows],
    )
    return len(written)


async def through_resolver(conn: Conn, since: datetime) -> frozenset[str]:
    """The countries whose rounds since `since` asked the lists through the resolver mail DNS
    and reverse DNS ask (`Reputation.resolver` "dns"): its canaries vouch for the lists there."""
    rows = await conn.fetch(
        "SELECT DISTINCT country FROM blocklist_names WHERE seen_at >= $1 AND resolver = 'dns'",
        since,
    )
    return frozenset(r["country"] for r in rows)


async def organizations_asking(conn: Conn, country: str, since: datetime) -> list[int]:
    """The organizations whose monitors' rounds asked the lists in `country` since `since`."""
    rows = await conn.fetch(
        "SELECT DISTINCT m.organization_id FROM blocklist_names n"
        " JOIN monitors m ON m.id = n.monitor_id"
        " WHERE n.country = $1 AND n.seen_at >= $2 ORDER BY m.organization_id",
        country,
        since,
    )
    return [r["organization_id"] for r in rows]


_encode = msgspec.json.Encoder().encode


def _tests(facts: Reputation) -> dict[str, dict[str, list[str]]]:
    """Zone → its test entries' real answers in this round (`rules.TEST_NAMES`), for the zones
    that had both answered: what vouches for the round's other answers on that list."""
    by_zone: dict[str, dict[str, list[str]]] = {}
    for a in facts.answers:
        if a.a is not None and a.name in TEST_NAMES:
            by_zone.setdefault(a.zone, {})[a.name] = a.a
    return {zone: tests for zone, tests in by_zone.items() if len(tests) >= 2}


async def fresh(conn: Conn, since: datetime, lists: Collection[BlockList]) -> dict[str, Fresh]:
    """Per country, what each list answered since `since` (`Fresh.on`: the names it answered
    beside its test entries; one answered without them is asked again, to be vouched for) and
    the lists dead there (`Fresh.dead`: a lookup failed since `since`, after their last real
    answer)."""
    zones = [b.zone for b in lists]
    rows = await conn.fetch(
        "SELECT country, zone, array_agg(name) AS names FROM blocklist_answers"
        " WHERE answered_at >= $1 AND zone = ANY($2::text[]) AND a IS NOT NULL"
        " AND tests IS NOT NULL GROUP BY country, zone",
        since,
        zones,
    )
    dead = await conn.fetch(
        "SELECT f.country, f.zone FROM blocklist_failures f WHERE f.failed_at >= $1"
        " AND f.zone = ANY($2::text[]) AND NOT EXISTS (SELECT 1 FROM blocklist_answers a"
        "  WHERE a.zone = f.zone AND a.country = f.country AND a.a IS NOT NULL"
        "  AND a.answered_at >= f.failed_at)",
        since,
        zones,
    )
    on: dict[str, dict[str, frozenset[str]]] = {}
    for row in rows:
        on.setdefault(row["country"], {})[row["zone"]] = frozenset(row["names"])
    gone: dict[str, set[str]] = {}
    for row in dead:
        gone.setdefault(row["country"], set()).add(row["zone"])
    return {cc: Fresh(on.get(cc, {}), frozenset(gone.get(cc, ()))) for cc in sorted({*on, *gone})}


class Answer(NamedTuple):
    zone: str
    name: str
    country: str
    a: list[str] | None
    txt: str | None
    error: str
    answered_at: datetime
    # The list's test entries' answers of the same round (None: not both answered then).
    tests: dict[str, list[str]] | None = None


async def answers(conn: Conn, names: Collection[str], since: datetime) -> list[Answer]:
    """The answers about `names` given since `since`, every list and country."""
    rows = await conn.fetch(
        "SELECT zone, name, country, a, txt, error, answered_at, tests FROM blocklist_answers"
        " WHERE name = ANY($1::text[]) AND answered_at >= $2",
        list(names),
        since,
    )
    return [Answer(**dict(r)) for r in rows]


class Watched(NamedTuple):
    monitor_id: int
    names: dict[str, dict[str, str]]  # country → name → where it came from
    seen_at: dict[str, datetime] = {}  # country → when its last round there asked the lists


async def watched(conn: Conn, since: datetime) -> list[Watched]:
    """Monitors with names seen since `since`, in monitor_id order."""
    rows = await conn.fetch(
        "SELECT monitor_id, jsonb_object_agg(country, names) AS names,"
        " array_agg(country) AS countries, array_agg(seen_at) AS seen FROM blocklist_names"
        " WHERE seen_at >= $1 GROUP BY monitor_id ORDER BY monitor_id",
        since,
    )
    return [
        Watched(r["monitor_id"], r["names"], dict(zip(r["countries"], r["seen"], strict=True)))
        for r in rows
    ]


async def open_listings(
    conn: Conn, monitor_id: int, *, lock: bool = True
) -> dict[tuple[str, str], Listing]:
    """The monitor's open listings; `lock`: held for the watch's update (pages and the API read
    them without)."""
    rows = await conn.fetch(
        "SELECT zone, name, since, countries, reason, raised_at FROM blocklist_listings"
        " WHERE monitor_id = $1 AND cleared_at IS NULL" + (" FOR UPDATE" if lock else ""),
        monitor_id,
    )
    return {
        (r["zone"], r["name"]): Listing(
            r["zone"],
            r["name"],
            r["since"],
            frozenset(r["countries"]),
            r["raised_at"] is not None,
            r["reason"],
        )
        for r in rows
    }


async def held_elsewhere(conn: Conn, monitor_id: int, zone: str, name: str) -> list[int]:
    """The other monitors of the monitor's customer holding the same listing raised and open
    (the same fact: one notice, counted once), by id."""
    rows = await conn.fetch(
        "SELECT l.monitor_id FROM blocklist_listings l JOIN monitors m ON m.id = l.monitor_id"
        " WHERE m.customer_id = (SELECT customer_id FROM monitors WHERE id = $1)"
        " AND l.monitor_id <> $1 AND l.zone = $2 AND l.name = $3"
        " AND l.cleared_at IS NULL AND l.raised_at IS NOT NULL ORDER BY l.monitor_id",
        monitor_id,
        zone,
        name,
    )
    return [r["monitor_id"] for r in rows]


async def first_raised(conn: Conn, monitor_id: int, zone: str, name: str) -> datetime | None:
    """When the listing the monitor's customer holds raised and open (the monitor's own
    included) was first raised by one of them: what names the fact's raise."""
    at: datetime | None = await conn.fetchval(
        "SELECT min(l.raised_at) FROM blocklist_listings l JOIN monitors m ON m.id = l.monitor_id"
        " WHERE m.customer_id = (SELECT customer_id FROM monitors WHERE id = $1)"
        " AND l.zone = $2 AND l.name = $3 AND l.cleared_at IS NULL AND l.raised_at IS NOT NULL",
        monitor_id,
        zone,
        name,
    )
    return at


class Episode(msgspec.Struct, frozen=True):
    """A listing's episode among a customer's monitors: its raised listings of one (list,
    name) that overlap one another in time, chained; when the first of them was raised, and the
    monitors that held one."""

    first_raised: datetime
    holders: list[int]


async def episode(conn: Conn, monitor_id: int, zone: str, name: str) -> Episode | None:
    """The episode of the monitor's latest raised listing of (`zone`, `name`): the customer's
    raised listings of it chained by overlap (one of them raised before another cleared);
    None when the monitor never raised it."""
    row = await conn.fetchrow(
        "WITH RECURSIVE l AS ("
        "  SELECT b.id, b.monitor_id, b.raised_at, coalesce(b.cleared_at, 'infinity') AS until"
        "  FROM blocklist_listings b JOIN monitors m ON m.id = b.monitor_id"
        "  WHERE m.customer_id = (SELECT customer_id FROM monitors WHERE id = $1)"
        "  AND b.zone = $2 AND b.name = $3 AND b.raised_at IS NOT NULL),"
        " ep AS ((SELECT * FROM l WHERE l.monitor_id = $1 ORDER BY l.until DESC LIMIT 1)"
        "  UNION SELECT l.* FROM l JOIN ep ON l.raised_at <= ep.until AND l.until >= ep.raised_at)"
        " SELECT min(raised_at) AS first_raised,"
        "  array_agg(DISTINCT monitor_id ORDER BY monitor_id) AS holders FROM ep",
        monitor_id,
        zone,
        name,
    )
    if row is None or row["first_raised"] is None:
        return None
    return Episode(row["first_raised"], list(row["holders"]))


async def save_listing(
    conn: Conn, monitor_id: int, before: Listing | None, after: Listing | None, at: datetime
) -> None:
    """`before` → `after` for one (list, name): opened, moved, raised or cleared."""
    if after is None:
        if before is None:
            raise BrokenInvariant("store.save_listing: before is unset")
        await conn.execute(
            "UPDATE blocklist_listings SET cleared_at = $4 WHERE monitor_id = $1 AND zone = $2"
            " AND name = $3 AND cleared_at IS NULL",
            monitor_id,
            before.zone,
            before.name,
            at,
        )
        return
    await conn.execute(
        "INSERT INTO blocklist_listings (monitor_id, zone, name, since, countries, reason,"
        " raised_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (monitor_id, zone, name) WHERE cleared_at IS NULL DO UPDATE"
        " SET countries = EXCLUDED.countries, reason = EXCLUDED.reason,"
        " raised_at = coalesce(blocklist_listings.raised_at, EXCLUDED.raised_at)",
        monitor_id,
        after.zone,
        after.name,
        after.since,
        sorted(after.countries),
        after.reason,
        at if after.raised else None,
    )


class ListingEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A listing of one of a monitor's names on one list, open while `cleared_at` is None;
    `raised_at`: when it became a finding (None: not yet)."""

    zone: str
    name: str
    since: datetime
    countries: list[str]
    reason: str
    raised_at: datetime | None
    cleared_at: datetime | None


class RaisedListing(msgspec.Struct, frozen=True, kw_only=True):
    """An open listing raised as a finding, with what names its monitor."""

    public_id: UUID
    monitor_name: str
    type: str
    hostname: str
    port: int | None
    zone: str
    name: str
    since: datetime
    countries: list[str]
    reason: str
    raised_at: datetime
    customer_id: int  # a listing several monitors of a customer hold is one fact


async def listings(conn: Conn, monitor_id: int, limit: int = 200) -> list[ListingEntry]:
    """A monitor's listings, open ones first, then the newest."""
    rows = await conn.fetch(
        "SELECT zone, name, since, countries, reason, raised_at, cleared_at"
        " FROM blocklist_listings WHERE monitor_id = $1"
        " ORDER BY cleared_at IS NOT NULL, since DESC LIMIT $2",
        monitor_id,
        limit,
    )
    return typed.many(ListingEntry, rows)


class OwnRound(NamedTuple):
    """A monitor's last round that asked the lists in one country: the names it met, its
    failed lookups (name → zone → why), when it ran."""

    names: dict[str, str]
    errors: dict[str, dict[str, str]]
    seen_at: datetime


async def own_rounds(conn: Conn, monitor_id: int) -> dict[str, OwnRound]:
    """Country → the monitor's last round that asked the lists there."""
    rows = await conn.fetch(
        "SELECT country, names, errors, seen_at FROM blocklist_names WHERE monitor_id = $1",
        monitor_id,
    )
    return {r["country"]: OwnRound(r["names"], r["errors"], r["seen_at"]) for r in rows}


class Failure(NamedTuple):
    error: str
    failed_at: datetime


async def failures(conn: Conn, since: datetime) -> dict[tuple[str, str], Failure]:
    """(zone, country) → the list's latest failed lookup there since `since`."""
    rows = await conn.fetch(
        "SELECT zone, country, error, failed_at FROM blocklist_failures WHERE failed_at >= $1",
        since,
    )
    return {(r["zone"], r["country"]): Failure(r["error"], r["failed_at"]) for r in rows}


async def alert_state(conn: Conn, monitor_id: int) -> str:
    """The monitor's alert state now (a blocklist event says it as posture events do)."""
    state = await conn.fetchval(
        "SELECT state FROM monitor_alert_state WHERE monitor_id = $1", monitor_id
    )
    return str(state or "unknown")


async def raised_open(
    conn: Conn, organization_id: int | None, monitor_id: int | None, limit: int
) -> list[RaisedListing]:
    """The raised listings still open (the `blocklisted` findings) of one monitor, or of the
    organization's monitors (every organization's: None), with what names the monitor."""
    rows = await conn.fetch(
        "SELECT m.public_id, m.name AS monitor_name, m.type, m.hostname, m.port, l.zone,"
        " l.name, l.since, l.countries, l.reason, l.raised_at, m.customer_id"
        " FROM blocklist_listings l JOIN monitors m ON m.id = l.monitor_id"
        " WHERE l.cleared_at IS NULL AND l.raised_at IS NOT NULL"
        " AND ($1::bigint IS NULL OR m.organization_id = $1)"
        " AND ($2::bigint IS NULL OR m.id = $2)"
        " ORDER BY lower(m.name), m.public_id, l.zone, l.name LIMIT $3",
        organization_id,
        monitor_id,
        limit,
    )
    return typed.many(RaisedListing, rows)


async def raised_by_zone(conn: Conn) -> dict[str, int]:
    """The raised listings still open, per list's zone (the world gauges)."""
    rows = await conn.fetch(
        "SELECT zone, count(*) AS n FROM blocklist_listings"
        " WHERE cleared_at IS NULL AND raised_at IS NOT NULL GROUP BY zone"
    )
    return {r["zone"]: r["n"] for r in rows}
