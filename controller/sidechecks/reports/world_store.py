"""The reports' counts behind their world gauges, read from the report intake's tables."""

from datetime import datetime

from controller.db.pool import Conn


async def received(conn: Conn, since: datetime) -> dict[str, int]:
    """Reports stored since `since`, per kind."""
    rows = await conn.fetch(
        "SELECT kind, count(*) AS n FROM reports WHERE received_at >= $1 GROUP BY kind", since
    )
    return {r["kind"]: r["n"] for r in rows}


async def messages(conn: Conn, since: datetime) -> list[tuple[str, str, int]]:
    """The messages reported for the UTC days since `since`'s, per (kind, result), largest
    first (the aggregates keep no report of their own)."""
    rows = await conn.fetch(
        "SELECT kind, result, sum(count) AS n FROM report_day_totals"
        " WHERE day >= ($1 AT TIME ZONE 'UTC')::date GROUP BY kind, result ORDER BY n DESC",
        since,
    )
    return [(r["kind"], r["result"], int(r["n"])) for r in rows]
