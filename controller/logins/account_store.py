"""Logins per organization and account (`account_logins`), counted as attempted, for the cap
per window (controller.logins.cap has the rules). The caller owns the transaction."""

from collections.abc import Sequence
from datetime import datetime

from controller.db.pool import Conn
from controller.logins.cap import WINDOW, Login

# The account a stored monitor logs in to, user@host, from its config (user names are stored
# in clear, passwords sealed): `login_account` (migration 0053), NULL without a user.
_ACCOUNT = "login_account({m}.type, {m}.hostname, {m}.config)"


def _need_sql(alias: str) -> str:
    """A monitor's logins per window (`login_need`, migration 0053: `cap.monitor_need`)."""
    return (
        f"login_need(login_legs({alias}.type, {alias}.hostname, {alias}.config),"
        f" planned_countries({alias}.allowed_country_codes, $2), {alias}.check_interval, $3)"
    )


async def need(
    conn: Conn, monitor_ids: Sequence[int], default_countries: int, trigger_burst: int
) -> dict[int, tuple[int, str | None, int]]:
    """Per monitor: its organization, the account it logs in to (user@host, None without one)
    and the logins per window its organization's checked monitors of that account need
    together (`login_cap.monitor_need` summed)."""
    rows = await conn.fetch(
        f"WITH mine AS (SELECT m.id, m.organization_id, {_ACCOUNT.format(m='m')} AS account"
        "  FROM monitors m WHERE m.id = ANY($1::bigint[]))"
        " SELECT mine.id, mine.organization_id, mine.account, coalesce(("
        f"  SELECT sum({_need_sql('o')}) FROM monitors o"
        "  WHERE o.organization_id = mine.organization_id AND o.status <> 'disabled'"
        f"  AND {_ACCOUNT.format(m='o')} = mine.account), 0)::int AS need"
        " FROM mine",
        list(monitor_ids),
        default_countries,
        trigger_burst,
    )
    return {r["id"]: (r["organization_id"], r["account"], r["need"]) for r in rows}


async def take(conn: Conn, logins: Sequence[Login], now: datetime) -> list[bool]:
    """For each login wanted (in order), whether it may be sent: its organization's logins to
    its account in the `WINDOW` before `now` (attempted, or sent and not settled) stay within
    its cap. Set-based, three statements a batch: replicas sending to one account at the same
    instant may pass the cap by a batch's share, a bound on lockouts, not an exact count."""
    if not logins:
        return []
    await conn.execute("DELETE FROM account_logins WHERE sent_at <= $1", now - WINDOW)
    keys = sorted({(x.organization_id, x.account) for x in logins})
    rows = await conn.fetch(
        "SELECT organization_id, account, sum(coalesce(logins,"
        "  CASE WHEN settles_at > $3 THEN planned ELSE 0 END))::int AS n"
        " FROM account_logins WHERE (organization_id, account) IN"
        "  (SELECT * FROM unnest($1::bigint[], $2::text[]))"
        " GROUP BY organization_id, account",
        [k[0] for k in keys],
        [k[1] for k in keys],
        now,
    )
    used = {(r["organization_id"], r["account"]): r["n"] for r in rows}
    allowed = []
    for x in logins:
        key = (x.organization_id, x.account)
        ok = used.get(key, 0) + x.planned <= x.cap
        if ok:
            used[key] = used.get(key, 0) + x.planned
        allowed.append(ok)
    taken = [x for x, ok in zip(logins, allowed, strict=True) if ok]
    await conn.execute(
        "INSERT INTO account_logins"
        " (job_id, organization_id, account, sent_at, settles_at, planned)"
        " SELECT j, o, a, $4, s, p FROM unnest($1::text[], $2::bigint[], $3::text[],"
        "  $5::timestamptz[], $6::int[]) AS u (j, o, a, s, p)"
        " ON CONFLICT (job_id) DO NOTHING",
        [x.job_id for x in taken],
        [x.organization_id for x in taken],
        [x.account for x in taken],
        now,
        [x.settles_at for x in taken],
        [x.planned for x in taken],
    )
    return allowed


async def attempted(conn: Conn, job_ids: Sequence[str], logins: Sequence[int]) -> None:
    """What the jobs' results said: how many logins each really attempted (a later real result
    over a synthetic one can only add)."""
    if not job_ids:
        return
    await conn.execute(
        "UPDATE account_logins a SET logins = greatest(coalesce(a.logins, 0), u.n)"
        " FROM unnest($1::text[], $2::int[]) AS u (j, n) WHERE a.job_id = u.j",
        list(job_ids),
        list(logins),
    )
