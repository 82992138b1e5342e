"""What readiness keeps beyond one round (`readiness_records`, migration 0096): the records
each country last read of a monitor's mail domain and since when each has been as it is.

`keep` runs in the results' transaction before the facts' rows are written
(controller.sidechecks.stores, `KEEPERS`): it compares each arrived round's records with those
kept (controller.sidechecks.readiness.rules, `readings` and `moves`), writes what it read, and
adds to the facts what changed and since when each DKIM key is published (`Kept`), so posture
judges drift and key age from the stored facts alone. A round older than the one a record was
last read by changes nothing (results may arrive late and out of order)."""

from collections.abc import Sequence

from controller.db.pool import Conn
from controller.sidechecks.frame import Arrived
from controller.sidechecks.readiness import budget_store, rules
from shared.sidechecks.readiness import Kept, Readiness

_READ = """
SELECT r.what, r.value, r.since, r.read_at
FROM readiness_records r JOIN monitors m ON m.id = r.monitor_id
WHERE m.public_id = $1 AND r.country = $2 AND r.what = ANY($3::text[])
ORDER BY r.what
FOR UPDATE OF r
"""

_WRITE = """
INSERT INTO readiness_records (monitor_id, country, what, value, since, read_at)
SELECT m.id, $2, u.what, u.value, u.since, $6
FROM monitors m, unnest($3::text[], $4::text[], $5::timestamptz[]) AS u(what, value, since)
WHERE m.public_id = $1
ON CONFLICT (monitor_id, country, what) DO UPDATE
SET value = EXCLUDED.value, since = EXCLUDED.since, read_at = EXCLUDED.read_at
WHERE readiness_records.read_at <= EXCLUDED.read_at
"""


async def keep(conn: Conn, arrived: Sequence[Arrived[Readiness]]) -> None:
    """Compare, keep, and add `Kept` to each of `arrived` (oldest round first); count their
    queries against their organizations' budgets (`budget_store.settle`)."""
    await budget_store.settle(conn, arrived)
    for a in sorted(arrived, key=lambda a: (a.scheduled_at, a.country)):
        read = rules.readings(a.facts)
        if not read:
            a.facts.kept = Kept()
            continue
        rows = await conn.fetch(_READ, a.monitor_id, a.country, sorted(read))
        newer = {r["what"] for r in rows if r["read_at"] > a.scheduled_at}
        stored = {r["what"]: (r["value"], r["since"]) for r in rows if r["what"] not in newer}
        current = {w: v for w, v in read.items() if w not in newer}
        changes, since = rules.moves(stored, current, a.scheduled_at)
        a.facts.kept = Kept(
            changes=changes,
            key_since={
                what.split(":", 1)[1]: at.isoformat()
                for what, at in since.items()
                if what.startswith("dkim:") and current[what]
            },
        )
        if current:
            whats = sorted(current)
            await conn.execute(
                _WRITE,
                a.monitor_id,
                a.country,
                whats,
                [current[w] for w in whats],
                [since[w] for w in whats],
                a.scheduled_at,
            )
