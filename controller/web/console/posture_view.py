"""What the console shows of security posture: a monitor's findings (open ones with the
countries that see them, then their history and the changes every country saw alike), and the
rows of the organization's findings page (controller.web.console.findings). A finding several
countries see is one row naming them, as its notice names them."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from controller.db.pool import Conn
from controller.monitors.thresholds import SEVERITIES
from controller.posture import store as db
from controller.posture.notices import title
from controller.posture.rules import CODES
from controller.posture.store import ListedFinding, OpenFinding
from controller.sidechecks.blocklists import rules as lists_rules
from controller.sidechecks.blocklists import store as reputation
from controller.sidechecks.blocklists.rules import BlockList
from controller.sidechecks.blocklists.store import RaisedListing
from controller.sidechecks.findings import DOMAIN_FACTS

HISTORY = 50  # findings (open and cleared) and changes read for a monitor's page


class MonitorNames(msgspec.Struct, frozen=True):
    """What names a monitor on the organization's findings page."""

    public_id: UUID
    name: str
    type: str
    hostname: str
    port: int | None


@dataclass
class Row:
    """One finding code on one monitor: the countries that see it now (or saw it)."""

    code: str
    severity: str
    countries: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    since: datetime | None = None
    last_seen: datetime | None = None
    monitor: MonitorNames | None = None  # the organization's page
    # The organization's page: the other monitors showing the same fact (a mail domain's
    # finding, a listing of a name they share), counted once.
    others: list[MonitorNames] = field(default_factory=list)
    said: str = ""  # a finding's own advice (a listing's delisting page), else its code's

    @property
    def title(self) -> str:
        return title(self.code)

    @property
    def advice(self) -> str:
        return self.said or (CODES[self.code][1] if self.code in CODES else "")

    @property
    def where(self) -> str:
        return ", ".join(self.countries) if self.countries else "every country"


def grouped(rows: Sequence[ListedFinding | OpenFinding]) -> list[Row]:
    """Open findings → one `Row` per code (per monitor and code, for the organization's
    `OpenFinding`s; a fact of a mail domain per customer, domain and code, naming every monitor
    showing it), in their order."""
    out: dict[tuple[object, ...], Row] = {}
    for r in rows:
        key: tuple[object, ...] = (None, r.code)
        if isinstance(r, OpenFinding):
            fact = r.code in DOMAIN_FACTS and r.mail_domain is not None
            key = (
                ("domain", r.customer_id, r.mail_domain, r.code) if fact else (r.public_id, r.code)
            )
        row = out.get(key)
        if row is None:
            row = out[key] = Row(r.code, r.severity)
        if isinstance(r, OpenFinding):
            names = MonitorNames(r.public_id, r.name, r.type, r.hostname, r.port)
            if row.monitor is None:
                row.monitor = names
            elif names != row.monitor and names not in row.others:
                row.others.append(names)
        if r.country:
            row.countries.append(r.country)
        if r.detail not in row.details:
            row.details.append(r.detail)
        if row.since is None or r.appeared_at < row.since:
            row.since = r.appeared_at
        if row.last_seen is None or r.last_seen_at > row.last_seen:
            row.last_seen = r.last_seen_at
    for row in out.values():
        row.countries.sort()
    return list(out.values())


def listing_rows(
    listings: list[RaisedListing], lists: tuple[BlockList, ...], by_monitor: bool = False
) -> list[Row]:
    """Raised open listings (`reputation.store.raised_open`) as `blocklisted` findings, one row
    each: the list's severity (an operator's list no longer configured: `warning`), the
    countries that see it, why, and where to ask for delisting; `by_monitor` (the
    organization's page) names its monitor, a listing several monitors of a customer hold one
    row naming them all."""
    known = {b.zone: b for b in lists}
    out = []
    shared: dict[tuple[int, str, str], Row] = {}
    for r in listings:
        held = shared.get((r.customer_id, r.zone, r.name)) if by_monitor else None
        if held is not None:  # another monitor of the customer holds the same listing
            held.others.append(
                MonitorNames(r.public_id, r.monitor_name, r.type, r.hostname, r.port)
            )
            continue
        b = known.get(r.zone)
        label = b.label if b else r.zone
        page = b.delisting(r.name) if b else ""
        row = Row(
            "blocklisted",
            lists_rules.severity(b) if b else "warning",
            sorted(r.countries),
            [f"{r.name} on {label} ({r.zone}): {r.reason or 'listed'}"],
            r.since,
            r.raised_at,
            said=f"Find why {r.name} was listed, fix it, then ask {label} to delist it"
            + (f": {page}" if page else "."),
        )
        if by_monitor:
            row.monitor = MonitorNames(r.public_id, r.monitor_name, r.type, r.hostname, r.port)
            shared[(r.customer_id, r.zone, r.name)] = row
        out.append(row)
    return out


def worst_first(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda f: SEVERITIES.index(f.severity))


async def listing_counts(
    conn: Conn, organization_id: int | None, lists: tuple[BlockList, ...], limit: int
) -> dict[str, int]:
    """The raised open listings of the organization by severity, a listing several monitors
    of a customer hold counted once."""
    raised = await reputation.raised_open(conn, organization_id, None, limit)
    counts: dict[str, int] = {}
    for row in listing_rows(raised, lists, by_monitor=True):
        counts[row.severity] = counts.get(row.severity, 0) + 1
    return counts


async def monitor_posture(
    conn: Conn, monitor_id: int, lists: tuple[BlockList, ...] = ()
) -> dict[str, Any]:
    """The monitor page's posture: open findings grouped by code (its raised blocklist
    listings one row each), worst first; the history of findings (cleared ones, newest
    first); the changes seen everywhere."""
    rows = await db.findings_page(conn, monitor_id, HISTORY)
    still = [r for r in rows if r.cleared_at is None]
    listed = listing_rows(await reputation.raised_open(conn, None, monitor_id, HISTORY), lists)
    return {
        "open_findings": worst_first(grouped(still) + listed),
        "past_findings": [r for r in rows if r.cleared_at is not None],
        "posture_changes": await db.changes_page(conn, monitor_id, 10),
        "title": title,
    }
