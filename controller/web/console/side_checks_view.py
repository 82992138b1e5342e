"""The monitor page's side checks: each registered side check that watches the monitor
(controller.sidechecks.registry), its open findings, and when each country last answered it
(those that keep rows of facts) or where its own section is (the blocklists, the reports).
Generated from the registry: a side check added there is on the page without a line here."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from controller.db.pool import Conn
from controller.monitors.store import Monitor
from controller.sidechecks import facts_store
from controller.sidechecks.registry import SIDE_CHECKS
from controller.web.console.oracles_view import NotBelieved


@dataclass
class SideRow:
    name: str
    title: str
    open: int  # its findings open on the monitor
    section: str | None  # the page's section that shows it, else the answers below
    # the countries whose answers of it are not believed now (their resolver failed its canaries)
    not_believed: list[str] = field(default_factory=list)
    # (country, latest answer, why it could not read all it was asked: "" for nothing)
    seen: list[tuple[str, datetime, str]] = field(default_factory=list)


async def side_checks(
    conn: Conn,
    monitor: Monitor,
    open_codes: Iterable[str],
    dark: Iterable[NotBelieved] = (),
) -> list[SideRow]:
    """`dark`: the monitor's countries whose resolver is not believed: the side checks it
    vouches for (those whose facts carry canaries, and the blocklists where they are asked
    through it) are "not believed" there, never "0 open findings"."""
    codes = list(open_codes)
    rows = {
        name: SideRow(name, c.title, sum(code in c.codes for code in codes), c.console)
        for name, c in SIDE_CHECKS.items()
        if c.watched(monitor)
    }
    for row in rows.values():
        vouched = SIDE_CHECKS[row.name].canaries is not None
        row.not_believed = [
            n.country for n in dark if vouched or (row.name == "blocklists" and n.lists)
        ]
    for latest in await facts_store.latest(conn, monitor.id):
        if latest.name in rows:
            rows[latest.name].seen.append((latest.country, latest.at, latest.error))
    return list(rows.values())
