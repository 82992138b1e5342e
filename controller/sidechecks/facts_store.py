"""Each side check's facts by job id, in its own table `side_<name>` (made by its migration with
`SELECT side_check_table('<name>')`, migration 0080): the job, its monitor, country and
scheduled time, and the facts as the agent sent them (bounded by the ingester). Written in the
results' transaction, so whoever reads a stored result finds its side facts with it; a
redelivered result changes nothing (the job id is the key) and is not counted. Kept as long as
raw results (CHECK_RAW_DAYS)."""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import msgspec

from controller.db.pool import Conn
from controller.observability import metrics
from controller.sidechecks.frame import AnySideCheck, Arrived
from controller.sidechecks.registry import SIDE_CHECKS, WIRED
from controller.sidechecks.stores import STORES

_encode = msgspec.json.Encoder().encode
# Every registered side check's series, at 0 until its first facts (so an alert on it works).
metrics.side_checks_known(SIDE_CHECKS)


def table(name: str) -> str:
    """The quoted table of side check `name` (a wire name: `[a-z_]`, checked by its wire)."""
    if not name.replace("_", "a").isalpha() or name != name.lower():
        raise ValueError(f"not a side check's name: {name!r}")
    return f'"side_{name}"'


def keeps_rows(check: AnySideCheck) -> bool:
    """Whether the side check keeps its facts in its table (those riding jobs, unless they
    store them their own way: controller.sidechecks.stores)."""
    return check.wire is not None and check.name not in STORES


async def unseen(
    conn: Conn, name: str, arrived: Sequence[Arrived[msgspec.Struct]]
) -> list[Arrived[msgspec.Struct]]:
    """Those of `arrived` whose job has no facts of side check `name` yet (a redelivered
    result's are the stored ones)."""
    if not arrived:
        return []
    rows = await conn.fetch(
        f"SELECT job::text FROM {table(name)} WHERE job = ANY($1::uuid[])",
        [a.job_id for a in arrived],
    )
    stored = {r["job"] for r in rows}
    return [a for a in arrived if str(UUID(a.job_id)) not in stored]


async def record(conn: Conn, name: str, arrived: Sequence[Arrived[msgspec.Struct]]) -> int:
    """Store `arrived` facts of side check `name`; those of a monitor that is gone, and those
    of a job that has its facts already, are dropped. Returns how many were stored."""
    if not arrived:
        return 0
    status = await conn.execute(
        f"INSERT INTO {table(name)} (job, monitor_id, country, scheduled_at, facts)"
        " SELECT u.job, m.id, u.country, u.scheduled_at, u.facts::jsonb"
        " FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[])"
        "  AS u(job, public_id, country, scheduled_at, facts)"
        " JOIN monitors m ON m.public_id = u.public_id"
        " ORDER BY u.job ON CONFLICT (job) DO NOTHING",
        [a.job_id for a in arrived],
        [a.monitor_id for a in arrived],
        [a.country for a in arrived],
        [a.scheduled_at for a in arrived],
        [_encode(a.facts).decode() for a in arrived],
    )
    return int(status.rsplit(" ", 1)[-1])


def side_of(job: str) -> str:
    """SQL: the side checks' facts of the result whose job id (text) is `job`, as one jsonb
    object by name ({} without any): for a statement that reads results (an index lookup per
    side check and row, no statement of its own)."""
    names = [c.name for c in WIRED.values() if keeps_rows(c)]
    if not names:
        return "'{}'::jsonb"
    rows = ", ".join(
        f"('{name}', (SELECT s.facts FROM {table(name)} s WHERE s.job = ({job})::uuid))"
        for name in names
    )
    return (
        "(SELECT coalesce(jsonb_object_agg(v.name, v.facts), '{}'::jsonb)"
        f" FROM (VALUES {rows}) AS v(name, facts) WHERE v.facts IS NOT NULL)"
    )


class Latest(NamedTuple):
    """A side check's latest facts of a monitor from one country: when that round was, and
    why it could not read all it was asked (its facts' `error`, "" for none)."""

    name: str
    country: str
    at: datetime
    error: str = ""


async def latest(conn: Conn, monitor_id: int) -> list[Latest]:
    """Per side check that keeps rows and country, the latest round with its facts for the
    monitor (its page shows them); one statement for all."""
    names = [c.name for c in WIRED.values() if keeps_rows(c)]
    if not names:
        return []
    union = " UNION ALL ".join(
        f"(SELECT DISTINCT ON (country) '{name}' AS name, country, scheduled_at AS at,"
        f" coalesce(facts->>'error', '') AS error FROM {table(name)}"
        " WHERE monitor_id = $1 ORDER BY country, scheduled_at DESC)"
        for name in names
    )
    rows = await conn.fetch(f"SELECT * FROM ({union}) x ORDER BY name, country", monitor_id)
    return [Latest(r["name"], r["country"], r["at"], r["error"][:300]) for r in rows]


async def drop_before(conn: Conn, checks: Iterable[AnySideCheck], before: datetime) -> int:
    """Delete the facts of rounds scheduled before `before` (raw retention); return how many."""
    dropped = 0
    for check in checks:
        if keeps_rows(check):
            status = await conn.execute(
                f"DELETE FROM {table(check.name)} WHERE scheduled_at < $1", before
            )
            dropped += int(status.rsplit(" ", 1)[-1])
    return dropped
