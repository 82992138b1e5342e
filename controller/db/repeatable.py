"""Views, SQL functions and triggers as one-file repeatable definitions, applied after the
migrations.

Each view, function or trigger lives whole in controller/db/definitions/<kind>/<name>.sql;
`order.txt` lists the files, dependencies first. `apply` runs, inside the migrator's
transaction and lock, every file whose text differs from the checksum recorded in
`schema_definitions`, and every file when a migration ran in the same pass (a migration may
have dropped or restated one).
"""

import hashlib
from collections.abc import Sequence
from importlib import resources
from importlib.abc import Traversable

import asyncpg
import msgspec
import structlog

log = structlog.get_logger(__name__)

KINDS = ("functions", "triggers", "views")
ORDER_FILE = "order.txt"


class Definition(msgspec.Struct, frozen=True):
    """One repeatable definition: `name` is its path under definitions/ without `.sql`."""

    name: str
    sql: str

    @property
    def kind(self) -> str:
        return self.name.partition("/")[0]

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class DefinitionError(RuntimeError):
    """A definition file that is missing, unlisted, or that PostgreSQL refused."""


def folder() -> Traversable:
    return resources.files("controller.db") / "definitions"


def load(root: Traversable | None = None) -> list[Definition]:
    """The definitions in the order of `order.txt`; every file listed once, every line a file."""
    root = root or folder()
    names = [
        line.strip()
        for line in (root / ORDER_FILE).read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    present = {
        f"{kind}/{p.name.removesuffix('.sql')}"
        for kind in KINDS
        if (root / kind).is_dir()
        for p in (root / kind).iterdir()
        if p.name.endswith(".sql")
    }
    unknown = [n for n in names if n not in present]
    unlisted = sorted(present - set(names))
    twice = sorted({n for n in names if names.count(n) > 1})
    if unknown or unlisted or twice:
        raise DefinitionError(
            f"definitions/{ORDER_FILE}: no file for {unknown}, not listed {unlisted},"
            f" listed twice {twice}"
        )
    return [Definition(n, (root / f"{n}.sql").read_text()) for n in names]


_DEPENDENT_VIEWS = """
WITH RECURSIVE dependent(oid) AS (
    SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1::regclass
      AND r.ev_class <> $1::regclass
  UNION
    SELECT r.ev_class FROM dependent v JOIN pg_depend d ON d.refobjid = v.oid
    JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class <> v.oid
)
SELECT c.relname FROM dependent v JOIN pg_class c ON c.oid = v.oid
"""


async def _replace_view(
    conn: asyncpg.Connection, view: Definition, order: Sequence[Definition]
) -> set[str]:
    """Drop `view` and the listed views built on it (last first), create it; return the names of
    those dependents, which the caller creates again in their turn."""
    table = view.name.partition("/")[2]
    dependents = {f"views/{r['relname']}" for r in await conn.fetch(_DEPENDENT_VIEWS, table)}
    for d in reversed(order):
        if d.name in dependents:
            await conn.execute(f'DROP VIEW "{d.name.partition("/")[2]}"')
    await conn.execute(f'DROP VIEW "{table}"')
    await conn.execute(view.sql)
    return dependents


async def _run(conn: asyncpg.Connection, d: Definition, order: Sequence[Definition]) -> set[str]:
    """Apply `d`: CREATE OR REPLACE, or for a view whose columns changed, drop and create."""
    try:
        async with conn.transaction():
            await conn.execute(d.sql)
        return set()
    except asyncpg.InvalidTableDefinitionError:
        # CREATE OR REPLACE VIEW cannot drop, rename or retype a column.
        if d.kind != "views":
            raise
    return await _replace_view(conn, d, order)


async def apply(
    conn: asyncpg.Connection, order: Sequence[Definition], *, everything: bool
) -> list[str]:
    """Apply the definitions whose text changed (all of them if `everything`); the caller holds
    the migration lock and transaction. Return the names applied."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_definitions ("
        " name text PRIMARY KEY, checksum text NOT NULL)"
    )
    known = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT * FROM schema_definitions")}
    applied: list[str] = []
    forced: set[str] = set()
    for d in order:
        if not everything and d.name not in forced and known.get(d.name) == d.checksum:
            continue
        try:
            dropped = await _run(conn, d, order)
        except asyncpg.PostgresError as error:
            raise DefinitionError(
                f"controller/db/definitions/{d.name}.sql: {type(error).__name__}: {error}"
            ) from error
        await conn.execute(
            "INSERT INTO schema_definitions (name, checksum) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum",
            d.name,
            d.checksum,
        )
        early = sorted(dropped & {e.name for e in order[: order.index(d)]})
        if early:
            raise DefinitionError(
                f"definitions/{ORDER_FILE}: {early} must come after {d.name}, which they use"
            )
        forced |= dropped
        applied.append(d.name)
    await conn.execute(
        "DELETE FROM schema_definitions WHERE name <> ALL($1::text[])", [d.name for d in order]
    )
    if applied:
        log.info("definitions applied", count=len(applied))
    return applied
