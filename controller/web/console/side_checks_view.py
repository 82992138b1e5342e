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


@dataclass
class SideRow:
    name: str
    title: str
    open: int  # its findings open on the monitor
    section: str | None  # the page's section that shows it, else the answers below
    # (country, latest answer, why it could not read all it was asked: "" for nothing)
    seen: list[tuple[str, datetime, str]] = field(default_factory=list)


async def side_checks(conn: Conn, monitor: Monitor, open_codes: Iterable[str]) -> list[SideRow]:
    codes = list(open_codes)
    rows = {
        name: SideRow(name, c.title, sum(code in c.codes for code in codes), c.console)
        for name, c in SIDE_CHECKS.items()
        if c.watched(monitor)
    }
    for latest in await facts_store.latest(conn, monitor.id):
        if latest.name in rows:
            rows[latest.name].seen.append((latest.country, latest.at, latest.error))
    return list(rows.values())
