"""Oracle storage: the agents' resolver canaries per country (their newest answers, or
that none came: `dns_canary_answers`), the table of each oracle's health per country as last judged
(`oracle_health`, read and written by controller.operator_health.store), and whom a change is
told."""

from collections.abc import Sequence
from datetime import datetime
from typing import Final, NamedTuple

from controller.db.pool import Conn
from controller.operator_health.store import Table
from controller.sidechecks.registry import WIRED
from shared.dns_canary import DnsCanary, capped
from shared.messages import CheckResult
from shared.sidechecks import SideCheckError
from shared.timefmt import parse_iso

HEALTH: Final = Table("oracle_health", "oracle")


async def record_canaries(conn: Conn, results: Sequence[CheckResult]) -> None:
    """The canaries answered beside `results`' DNS side checks' lookups (each side check
    whose facts carry them: `ControllerSideCheck.canaries`), in the caller's transaction, each
    replacing an older one of the same country, name and type: a real answer, or none (`found`
    null, `error` why: a resolver that answers nothing is not believed either)."""
    rows: dict[tuple[str, str, str], tuple[object, ...]] = {}
    for r in results:
        done: str | datetime = r.finished_at
        at = done if isinstance(done, datetime) else parse_iso(done)
        seen: list[DnsCanary] = []
        for check in WIRED.values():
            if check.canaries is None or check.wire is None:
                continue
            try:
                facts = check.wire.facts_of(r.side_checks)
            except SideCheckError:
                continue  # facts that do not fit their types: the ingester logs them
            seen += capped(check.canaries(facts) if facts is not None else None) or []
        for c in seen:
            want = "exists" if c.exists else "absent"
            key = (r.country, c.name, c.type)
            error = "" if c.found is not None else c.error[:200]
            rows[key] = (r.country, c.name, c.type, want, c.found, error, at)
    if rows:
        await conn.executemany(
            "INSERT INTO dns_canary_answers"
            " (country, name, rdtype, want, found, error, answered_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (country, name, rdtype) DO UPDATE"
            " SET want = EXCLUDED.want, found = EXCLUDED.found, error = EXCLUDED.error,"
            " answered_at = EXCLUDED.answered_at"
            " WHERE dns_canary_answers.answered_at < EXCLUDED.answered_at",
            [rows[k] for k in sorted(rows)],
        )


async def canaries(conn: Conn, since: datetime) -> dict[str, list[DnsCanary]]:
    """Country → its canaries' newest answers since `since` (`found` null: none came)."""
    rows = await conn.fetch(
        "SELECT country, name, rdtype, want, found, error FROM dns_canary_answers"
        " WHERE answered_at >= $1 ORDER BY country, name, rdtype",
        since,
    )
    out: dict[str, list[DnsCanary]] = {}
    for r in rows:
        c = DnsCanary(name=r["name"], type=r["rdtype"], exists=r["want"] == "exists")
        c.found = r["found"]
        c.error = r["error"]
        out.setdefault(r["country"], []).append(c)
    return out


async def resolver_organizations(conn: Conn, country: str) -> list[int]:
    """The organizations whose monitors' facts the agents' resolver decides in `country`:
    monitors that resolve mail DNS (a mail domain) or reverse DNS (SMTP) and run there."""
    rows = await conn.fetch(
        "SELECT DISTINCT organization_id FROM monitors WHERE status <> 'disabled'"
        " AND (mail_domain IS NOT NULL OR type = 'smtp')"
        " AND (allowed_country_codes IS NULL OR $1 = ANY(allowed_country_codes))"
        " ORDER BY organization_id",
        country,
    )
    return [r["organization_id"] for r in rows]


class WorldCounts(NamedTuple):
    """What the world gauges show of the frame's own: open findings (code, severity) → n, each
    oracle's state and each fleet check's state (`fleet_health`)."""

    findings: dict[tuple[str, str], int]
    oracles: dict[tuple[str, str], str]
    fleet: dict[tuple[str, str], str]


async def world(conn: Conn) -> WorldCounts:
    """The counts behind the world gauges of the frame's own."""
    findings = await conn.fetch(
        "SELECT code, severity, count(*) AS n FROM posture_findings"
        " WHERE cleared_at IS NULL GROUP BY code, severity"
    )
    oracles = await conn.fetch("SELECT oracle, country, state FROM oracle_health")
    fleet = await conn.fetch("SELECT check_name, country, state FROM fleet_health")
    return WorldCounts(
        {(r["code"], r["severity"]): r["n"] for r in findings},
        {(r["oracle"], r["country"]): r["state"] for r in oracles},
        {(r["check_name"], r["country"]): r["state"] for r in fleet},
    )
