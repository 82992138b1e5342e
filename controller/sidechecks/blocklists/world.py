"""The blocklists' part of the world gauges (`frame.WorldGauges`): the raised listings still
open per list and its listings' severity, and their sum per severity as the open `blocklisted`
findings."""

from collections.abc import Iterable, Mapping
from datetime import datetime

from prometheus_client import Gauge

from controller.db.pool import Conn
from controller.sidechecks.blocklists import store as db
from controller.sidechecks.blocklists.rules import BlockList, severity
from controller.sidechecks.frame import WorldGauges

LISTINGS = Gauge(
    "mailprobe_blocklist_listings_open",
    "raised blocklist listings still open, per list and its listings' severity",
    ["list", "severity"],
)


def gauges(lists: Iterable[BlockList]) -> WorldGauges:
    """The gauges for the operator's `lists` (BLOCKLISTS: each list's severity); a list no
    longer configured counts as `warning`."""
    severities = {b.zone: severity(b) for b in lists}

    async def show(conn: Conn, since: datetime) -> Mapping[tuple[str, str], float]:
        blocklisted: dict[tuple[str, str], float] = {}
        for zone, n in (await db.raised_by_zone(conn)).items():
            sev = severities.get(zone, "warning")
            LISTINGS.labels(zone, sev).set(n)
            blocklisted[("blocklisted", sev)] = blocklisted.get(("blocklisted", sev), 0) + n
        return blocklisted

    return WorldGauges(show, LISTINGS.clear)
