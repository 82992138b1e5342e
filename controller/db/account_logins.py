"""Logins sent per account, for the cap per window (LOGIN_CAP_PER_ACCOUNT). The caller owns the
transaction."""

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from controller.db.pool import Conn

WINDOW = timedelta(minutes=10)


async def take(conn: Conn, accounts: Sequence[str], now: datetime, cap: int) -> list[bool]:
    """For each login wanted (its account, in order), whether it may be sent: at most `cap` to
    one account in the `WINDOW` before `now`. Set-based, three statements a batch: replicas
    sending to one account at the same instant may pass the cap by a batch's share, a bound on
    lockouts, not an exact count."""
    if not accounts:
        return []
    await conn.execute("DELETE FROM account_logins WHERE at <= $1", now - WINDOW)
    rows = await conn.fetch(
        "SELECT account, count(*) AS n FROM account_logins WHERE account = ANY($1::text[])"
        " GROUP BY account",
        sorted(set(accounts)),
    )
    room = {a: cap for a in Counter(accounts)} | {r["account"]: cap - r["n"] for r in rows}
    allowed = []
    for account in accounts:
        allowed.append(room[account] > 0)
        room[account] -= 1
    taken = [a for a, ok in zip(accounts, allowed, strict=True) if ok]
    await conn.execute(
        "INSERT INTO account_logins (account, at) SELECT unnest($1::text[]), $2", taken, now
    )
    return allowed
