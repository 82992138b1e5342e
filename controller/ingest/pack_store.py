"""The packer's statements: the compact rows of up to a number of closed (monitor, hour, country)
groups deleted and their packs written in one statement (migration 0032, lines of migration
0035, seeds of migration 0122), under PACK_LOCK; a closed day's rows' index rebuilt, under
REBUILD_LOCK (controller.ingest.packer runs the passes)."""

from dataclasses import dataclass
from datetime import date, datetime

from controller.db.pool import Conn
from controller.ingest.pack_rules import PACK_LOCK, REBUILD_LOCK
from controller.jobs.rules import JobIds
from shared.guards import BrokenInvariant

GROUPS = 2_000  # (monitor, hour, country) groups per transaction
_PHASES = ("dns", "connect", "tls", "greeting", "auth")
# The lines of `result_packs.lines`, in order (migration 0035).
_LINES = (
    "at_delta",
    "started_ms",
    "finished_ms",
    "stored_delta",
    "response_us",
    *(f"{p}_us" for p in _PHASES),
    "agent",
    "ref_ms",
    "ref_tag",
)
# Lines that hold the difference from the previous result's value.
_DELTAS = {"at_delta": "at_ms", "stored_delta": "stored_at_ms"}
# Every number of a result, as `moved` and `e` below have them: at_ms and stored_at_ms (ms
# after the hour) for the deltas.
_FIELDS = tuple(_DELTAS.get(line, line) for line in _LINES)


def _decoded(pack: str) -> str:
    """The lines of `pack` (a result_packs row) as arrays, in the order of _FIELDS."""
    lines = (
        f"result_pack_decode({pack}.lines[{i}], {pack}.results)" for i in range(1, len(_LINES) + 1)
    )
    return ", ".join(
        f"result_running_sum({line})" if name in _DELTAS else line
        for name, line in zip(_LINES, lines, strict=True)
    )


# A compact row whose numbers the pack keeps exactly: times in whole ms, a response time in
# whole microseconds.
_FITS = """r.detail_ms IS NOT NULL AND r.status = 0
    AND date_trunc('milliseconds', r.scheduled_at) = r.scheduled_at
    AND result_us_ms(result_phase_us(r.response_time_ms)) = r.response_time_ms
    AND abs(r.started_ms) < 32768 AND abs(r.finished_ms) < 32768
    AND abs(r.stored_ms) < 1000000000"""
_ORDER = "ORDER BY at_ms, tag, job"
_PACK = f"""
WITH g AS (
    SELECT * FROM unnest($1::int8[], $2::timestamptz[], $3::int2[], $4::bytea[])
        AS g(monitor_id, hour, country, seed)
), moved AS (
    DELETE FROM result_rows r USING g
    WHERE r.monitor_id = g.monitor_id AND r.country = g.country
        AND r.scheduled_at >= g.hour AND r.scheduled_at < g.hour + interval '1 hour' AND {_FITS}
    RETURNING r.monitor_id, g.hour, r.country, r.job, r.tag,
        round(extract(epoch FROM r.scheduled_at - g.hour) * 1000)::int AS at_ms,
        r.started_ms, r.finished_ms,
        round(extract(epoch FROM r.scheduled_at - g.hour) * 1000)::int + r.stored_ms
            AS stored_at_ms,
        result_phase_us(r.response_time_ms) AS response_us,
        {", ".join(f"r.{p}_us" for p in _PHASES)}, r.agent,
        round(extract(epoch FROM r.scheduled_at - g.hour) * 1000)::int - r.detail_ms AS ref_ms,
        r.ref_tag::int AS ref_tag
), old AS (
    DELETE FROM result_packs p USING g
    WHERE p.monitor_id = g.monitor_id AND p.hour = g.hour AND p.country = g.country
    RETURNING p.*
), e AS (
    SELECT * FROM moved
    UNION ALL
    SELECT o.monitor_id, o.hour, o.country, y.job, result_tag(y.job),
        {", ".join(f"x.{f}::int" for f in _FIELDS)}
    FROM old o CROSS JOIN LATERAL unnest(o.jobs, {_decoded("o")}) AS x(job, {", ".join(_FIELDS)})
    CROSS JOIN LATERAL (SELECT result_pack_job(x.job, o.seed, x.at_ms::int) AS job) AS y
), s AS (
    SELECT e.*, at_ms - coalesce(lag(at_ms) OVER w, 0) AS at_delta,
        stored_at_ms - coalesce(lag(stored_at_ms) OVER w, 0) AS stored_delta,
        row_number() OVER w AS i, g.seed,
        -- NULL: the seeded id of its time, which the pack does not keep
        nullif(e.job, result_seeded_job(g.seed, e.at_ms)) AS kept
    FROM e JOIN g USING (monitor_id, hour, country)
    WINDOW w AS (PARTITION BY monitor_id, hour, country {_ORDER})
), ins AS (
    INSERT INTO result_packs (hour, monitor_id, country, results, jobs, seed, lines)
    SELECT hour, monitor_id, country, count(*),
        -- up to the last id kept: the NULLs after it are left off
        (array_agg(kept {_ORDER}))[1:coalesce(max(i) FILTER (WHERE kept IS NOT NULL), 0)],
        CASE WHEN bool_or(kept IS NULL) THEN min(seed) END,
        ARRAY[{", ".join(f"result_pack_encode(array_agg({line} {_ORDER}))" for line in _LINES)}]
    FROM s GROUP BY monitor_id, hour, country ORDER BY monitor_id, hour, country
    RETURNING results AS n
)
SELECT count(*)::int AS packs, coalesce(sum(n), 0)::int AS results FROM ins
"""


# The groups a pass packs, with what their seeds are made of (the monitor's public id, the
# country's code; NULL when the monitor is gone).
_GROUPS = f"""
SELECT g.monitor_id, g.hour, g.country, m.public_id::text AS public_id,
    result_country(g.country) AS cc
FROM (
    SELECT DISTINCT r.monitor_id, date_trunc('hour', r.scheduled_at, 'UTC') AS hour, r.country
    FROM result_rows r
    WHERE r.scheduled_at >= $1 AND r.scheduled_at < $2 AND {_FITS}
    ORDER BY 1, 2, 3 LIMIT $3
) g LEFT JOIN monitors m ON m.id = g.monitor_id
ORDER BY 1, 2, 3
"""


async def pack(
    conn: Conn, ids: JobIds, since: datetime, until: datetime, groups: int = GROUPS
) -> int:
    """Pack up to `groups` (monitor, hour, country) groups of compact rows scheduled in
    [`since`, `until`), whole hours, each pack with its seed under `ids` (which leaves out the
    ids it derives); return how many groups. The caller owns the transaction and holds
    PACK_LOCK."""
    found = await conn.fetch(_GROUPS, since, until, groups)
    if not found:
        return 0
    seeds = [
        None if g["public_id"] is None else ids.seed(g["public_id"], g["cc"], g["hour"])
        for g in found
    ]
    row = await conn.fetchrow(
        _PACK,
        [g["monitor_id"] for g in found],
        [g["hour"] for g in found],
        [g["country"] for g in found],
        seeds,
    )
    if row is None:
        raise BrokenInvariant("pack_store.pack: the statement returned no row")
    packs: int = row["packs"]
    return packs


async def try_lock(conn: Conn) -> bool:
    """PACK_LOCK for the transaction, unless another holds it."""
    taken: bool = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", PACK_LOCK)
    return taken


@dataclass(frozen=True)
class RowsDay:
    """A daily partition of `result_rows`: its name, its valid indexes' bytes (a rebuild cut
    short leaves an invalid one beside) and its rows as last counted by VACUUM or ANALYZE (-1:
    not counted yet)."""

    name: str
    index_bytes: int
    rows: float


async def rows_days_before(conn: Conn, day: date) -> list[RowsDay]:
    """The daily partitions of `result_rows` of days before `day`, oldest first."""
    found = await conn.fetch(
        "SELECT c.relname, c.reltuples, (SELECT coalesce(sum(pg_relation_size(x.indexrelid)), 0)"
        "  FROM pg_index x WHERE x.indrelid = c.oid AND x.indisvalid)::int8 AS index_bytes"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'result_rows'::regclass AND c.relname ~ '^result_rows_p[0-9]{8}$'"
        "  AND to_date(substr(c.relname, 14), 'YYYYMMDD') < $1 AND pg_table_is_visible(c.oid)"
        " ORDER BY c.relname",
        day,
    )
    return [RowsDay(r["relname"], r["index_bytes"], float(r["reltuples"])) for r in found]


async def rebuild_rows_index(conn: Conn, day: RowsDay) -> bool:
    """Rebuild the indexes of one day's `result_rows` partition without blocking its readers or
    writers (REINDEX CONCURRENTLY: outside a transaction); False when another packer holds
    REBUILD_LOCK."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", REBUILD_LOCK):
        return False
    try:
        await conn.execute(f'REINDEX TABLE CONCURRENTLY "{day.name}"')
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", REBUILD_LOCK)
    return True
