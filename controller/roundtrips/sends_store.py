"""Round-trip messages sent, for each monitor's cap per hour and each recipient domain's cap
per minute over all organizations (controller.roundtrips.rules). The caller owns the transaction.
"""

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from controller.db.pool import Conn
from controller.roundtrips import rules

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


async def take(
    conn: Conn, monitor_ids: Sequence[int], now: datetime, per_domain: int
) -> list[str | None]:
    """For each message wanted (its round-trip monitor, in order), None when it may be sent
    (it is counted), else the missed kind that holds it back. A recipient domain's count is
    read under a transaction-scoped advisory lock, domains in sorted order, so replicas sending
    to one domain at once never pass its cap together."""
    if not monitor_ids:
        return []
    await conn.execute("DELETE FROM mail_sends WHERE at <= $1", now - HOUR)
    rows = await conn.fetch(
        "SELECT m.id, m.config->>'to' AS rcpt, d.confirmed_at,"
        " coalesce(d.not_delivered, 0) AS not_delivered FROM monitors m"
        " LEFT JOIN roundtrip_delivery d ON d.monitor_id = m.id WHERE m.id = ANY($1::bigint[])",
        sorted(set(monitor_ids)),
    )
    found = {r["id"]: r for r in rows}
    domain = {r["id"]: rules.domain(r["rcpt"] or "") for r in rows}
    for name in sorted(set(domain.values())):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"mail:{name}")
    per_monitor = Counter[int](
        {
            r["monitor_id"]: r["n"]
            for r in await conn.fetch(
                "SELECT monitor_id, count(*) AS n FROM mail_sends"
                " WHERE monitor_id = ANY($1::bigint[]) AND at > $2 GROUP BY monitor_id",
                list(found),
                now - HOUR,
            )
        }
    )
    per_name = Counter[str](
        {
            r["domain"]: r["n"]
            for r in await conn.fetch(
                "SELECT domain, count(*) AS n FROM mail_sends"
                " WHERE domain = ANY($1::text[]) AND at > $2 GROUP BY domain",
                sorted(set(domain.values())),
                now - MINUTE,
            )
        }
    )
    decided: list[str | None] = []
    taken: list[tuple[int, str]] = []
    for monitor_id in monitor_ids:
        row = found.get(monitor_id)
        if row is None:  # gone meanwhile: its job is nothing to count
            decided.append(None)
            continue
        record = rules.Delivery(row["confirmed_at"], row["not_delivered"])
        kind = rules.may_send(record, per_monitor[monitor_id])
        name = domain[monitor_id]
        if kind is None and per_name[name] >= per_domain:
            kind = rules.DOMAIN_CAPPED
        if kind is None:
            per_monitor[monitor_id] += 1
            per_name[name] += 1
            taken.append((monitor_id, name))
        decided.append(kind)
    if taken:
        await conn.executemany(
            "INSERT INTO mail_sends (monitor_id, domain, at) VALUES ($1, $2, $3)",
            [(m, d, now) for m, d in taken],
        )
    return decided
