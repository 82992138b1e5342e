"""Write controller/db/definitions from a database: each view, SQL function and trigger of the
public schema as PostgreSQL prints it (`pg_get_viewdef`, `pg_get_functiondef`,
`pg_get_triggerdef`), and `order.txt` with dependencies first (pg_depend; functions, then
triggers, then views where nothing says otherwise).

    python -m tools.definitions [--from-migrations]

By default it migrates a fresh embedded PostgreSQL with the migrations and the current
definitions; `--from-migrations` applies the numbered migrations only (the first extraction).
"""

import argparse
import asyncio
import shutil
import sys
import tempfile
import uuid
from graphlib import TopologicalSorter
from pathlib import Path

import asyncpg

from controller.db.migrate import migrate
from controller.db.pool import connect
from controller.db.repeatable import KINDS, ORDER_FILE, Definition
from shared import embedded

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "controller" / "db" / "definitions"
ORDER_HEADER = (
    "# The repeatable definitions, dependencies first (controller/db/repeatable.py).\n"
    "# A new file goes after what it uses; `python -m tools.definitions` rewrites this list.\n"
)

_OBJECTS = """
SELECT 'functions/' || p.proname AS name, 'pg_proc'::regclass::oid AS classid, p.oid,
       pg_get_functiondef(p.oid) || ';' AS sql
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND p.prokind IN ('f', 'p')
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = p.oid AND e.deptype = 'e')
UNION ALL
SELECT 'views/' || c.relname, 'pg_class'::regclass::oid, c.oid,
       'CREATE OR REPLACE VIEW public.' || quote_ident(c.relname) || ' AS' || E'\\n'
       || pg_get_viewdef(c.oid)
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'
UNION ALL
SELECT 'triggers/' || t.tgname, 'pg_trigger'::regclass::oid, t.oid,
       regexp_replace(pg_get_triggerdef(t.oid), '^CREATE TRIGGER', 'CREATE OR REPLACE TRIGGER')
       || ';'
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
  AND t.tgparentid = 0  -- a partition's clone comes with its parent's trigger
ORDER BY 1, 4
"""

# What each view (through its rewrite rule), function and trigger refers to.
_DEPENDS = """
SELECT COALESCE(r.ev_class, d.objid) AS oid, d.refobjid AS uses
FROM pg_depend d LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
WHERE d.classid IN ('pg_rewrite'::regclass, 'pg_proc'::regclass, 'pg_trigger'::regclass)
  AND d.refclassid IN ('pg_class'::regclass, 'pg_proc'::regclass)
"""


async def extract(url: str) -> list[Definition]:
    """The definitions of the database at `url`, dependencies first."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(_OBJECTS)
        depends = await conn.fetch(_DEPENDS)
    finally:
        await conn.close()
    texts: dict[str, list[str]] = {}
    by_oid: dict[int, str] = {}
    for r in rows:
        texts.setdefault(r["name"], []).append(r["sql"].rstrip() + "\n")
        by_oid[r["oid"]] = r["name"]
    graph: dict[str, set[str]] = {name: set() for name in texts}
    for d in depends:
        user, used = by_oid.get(d["oid"]), by_oid.get(d["uses"])
        if user and used and user != used:
            graph[user].add(used)
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())  # "functions/" < "triggers/" < "views/"
        order.extend(ready)
        sorter.done(*ready)
    return [Definition(name, "\n".join(texts[name])) for name in order]


def write(definitions: list[Definition], folder: Path = FOLDER) -> None:
    """Replace the files under `folder` with `definitions` and their order."""
    for kind in KINDS:
        shutil.rmtree(folder / kind, ignore_errors=True)
        (folder / kind).mkdir(parents=True)
    for d in definitions:
        (folder / f"{d.name}.sql").write_text(d.sql)
    lines = "".join(f"{d.name}\n" for d in definitions)
    (folder / ORDER_FILE).write_text(ORDER_HEADER + lines)


def with_database(url: str, name: str) -> str:
    base, sep, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}{sep}{query}"


async def migrated_definitions(server_url: str, *, numbered_only: bool) -> list[Definition]:
    name = f"mailprobe_definitions_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = with_database(server_url, name)
    try:
        conn = await connect(url)
        try:
            await migrate(conn, definitions=[] if numbered_only else None)
        finally:
            await conn.close()
        return await extract(url)
    finally:
        admin = await asyncpg.connect(server_url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-migrations", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailprobe-definitions-") as tmp:
        handle, server_url = embedded.start_postgres(Path(tmp) / "pg", throwaway=True)
        try:
            found = asyncio.run(
                migrated_definitions(server_url, numbered_only=args.from_migrations)
            )
        finally:
            handle.cleanup()
    write(found)
    print(f"{FOLDER.relative_to(ROOT)}: {len(found)} definitions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
