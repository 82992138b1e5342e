"""The reports' part of the world gauges (`frame.WorldGauges`): the TLS-RPT and DMARC reports
received within a day, and the messages they count per result (at most RESULTS_MAX results per
kind, so labels stay bounded)."""

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from prometheus_client import Gauge

from controller.db.pool import Conn
from controller.sidechecks.frame import WorldGauges
from controller.sidechecks.reports import world_store as db

RESULTS_MAX: Final = 20
RESULT_CHARS_MAX: Final = 64

REPORTS_DAY = Gauge(
    "mailprobe_reports_received_day",
    "TLS-RPT and DMARC reports stored within the last 24 h, per kind",
    ["kind"],
)
REPORT_MESSAGES_DAY = Gauge(
    "mailprobe_report_messages_day",
    "messages (DMARC) or sessions (TLS-RPT) reported for yesterday and today (UTC), per kind"
    " and result",
    ["kind", "result"],
)


async def _show(conn: Conn, since: datetime) -> Mapping[tuple[str, str], float]:
    for kind, n in (await db.received(conn, since)).items():
        REPORTS_DAY.labels(kind).set(n)
    kept: dict[str, int] = {}
    for kind, result, n in await db.messages(conn, since):
        if kept.get(kind, 0) >= RESULTS_MAX:
            continue
        kept[kind] = kept.get(kind, 0) + 1
        REPORT_MESSAGES_DAY.labels(kind, result[:RESULT_CHARS_MAX]).set(float(n))
    return {}


def _clear() -> None:
    REPORTS_DAY.clear()
    REPORT_MESSAGES_DAY.clear()


GAUGES: Final = WorldGauges(_show, _clear)
