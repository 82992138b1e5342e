"""The text of `/metrics/monitors` (Prometheus text format 0.0.4), written straight from the rows
of `scrape_store`, family by family, in chunks: a scrape of 100,000 monitors is millions of
lines, which prometheus_client's collector objects would take seconds to build and hold whole.

Identifiers are labels and values are numbers, as Prometheus has it: every per-monitor series
carries the monitor's public id (`monitor`) and, per country, `country`; the free-text name,
kind and customer are in `mailprobe_monitor_info` only, so a rename starts no new series of the
others (join them with `* on (monitor) group_left (name) mailprobe_monitor_info`). Times are
Unix timestamps in seconds, durations seconds. Never a hostname, a message or an error text.
"""

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from controller.jobs.result_kinds import INCONCLUSIVE, UNCOUNTED
from controller.web.console.scrape_store import PHASES, ScrapeLatest, ScrapeMonitor
from controller.web.console.store import STATES, state_from_rows

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LINES_PER_CHUNK = 20_000


@dataclass(frozen=True)
class Family:
    name: str
    help: str


INFO = Family(
    "mailprobe_monitor_info",
    "Always 1: the monitor's name, kind and customer (join on `monitor`)",
)
STATE = Family(
    "mailprobe_monitor_state",
    "1 for the monitor's current state (up, degraded, down, missed, unknown), 0 for the others",
)
UP = Family("mailprobe_check_up", "Latest check: 1 up, 0 down (absent when missed or inconclusive)")
MISSED = Family("mailprobe_check_missed", "1 when the latest round ran nowhere")
INCONCLUSIVE_F = Family(
    "mailprobe_check_inconclusive",
    "1 when the latest check was inconclusive (the agent's own path failed its self-check)",
)
RESPONSE = Family("mailprobe_check_response_seconds", "Latest check's response time")
PHASE = Family(
    "mailprobe_check_phase_seconds",
    "Latest check's phases: dns, connect, tls, greeting, auth; a round trip's submit, delivery"
    " (accepted by SMTP until seen in the mailbox) and fetch",
)
CERT_EXPIRY = Family(
    "mailprobe_tls_cert_expiry_timestamp_seconds",
    "When the certificate the latest check saw expires (Unix time)",
)
SCHEDULED = Family(
    "mailprobe_check_scheduled_timestamp_seconds", "When the latest round was due (Unix time)"
)
FAMILIES = (INFO, STATE, UP, MISSED, INCONCLUSIVE_F, RESPONSE, PHASE, CERT_EXPIRY, SCHEDULED)


def escape(value: str) -> str:
    """A label value as the text format quotes it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def expiry(not_after: str | None) -> float | None:
    """An agent's `certNotAfter` (ISO 8601) as Unix time; None when absent or unreadable."""
    if not not_after:
        return None
    try:
        at = datetime.fromisoformat(not_after)
    except ValueError:
        return None
    stamp = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    return stamp if math.isfinite(stamp) else None


def _state_block(now: str) -> str:
    """The state family's lines of a monitor in state `now`, its id left as `{0}`."""
    return "".join(
        f'{STATE.name}{{{{monitor="{{0}}",state="{s}"}}}} {1 if s == now else 0}\n' for s in STATES
    )


def _header(family: Family) -> str:
    return f"# HELP {family.name} {family.help}\n# TYPE {family.name} gauge\n"


def _family(family: Family, lines: list[str]) -> Iterator[bytes]:
    """The family's header, then its lines, LINES_PER_CHUNK at a time."""
    head = _header(family)
    for start in range(0, max(len(lines), 1), LINES_PER_CHUNK):
        yield (head + "".join(lines[start : start + LINES_PER_CHUNK])).encode()
        head = ""


def encode(
    monitors: Sequence[ScrapeMonitor], latest: Sequence[ScrapeLatest], *, phases: bool
) -> Iterator[bytes]:
    """The series of `scrape_store.monitors` and `scrape_store.latest` rows, in chunks; each
    family's lines are made by one comprehension over a column (the cost is per line). The
    phases family only when asked (`latest` then has the phases)."""
    ids = [r.monitor for r in monitors]
    yield from _family(
        INFO,
        [
            f'{INFO.name}{{monitor="{m}",name="{escape(r.name)}",kind="{escape(r.type)}",'
            f'customer="{escape(r.customer)}"}} 1\n'
            for m, r in zip(ids, monitors, strict=True)
        ],
    )
    statuses: dict[str, list[str]] = {}
    for r in latest:
        statuses.setdefault(r.monitor, []).append(r.last_status)
    states = [
        state_from_rows(r.judged, statuses.get(m, [])) for m, r in zip(ids, monitors, strict=True)
    ]
    # per shown state, a monitor's lines of the family: one format call per monitor
    blocks: dict[str, str] = {}
    yield from _family(
        STATE,
        [
            (blocks.get(now) or blocks.setdefault(now, _state_block(now))).format(m)
            for m, now in zip(ids, states, strict=True)
        ],
    )
    del ids, states, statuses
    quoted = {cc: escape(cc) for cc in {r.country for r in latest}}
    keys = [f'monitor="{r.monitor}",country="{quoted[r.country]}"' for r in latest]
    status = [r.last_status for r in latest]

    def series(family: Family, values: Iterable[object]) -> Iterator[bytes]:
        name = family.name
        return _family(
            family,
            [f"{name}{{{k}}} {v}\n" for k, v in zip(keys, values, strict=True) if v is not None],
        )

    yield from series(UP, (None if s in UNCOUNTED else 1 if s == "up" else 0 for s in status))
    yield from series(MISSED, (1 if s == "missed" else 0 for s in status))
    yield from series(INCONCLUSIVE_F, (1 if s == INCONCLUSIVE else 0 for s in status))
    yield from series(
        RESPONSE,
        (None if (ms := r.response_time_ms) is None else _seconds_text(ms) for r in latest),
    )
    if phases:
        name = PHASE.name
        # per phase, its label pair after the row's key, written once
        tails = [f',phase="{p}"}} ' for p in PHASES]
        yield from _family(
            PHASE,
            [
                f"{name}{{{k}{tail}{_seconds_text(ms)}\n"
                for k, r in zip(keys, latest, strict=True)
                if (measured := r.phases) is not None
                for tail, ms in zip(tails, measured, strict=True)
                if ms is not None
            ],
        )
    expiries: dict[str | None, float | None] = {}
    yield from series(
        CERT_EXPIRY,
        (
            expiries[t] if (t := r.not_after) in expiries else expiries.setdefault(t, expiry(t))
            for r in latest
        ),
    )
    yield from series(SCHEDULED, (r.due for r in latest))


def _seconds(ms: float) -> float:
    """Milliseconds as seconds, to the microsecond the results keep: `0.001793`, not the
    `0.0017929999999999999` a bare division can print."""
    return round(ms / 1000, 6)


def _seconds_text(ms: float) -> str:
    """`str(_seconds(ms))`, at a tenth of its cost: `round(x, 6)` and `f"{x:.6f}"` round alike
    (correctly, from the binary value), and from 1e-4 to 1e9 seconds the six decimals have at
    most 15 significant digits, so the shortest text that reads back as the same float (what
    `str` prints) is those digits without trailing zeros. Outside that range (where `str`
    may use an exponent or need more digits) it is `str(_seconds(ms))` itself."""
    s = ms / 1000
    if not 1e-4 <= s < 1e9 and not -1e9 < s <= -1e-4:
        return str(round(s, 6))
    text = f"{s:.6f}".rstrip("0")
    return text + "0" if text[-1] == "." else text
