"""The text of `/metrics/reports` (Prometheus text format 0.0.4): what the reports about an
organization's monitored domains counted over its report window, per domain, kind and result,
and how its report mailbox's last read went (both absent before its first read).

The label set is bounded per organization: `domain` one of the domains its monitors name,
`kind` `tls` or `dmarc`, `result` `success` or one of RFC 8460's result types (any other a
reporter invents is `other`) for TLS, `pass` or `fail` for DMARC. Never a reporter's name,
an address or an error text.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.reports.parse import TLS_RESULT_TYPES
from controller.reports.store import DomainTotal
from controller.web.console.scrape_series import Family, escape

RESULTS = {"tls": frozenset({"success", *TLS_RESULT_TYPES}), "dmarc": frozenset({"pass", "fail"})}

COUNT = Family(
    "mailprobe_report_results",
    "Sessions (TLS-RPT) or messages (DMARC) reported for the domain over the organization's"
    " report window, by result",
)
NEWEST = Family(
    "mailprobe_report_newest_timestamp_seconds",
    "When the range of the newest report of the kind about the domain ended (Unix time)",
)
WINDOW = Family("mailprobe_report_window_days", "The organization's report window, in days")
MAILBOX_READ = Family(
    "mailprobe_report_mailbox_last_read_timestamp_seconds",
    "When the report mailbox was last read (Unix time)",
)
MAILBOX_UP = Family(
    "mailprobe_report_mailbox_up", "1 when the report mailbox's last read succeeded, else 0"
)


@dataclass(frozen=True)
class Mailbox:
    last_read_at: datetime | None
    failed: bool


def result_label(kind: str, result: str) -> str:
    """A stored result as the series label it is counted under."""
    return result if result in RESULTS.get(kind, frozenset()) else "other"


def _lines(family: Family, lines: Sequence[str]) -> str:
    return f"# HELP {family.name} {family.help}\n# TYPE {family.name} gauge\n" + "".join(lines)


def encode(
    rows: Sequence[DomainTotal], window_days: int, mailbox: Mailbox | None
) -> Iterator[bytes]:
    """`store.scrape_totals` rows (per domain, kind and result) as the families' text."""
    counts: dict[tuple[str, str, str], int] = {}
    newest: dict[tuple[str, str], float] = {}
    for r in rows:
        key = (r.domain, r.kind, result_label(r.kind, r.result))
        counts[key] = counts.get(key, 0) + r.n
        newest[(r.domain, r.kind)] = r.newest.timestamp()
    yield _lines(
        COUNT,
        [
            f'{COUNT.name}{{domain="{escape(d)}",kind="{k}",result="{res}"}} {n}\n'
            for (d, k, res), n in counts.items()
        ],
    ).encode()
    yield _lines(
        NEWEST,
        [f'{NEWEST.name}{{domain="{escape(d)}",kind="{k}"}} {t}\n' for (d, k), t in newest.items()],
    ).encode()
    yield _lines(WINDOW, [f"{WINDOW.name} {window_days}\n"]).encode()
    if mailbox is not None and mailbox.last_read_at is not None:
        read = f"{MAILBOX_READ.name} {mailbox.last_read_at.timestamp()}\n"
        yield _lines(MAILBOX_READ, [read]).encode()
        yield _lines(MAILBOX_UP, [f"{MAILBOX_UP.name} {0 if mailbox.failed else 1}\n"]).encode()
