"""Operator health storage: one table per owner (`oracle_health`, `fleet_health`), each a row per
(name, country) with its state, reason, since and what was told; only the name's column is
named differently (`Table`)."""

from dataclasses import dataclass

from controller.db.pool import Conn
from controller.operator_health.rules import Stored


@dataclass(frozen=True, slots=True)
class Table:
    """A health table: its name and the column of the name it judges (constants, never input)."""

    name: str
    key: str


async def healths(conn: Conn, table: Table, *, lock: bool = False) -> dict[tuple[str, str], Stored]:
    """(name, country) → its health as last judged; `lock`: held for the watch's update."""
    rows = await conn.fetch(
        f"SELECT {table.key} AS name, country, state, reason, since, told FROM {table.name}"
        + (" FOR UPDATE" if lock else "")
    )
    return {
        (r["name"], r["country"]): Stored(r["state"], r["reason"], r["since"], r["told"])
        for r in rows
    }


async def save(conn: Conn, table: Table, name: str, country: str, s: Stored) -> None:
    await conn.execute(
        f"INSERT INTO {table.name} ({table.key}, country, state, reason, since, told)"
        f" VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT ({table.key}, country) DO UPDATE"
        " SET state = EXCLUDED.state, reason = EXCLUDED.reason, since = EXCLUDED.since,"
        " told = EXCLUDED.told",
        name,
        country,
        s.state,
        s.reason,
        s.since,
        s.told,
    )
