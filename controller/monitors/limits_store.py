"""Fair-use counts and allowances: an organization's monitors, maintenance windows, checks and
slot-seconds per minute, and the trigger-check allowances of monitors and organizations.

Counts are only as good as the transaction they are read in: callers take the organization's
row lock first (`lock_organization`), so two replicas creating monitors for one organization
at once are serialised and cannot both slip under a limit.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from controller.db.pool import Conn
from shared.guards import BrokenInvariant


async def lock_organization(conn: Conn, organization_id: int) -> None:
    """Serialise the organization's limited writes until the caller's transaction ends.

    `FOR NO KEY UPDATE` does not block the foreign-key checks of inserts that reference the
    organization, only other holders of this lock."""
    await conn.execute(
        "SELECT 1 FROM organizations WHERE id = $1 FOR NO KEY UPDATE", organization_id
    )


async def monitor_count(conn: Conn, organization_id: int) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM monitors WHERE organization_id = $1", organization_id
    )
    return count


async def window_count(conn: Conn, organization_id: int) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM maintenance_windows WHERE organization_id = $1", organization_id
    )
    return count


async def blocklist_names(conn: Conn, organization_id: int) -> int:
    """The distinct addresses and domains the organization's monitors list for the blocklists
    (`reputation`), each counted once."""
    count: int = await conn.fetchval(
        "SELECT count(DISTINCT n) FROM monitors m,"
        " jsonb_array_elements_text(coalesce(m.reputation->'ips', '[]')"
        "  || coalesce(m.reputation->'domains', '[]')) AS n"
        " WHERE m.organization_id = $1 AND m.reputation IS NOT NULL",
        organization_id,
    )
    return count


@dataclass(frozen=True)
class Cost:
    """What monitors cost an organization's budgets, per minute: checks (countries x rounds)
    and slot-seconds (checks x `timeout_seconds`, the longest each may hold an agent slot)."""

    checks: float
    slot_seconds: float


async def cost_per_minute(
    conn: Conn, organization_id: int, default_countries: int, monitor_id: int | None = None
) -> Cost:
    """Checks and slot-seconds per minute, summed over the organization's checked monitors (or
    the one monitor); a monitor without a country list is checked from `default_countries`."""
    row = await conn.fetchrow(
        "SELECT coalesce(sum(checks), 0)::float8 AS checks,"
        " coalesce(sum(checks * timeout_seconds), 0)::float8 AS slot_seconds"
        " FROM (SELECT timeout_seconds,"
        "  planned_countries(allowed_country_codes, $2) * 60.0 / check_interval AS checks"
        "  FROM monitors WHERE organization_id = $1 AND status <> 'disabled'"
        "  AND ($3::bigint IS NULL OR id = $3)) AS checked",
        organization_id,
        default_countries,
        monitor_id,
    )
    if row is None:
        raise BrokenInvariant("limits_store.cost_per_minute: an aggregate always has its row")
    return Cost(row["checks"], row["slot_seconds"])


async def take_trigger(
    conn: Conn,
    table: Literal["monitors", "organizations"],
    row_id: int,
    cost_s: float,
    window_s: float,
    now: datetime,
) -> float:
    """Take `cost_s` from the row's trigger allowance at `now` (the caller's clock): 0.0 when
    taken, else the seconds until it could be (the sooner of room within the window and the
    allowance whole again).

    GCRA (the generic cell rate algorithm, as in ATM networks and redis-cell): `trigger_tat`
    is when the allowance would be whole again. A take moves it `cost_s` later and is allowed
    while that stays within `window_s` from now, so a `window_s / cost_s` burst is followed by
    one take per `cost_s`; a whole allowance admits any one take, however costly. One
    statement, so replicas share the allowance without racing. A take is judged at the
    instant it is given, not the transaction's start: the allowance refills at the pace of
    the clock the process is given (a simulation's included). An instant older than one a
    take was already judged at (`trigger_seen`: requests racing, each with the instant it
    began at) is judged at that one, so the order takes reach the row never refuses one of a
    burst (`trigger_tat` never moves back)."""
    taken = await conn.fetchval(
        f"UPDATE {table} AS t"
        " SET trigger_tat = greatest(t.trigger_tat, n.at) + $2 * interval '1 s',"
        "  trigger_seen = n.at"
        f" FROM (SELECT greatest($4::timestamptz, s.trigger_seen) AS at FROM {table} s"
        "  WHERE s.id = $1 FOR UPDATE) AS n"
        " WHERE t.id = $1 AND (t.trigger_tat IS NULL OR t.trigger_tat <= n.at"
        "  OR t.trigger_tat + $2 * interval '1 s' <= n.at + $3 * interval '1 s')"
        " RETURNING true",
        row_id,
        cost_s,
        window_s,
        now,
    )
    if taken:
        return 0.0
    # The sooner of the two ways in: room for `cost_s` within the window, or whole again (the
    # later one only when a take costs more than the whole window).
    wait: float = await conn.fetchval(
        "SELECT extract(epoch FROM least(trigger_tat + $2 * interval '1 s'"
        "  - $3 * interval '1 s', trigger_tat) - greatest($4::timestamptz, trigger_seen))::float8"
        f" FROM {table} WHERE id = $1",
        row_id,
        cost_s,
        window_s,
        now,
    )
    return wait
