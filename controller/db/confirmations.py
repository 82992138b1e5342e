"""Confirmation rounds: the alerter asks for them, the scheduler sends them (`controller.confirm`
has the rules). The caller owns the transaction."""

from collections.abc import Sequence
from datetime import datetime, timedelta

from controller.db import limits
from controller.db.pool import Conn

KEEP = timedelta(hours=1)  # rows older than this no longer count against any cap


async def request(
    conn: Conn,
    monitor_id: int,
    after_round: datetime,
    now: datetime,
    per_minute: int,
    organization_id: int,
    cost_s: float,
) -> str:
    """Ask for a confirmation of the failing round scheduled `after_round`: `requested`, or
    `asked` (it was, by an earlier evaluation), or `capped` (`per_minute` were asked in the
    minute before `now`, over all replicas: the count is taken under a transaction-wide lock),
    or `org_capped` (the monitor's organization's allowance for triggered checks had no
    `cost_s` left: one organization's failures cannot use up the shared `per_minute`)."""
    asked = await conn.fetchval(
        "SELECT 1 FROM confirmation_rounds WHERE monitor_id = $1 AND after_round = $2",
        monitor_id,
        after_round,
    )
    if asked:
        return "asked"
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('mailprobe confirmation rounds'))")
    await conn.execute("DELETE FROM confirmation_rounds WHERE requested_at < $1", now - KEEP)
    recent: int = await conn.fetchval(
        "SELECT count(*) FROM confirmation_rounds WHERE requested_at > $1",
        now - timedelta(minutes=1),
    )
    if recent >= per_minute:
        return "capped"
    if await limits.take_trigger(conn, "organizations", organization_id, cost_s, 60.0):
        return "org_capped"
    added: str = await conn.execute(
        "INSERT INTO confirmation_rounds (monitor_id, after_round, requested_at)"
        " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        monitor_id,
        after_round,
        now,
    )
    return "requested" if added == "INSERT 0 1" else "asked"


async def claim(conn: Conn, limit: int) -> list[tuple[int, datetime]]:
    """(monitor, failing round) of the confirmations to send, oldest request first, marked sent;
    locked until the caller's transaction ends (replicas skip them)."""
    rows = await conn.fetch(
        "UPDATE confirmation_rounds SET sent_at = now()"
        " WHERE (monitor_id, after_round) IN (SELECT monitor_id, after_round"
        "   FROM confirmation_rounds WHERE sent_at IS NULL"
        "   ORDER BY requested_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " RETURNING monitor_id, after_round",
        limit,
    )
    return [(r["monitor_id"], r["after_round"]) for r in rows]


async def failed_agents(
    conn: Conn, rounds: Sequence[tuple[int, datetime]]
) -> dict[int, dict[str, set[str]]]:
    """Per monitor and country, the agents whose check of the failing round failed."""
    rows = await conn.fetch(
        "SELECT r.monitor_id, r.country, r.agent_id FROM check_results r"
        " JOIN unnest($1::bigint[], $2::timestamptz[]) AS c(monitor_id, at)"
        " ON r.monitor_id = c.monitor_id AND r.scheduled_at = c.at"
        " WHERE r.status = 'down' AND r.agent_id IS NOT NULL",
        [m for m, _ in rounds],
        [at for _, at in rounds],
    )
    found: dict[int, dict[str, set[str]]] = {}
    for r in rows:
        found.setdefault(r["monitor_id"], {}).setdefault(r["country"], set()).add(r["agent_id"])
    return found
