"""Posture storage: the per-monitor cursor and drift streaks, per-country baselines, findings
with their history, changes seen everywhere, and certificate expiry notices sent. jsonb values
go in and come out as Python values (the pool's codec)."""

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import msgspec

from controller.db import rows as typed
from controller.db.pool import Conn
from controller.jobs.result_kinds import scheduled_since
from controller.monitors.store import COLUMNS as MONITOR_COLUMNS
from controller.monitors.store import Monitor
from controller.monitors.store import decode as decode_monitor
from controller.posture.facts import COLUMNS, StoredFacts
from controller.posture.rules import Baseline, Change, Finding, Key
from controller.sidechecks.facts_store import side_of
from controller.sidechecks.findings import DOMAIN_FACTS
from shared.guards import BrokenInvariant

# StoredFacts' columns of `check_results`, with each result's side facts.
FACT_SELECT = ", ".join(side_of("job_id") + " AS side" if c == "side" else c for c in COLUMNS)


async def state(conn: Conn, monitor_id: int) -> tuple[datetime | None, dict[Key, int]]:
    """The last round read (None: none yet) and the drift streaks; the row is locked (the
    alerter's evaluation of the monitor holds its own lock already, this keeps it so)."""
    row = await conn.fetchrow(
        "SELECT last_round_at, streaks FROM posture_state WHERE monitor_id = $1 FOR UPDATE",
        monitor_id,
    )
    if row is None:
        return None, {}
    streaks: dict[str, int] = row["streaks"]
    return row["last_round_at"], {_key(k): int(v) for k, v in streaks.items()}


class Known(NamedTuple):
    """What a posture pass starts from, read in one statement (`known`)."""

    last_round_at: datetime | None  # None: no round read yet
    streaks: dict[Key, int]
    open: dict[Key, Finding]
    baselines: dict[str, Baseline]


_KNOWN = """
WITH p AS (
    SELECT last_round_at, streaks FROM posture_state WHERE monitor_id = $1 FOR UPDATE
)
SELECT (SELECT last_round_at FROM p) AS last_round_at, (SELECT streaks FROM p) AS streaks,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(f.code, f.country, f.detail)), '[]'::jsonb)
        FROM posture_findings f WHERE f.monitor_id = $1 AND f.cleared_at IS NULL) AS open,
    (SELECT coalesce(jsonb_object_agg(b.country, b.facts), '{}'::jsonb)
        FROM posture_baselines b WHERE b.monitor_id = $1) AS baselines
"""


async def known(conn: Conn, monitor_id: int) -> Known:
    """`state`, `open_findings` and `baselines` in one round trip (the alerter's evaluation
    reads them for every monitor); the state row is locked as `state` locks it."""
    row = await conn.fetchrow(_KNOWN, monitor_id)
    if row is None:
        raise BrokenInvariant("store.known: the statement returned no row")
    streaks: dict[str, int] = row["streaks"] or {}
    open_: list[list[str]] = row["open"]
    stored: dict[str, Baseline] = row["baselines"]
    return Known(
        row["last_round_at"],
        {_key(k): int(v) for k, v in streaks.items()},
        {(code, cc): Finding(code, cc, detail) for code, cc, detail in open_},
        {cc: dict(facts) for cc, facts in stored.items()},
    )


class KnownBatch(NamedTuple):
    """`Known` of one monitor of a batch, with the expiry thresholds told per certificate."""

    known: Known
    expiry_sent: dict[str, set[int]]


# `_KNOWN` for a batch: the posture_state rows locked in monitor_id order (after the alert
# state rows the caller holds, as every evaluation takes them).
_KNOWN_BATCH = """
WITH p AS (
    SELECT monitor_id, last_round_at, streaks FROM posture_state
    WHERE monitor_id = ANY($1::bigint[]) ORDER BY monitor_id FOR UPDATE
)
SELECT u.id, p.last_round_at, p.streaks,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(f.code, f.country, f.detail)), '[]'::jsonb)
        FROM posture_findings f WHERE f.monitor_id = u.id AND f.cleared_at IS NULL) AS open,
    (SELECT coalesce(jsonb_object_agg(b.country, b.facts), '{}'::jsonb)
        FROM posture_baselines b WHERE b.monitor_id = u.id) AS baselines,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(c.cert_sha256, c.threshold_days)), '[]'::jsonb)
        FROM cert_expiry_notices c WHERE c.monitor_id = u.id) AS expiry_sent
FROM unnest($1::bigint[]) AS u(id) LEFT JOIN p ON p.monitor_id = u.id
"""


async def known_batch(conn: Conn, monitor_ids: Sequence[int]) -> dict[int, KnownBatch]:
    """`known` of several monitors in one statement (their posture_state rows locked in
    monitor_id order), with the expiry notices sent (`expiry_sent`) of each."""
    rows = await conn.fetch(_KNOWN_BATCH, sorted(monitor_ids))
    found: dict[int, KnownBatch] = {}
    for row in rows:
        streaks: dict[str, int] = row["streaks"] or {}
        open_: list[list[str]] = row["open"]
        stored: dict[str, Baseline] = row["baselines"]
        sent: dict[str, set[int]] = {}
        for sha, days in row["expiry_sent"]:
            sent.setdefault(sha, set()).add(int(days))
        found[row["id"]] = KnownBatch(
            Known(
                row["last_round_at"],
                {_key(k): int(v) for k, v in streaks.items()},
                {(code, cc): Finding(code, cc, detail) for code, cc, detail in open_},
                {cc: dict(facts) for cc, facts in stored.items()},
            ),
            sent,
        )
    return found


async def save_cursors(
    conn: Conn, moves: Sequence[tuple[int, datetime, dict[Key, int]]], now: datetime
) -> None:
    """`save_state` of several monitors (monitor, cursor, streaks) in one statement, at `now`."""
    if not moves:
        return
    rows = [
        {
            "monitor_id": m,
            "last_round_at": at.isoformat(),
            "streaks": {f"{code}|{cc}": n for (code, cc), n in st.items()},
        }
        for m, at, st in sorted(moves, key=lambda m: m[0])
    ]
    await conn.execute(
        "INSERT INTO posture_state (monitor_id, last_round_at, streaks)"
        " SELECT j.monitor_id, j.last_round_at, j.streaks FROM jsonb_to_recordset($1::jsonb)"
        " AS j(monitor_id bigint, last_round_at timestamptz, streaks jsonb)"
        " ON CONFLICT (monitor_id) DO UPDATE SET last_round_at = EXCLUDED.last_round_at,"
        " streaks = EXCLUDED.streaks, updated_at = $2",
        rows,
        now,
    )


def _key(text: str) -> Key:
    code, _, country = text.partition("|")
    return (code, country)


async def save_state(
    conn: Conn, monitor_id: int, last_round_at: datetime, streaks: dict[Key, int], now: datetime
) -> None:
    await conn.execute(
        "INSERT INTO posture_state (monitor_id, last_round_at, streaks, updated_at)"
        " VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (monitor_id) DO UPDATE SET last_round_at = $2, streaks = $3,"
        " updated_at = $4",
        monitor_id,
        last_round_at,
        {f"{code}|{cc}": n for (code, cc), n in streaks.items()},
        now,
    )


async def rounds_after(
    conn: Conn, monitor_id: int, after: datetime, until: datetime, limit: int
) -> list[StoredFacts]:
    """Results that ran (not missed) in (`after`, `until`], oldest round first; not the
    inconclusive ones either: what an agent with a broken path saw is no fact of the server."""
    rows = await conn.fetch(
        f"SELECT {FACT_SELECT}"
        " FROM check_results WHERE monitor_id = $1 AND scheduled_at > $2 AND scheduled_at <= $3"
        f" AND {scheduled_since('$2::timestamptz')} AND hour <= $3"
        " AND status NOT IN ('missed', 'inconclusive') ORDER BY scheduled_at, country LIMIT $4",
        monitor_id,
        after,
        until,
        limit,
    )
    return [StoredFacts(**row) for row in rows]


async def baselines(conn: Conn, monitor_id: int) -> dict[str, Baseline]:
    rows = await conn.fetch(
        "SELECT country, facts FROM posture_baselines WHERE monitor_id = $1", monitor_id
    )
    return {r["country"]: dict(r["facts"]) for r in rows}


async def save_baselines(
    conn: Conn, monitor_id: int, values: dict[str, Baseline], now: datetime
) -> None:
    await conn.executemany(
        "INSERT INTO posture_baselines (monitor_id, country, facts, updated_at)"
        " VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (monitor_id, country) DO UPDATE SET facts = $3, updated_at = $4"
        " WHERE posture_baselines.facts <> $3::jsonb",
        [(monitor_id, cc, facts, now) for cc, facts in values.items()],
    )


async def open_findings(conn: Conn, monitor_id: int) -> dict[Key, Finding]:
    rows = await conn.fetch(
        "SELECT code, country, detail FROM posture_findings"
        " WHERE monitor_id = $1 AND cleared_at IS NULL",
        monitor_id,
    )
    return {(r["code"], r["country"]): Finding(r["code"], r["country"], r["detail"]) for r in rows}


async def appear(conn: Conn, monitor_id: int, finding: Finding, at: datetime) -> int:
    """Record a finding that appeared; return its id."""
    found: int = await conn.fetchval(
        "INSERT INTO posture_findings"
        " (monitor_id, code, country, severity, detail, appeared_at, last_seen_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
        monitor_id,
        finding.code,
        finding.country,
        finding.severity,
        finding.detail,
        at,
    )
    return found


async def seen(conn: Conn, monitor_id: int, findings: Sequence[Finding], at: datetime) -> None:
    """Open findings that still hold: their latest detail and when they were last seen."""
    if not findings:
        return
    await conn.executemany(
        "UPDATE posture_findings SET detail = $4, last_seen_at = $5"
        " WHERE monitor_id = $1 AND code = $2 AND country = $3 AND cleared_at IS NULL",
        [(monitor_id, f.code, f.country, f.detail, at) for f in findings],
    )


async def clear(conn: Conn, monitor_id: int, finding: Finding, at: datetime) -> None:
    await conn.execute(
        "UPDATE posture_findings SET cleared_at = $4"
        " WHERE monitor_id = $1 AND code = $2 AND country = $3 AND cleared_at IS NULL",
        monitor_id,
        finding.code,
        finding.country,
        at,
    )


async def record_change(conn: Conn, monitor_id: int, change: Change, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO posture_changes (monitor_id, fact, before, after, countries, at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        monitor_id,
        change.fact,
        change.before,
        change.after,
        change.countries,
        at,
    )


async def expiry_sent(conn: Conn, monitor_id: int, cert_sha256: str) -> set[int]:
    rows = await conn.fetch(
        "SELECT threshold_days FROM cert_expiry_notices WHERE monitor_id = $1 AND cert_sha256 = $2",
        monitor_id,
        cert_sha256,
    )
    return {r["threshold_days"] for r in rows}


async def mark_expiry_sent(
    conn: Conn, monitor_id: int, cert_sha256: str, thresholds: Sequence[int]
) -> None:
    await conn.executemany(
        "INSERT INTO cert_expiry_notices (monitor_id, cert_sha256, threshold_days)"
        " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [(monitor_id, cert_sha256, t) for t in thresholds],
    )


class ListedFinding(msgspec.Struct, frozen=True, kw_only=True):
    """A finding as listed with its history: `country` '' is the monitor as a whole; open while
    `cleared_at` is None."""

    code: str
    country: str
    severity: str
    detail: str
    appeared_at: datetime
    last_seen_at: datetime
    cleared_at: datetime | None


class SeenChange(msgspec.Struct, frozen=True):
    """A change of a fact every country saw alike (`before`: the values it had, `after`: its
    value now, both as stored JSON)."""

    fact: str
    before: list[object]
    after: object
    countries: list[str]
    at: datetime


class StoredBaseline(msgspec.Struct, frozen=True):
    """One country's baseline facts, as stored JSON."""

    country: str
    facts: dict[str, object]
    updated_at: datetime


class OpenFinding(msgspec.Struct, frozen=True, kw_only=True):
    """An open finding with what names its monitor."""

    public_id: UUID
    name: str
    type: str
    hostname: str
    port: int | None
    code: str
    country: str
    severity: str
    detail: str
    appeared_at: datetime
    last_seen_at: datetime
    customer_id: int = 0
    mail_domain: str | None = None


async def findings_page(conn: Conn, monitor_id: int, limit: int) -> list[ListedFinding]:
    """Open findings first (worst first), then the history, newest first."""
    rows = await conn.fetch(
        "SELECT code, country, severity, detail, appeared_at, last_seen_at, cleared_at"
        " FROM posture_findings WHERE monitor_id = $1"
        " ORDER BY cleared_at IS NOT NULL, array_position(ARRAY['critical','warning','info'],"
        " severity), appeared_at DESC, id DESC LIMIT $2",
        monitor_id,
        limit,
    )
    return typed.many(ListedFinding, rows)


async def changes_page(conn: Conn, monitor_id: int, limit: int) -> list[SeenChange]:
    rows = await conn.fetch(
        "SELECT fact, before, after, countries, at FROM posture_changes WHERE monitor_id = $1"
        " ORDER BY at DESC, id DESC LIMIT $2",
        monitor_id,
        limit,
    )
    return typed.many(SeenChange, rows)


async def baseline_rows(conn: Conn, monitor_id: int) -> list[StoredBaseline]:
    rows = await conn.fetch(
        "SELECT country, facts, updated_at FROM posture_baselines WHERE monitor_id = $1"
        " ORDER BY country",
        monitor_id,
    )
    return typed.many(StoredBaseline, rows)


_WORST_FIRST = "array_position(ARRAY['critical','warning','info'], f.severity)"


async def open_in(conn: Conn, organization_id: int | None, limit: int) -> list[OpenFinding]:
    """The open findings of the organization's monitors (every organization's: None), worst
    first, then by monitor name, code and country; with what names the monitor."""
    rows = await conn.fetch(
        "SELECT m.public_id, m.name, m.type, m.hostname, m.port, f.code, f.country,"
        " f.severity, f.detail, f.appeared_at, f.last_seen_at, m.customer_id, m.mail_domain"
        " FROM posture_findings f JOIN monitors m ON m.id = f.monitor_id"
        " WHERE f.cleared_at IS NULL AND ($1::bigint IS NULL OR m.organization_id = $1)"
        f" ORDER BY {_WORST_FIRST}, lower(m.name), m.public_id, f.code, f.country LIMIT $2",
        organization_id,
        limit,
    )
    return typed.many(OpenFinding, rows)


async def open_counts(conn: Conn, organization_id: int | None) -> dict[str, int]:
    """Open findings by severity, over the organization's monitors (every one's: None), a
    finding several countries see counted once, as the console lists it; a fact of a mail
    domain (`DOMAIN_FACTS`) counted once per customer and domain, however many monitors show
    it."""
    rows = await conn.fetch(
        "SELECT f.severity, count(DISTINCT CASE"
        "  WHEN f.code = ANY($2::text[]) AND m.mail_domain IS NOT NULL"
        "  THEN concat_ws(' ', 'domain', m.customer_id, m.mail_domain, f.code)"
        "  ELSE concat_ws(' ', 'monitor', f.monitor_id, f.code) END) AS n"
        " FROM posture_findings f JOIN monitors m ON m.id = f.monitor_id"
        " WHERE f.cleared_at IS NULL AND ($1::bigint IS NULL OR m.organization_id = $1)"
        " GROUP BY f.severity",
        organization_id,
        sorted(DOMAIN_FACTS),
    )
    return {r["severity"]: r["n"] for r in rows}


async def open_elsewhere(
    conn: Conn, monitor_id: int, customer_id: int, domain: str, codes: Sequence[str]
) -> set[str]:
    """Which of `codes` (facts of the mail domain) another monitor of the customer naming
    `domain` has open: told already, not news."""
    rows = await conn.fetch(
        "SELECT DISTINCT f.code FROM posture_findings f JOIN monitors m ON m.id = f.monitor_id"
        " WHERE m.customer_id = $1 AND m.mail_domain = $2 AND m.id <> $3"
        " AND f.cleared_at IS NULL AND f.code = ANY($4::text[])",
        customer_id,
        domain,
        monitor_id,
        list(codes),
    )
    return {r["code"] for r in rows}


async def domain_monitors(conn: Conn, customer_id: int, domain: str) -> list[Monitor]:
    """The customer's monitors naming `domain` as their mail domain, oldest first."""
    rows = await conn.fetch(
        f"SELECT {MONITOR_COLUMNS} FROM monitors WHERE customer_id = $1 AND mail_domain = $2"
        " ORDER BY id",
        customer_id,
        domain,
    )
    return [decode_monitor(r) for r in rows]
