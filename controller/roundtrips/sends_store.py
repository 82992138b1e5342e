"""Round-trip messages sent, for each monitor's cap per hour and each recipient domain's cap
per minute over all organizations (controller.roundtrips.rules). The caller owns the transaction.

A message is a row from when its round is taken until its job's result says no server took it
(`settle`), or until its job is not sent after all (`release`); a row older than an hour counts
no more and is deleted as new ones come.
"""

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from controller.db.pool import Conn
from controller.monitors import roundtrip_addresses
from controller.roundtrips import delivery_store, rules

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)

# The rows that count: sent, and not known to have reached no server.
_COUNTED = "accepted IS NOT FALSE"


async def take(
    conn: Conn, rounds: Sequence[tuple[int, Sequence[str]]], now: datetime, per_domain: int
) -> list[str | None]:
    """For each round wanted ((its round-trip monitor, the job ids of its messages: those sent
    now and its later logins'), in order), None when all its messages may be sent (each is
    counted, by job id), else the missed kind that holds all of them back. A message counted
    already (a later login of a round taken before) goes without counting again. The monitor's
    record is read with the results ahead of it (`rules.seen`; only rounds after its mailbox
    last changed). A recipient domain's count is read under a transaction-scoped advisory
    lock, domains in sorted order, so replicas sending to one domain at once never pass its
    cap together."""
    if not rounds:
        return []
    await conn.execute("DELETE FROM mail_sends WHERE at <= $1", now - HOUR)
    counted = {
        r["job_id"]
        for r in await conn.fetch(
            "SELECT job_id FROM mail_sends WHERE job_id = ANY($1::text[])",
            sorted({j for _, jobs in rounds for j in jobs}),
        )
    }
    wanted = [(m, [j for j in jobs if j not in counted]) for m, jobs in rounds]
    rows = await conn.fetch(
        "SELECT m.id, m.config->>'to' AS rcpt, d.confirmed_at,"
        f" coalesce(d.not_delivered, 0) AS not_delivered, {delivery_store.ARRIVED_AT} AS arrived_at"
        " FROM monitors m LEFT JOIN roundtrip_delivery d ON d.monitor_id = m.id"
        " WHERE m.id = ANY($1::bigint[])",
        sorted({m for m, jobs in wanted if jobs}),
    )
    found = {r["id"]: r for r in rows}
    domain = {r["id"]: roundtrip_addresses.domain(r["rcpt"] or "") for r in rows}
    for name in sorted(set(domain.values())):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"mail:{name}")
    per_monitor = await _counts(conn, "monitor_id", "bigint", list(found), now - HOUR)
    per_name = await _counts(conn, "domain", "text", sorted(set(domain.values())), now - MINUTE)
    decided: list[str | None] = []
    taken: list[tuple[int, str, datetime, str]] = []
    for monitor_id, jobs in wanted:
        row = found.get(monitor_id)
        if row is None:  # nothing new to count, or the monitor is gone meanwhile
            decided.append(None)
            continue
        record = rules.seen(
            rules.Delivery(row["confirmed_at"], row["not_delivered"]), row["arrived_at"]
        )
        kind = rules.may_send(record, per_monitor[monitor_id], len(jobs))
        name = domain[monitor_id]
        if kind is None and not rules.within(per_name[name], len(jobs), per_domain):
            kind = rules.DOMAIN_CAPPED
        if kind is None:
            per_monitor[monitor_id] += len(jobs)
            per_name[name] += len(jobs)
            taken += [(monitor_id, name, now, job_id) for job_id in jobs]
        decided.append(kind)
    if taken:
        await conn.executemany(
            "INSERT INTO mail_sends (monitor_id, domain, at, job_id) VALUES ($1, $2, $3, $4)",
            taken,
        )
    return decided


async def _counts(
    conn: Conn, column: str, sql_type: str, keys: Sequence[object], since: datetime
) -> Counter[object]:
    """The messages that count since `since`, by `column` (one of the keys)."""
    return Counter(
        {
            r["k"]: r["n"]
            for r in await conn.fetch(
                f"SELECT {column} AS k, count(*) AS n FROM mail_sends"
                f" WHERE {column} = ANY($1::{sql_type}[]) AND at > $2 AND {_COUNTED}"
                f" GROUP BY {column}",
                keys,
                since,
            )
        }
    )


async def release(conn: Conn, job_ids: Sequence[str]) -> None:
    """The jobs were taken but not sent (a login cap, a rejected login of their round): their
    messages count no more."""
    if job_ids:
        await conn.execute("DELETE FROM mail_sends WHERE job_id = ANY($1::text[])", list(job_ids))


async def settle(conn: Conn, job_ids: Sequence[str], accepted: Sequence[bool]) -> None:
    """What the jobs' results said (`rules.accepted`): a message no server took counts no more;
    one a result said may have been taken counts, whatever a later result of its job says."""
    if job_ids:
        await conn.execute(
            "UPDATE mail_sends s SET accepted = (s.accepted IS TRUE) OR u.a"
            " FROM unnest($1::text[], $2::boolean[]) AS u (j, a) WHERE s.job_id = u.j",
            list(job_ids),
            list(accepted),
        )


async def sent_last_hour(conn: Conn, monitor_id: int, now: datetime) -> int:
    """The monitor's messages that count against its cap at `now`."""
    n: int = await conn.fetchval(
        "SELECT count(*) FROM mail_sends WHERE monitor_id = $1"
        f" AND at > $2::timestamptz - interval '1 hour' AND {_COUNTED}",
        monitor_id,
        now,
    )
    return n
