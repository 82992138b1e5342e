"""Views, SQL functions and triggers as one-file repeatable definitions (repeatable.py),
on the test PostgreSQL: a database at the last head before them upgrades with no change, a
changed file is applied once, a view whose columns change is dropped and created with the views
on it, a file PostgreSQL refuses is named, and two migrators at once are safe."""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import asyncpg
import pytest

from controller.db import repeatable
from controller.db.migrate import migrate, migrations
from controller.db.pool import connect
from controller.db.repeatable import Definition, DefinitionError
from tools.definitions import extract, write
from tools.schema import dump_schema, with_database


@pytest.fixture
async def empty_url(database_url: str) -> AsyncIterator[str]:
    name = f"mailprobe_defs_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield with_database(database_url, name)
    finally:
        admin = await asyncpg.connect(database_url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def _without_bookkeeping(schema: str) -> str:
    """`schema` without the schema_definitions table and its key."""
    schema = re.sub(r"CREATE TABLE public\.schema_definitions \(.*?\);\n\n", "", schema, flags=re.S)
    return re.sub(r"ALTER TABLE ONLY public\.schema_definitions\n.*?;\n\n?", "", schema, flags=re.S)


async def test_a_database_at_the_last_head_upgrades_to_a_fresh_ones_schema(
    empty_url: str, database_url: str
) -> None:
    """A database migrated without definitions (as before them) takes them all on its next
    migrate, and ends as a fresh database is, bookkeeping aside."""
    conn = await connect(empty_url)
    try:
        await migrate(conn, definitions=[])  # the head before definitions: migrations only
        before = await asyncio.to_thread(dump_schema, empty_url)
        assert "schema_definitions" not in before
        assert await migrate(conn) == []
        rows = await conn.fetch("SELECT name, checksum FROM schema_definitions")
    finally:
        await conn.close()
    after = await asyncio.to_thread(dump_schema, empty_url)
    fresh = await asyncio.to_thread(dump_schema, database_url)
    assert "CREATE TABLE public.schema_definitions" in after
    assert _without_bookkeeping(after) == _without_bookkeeping(fresh)
    files = repeatable.load()
    assert {(r["name"], r["checksum"]) for r in rows} == {(d.name, d.checksum) for d in files}


async def test_every_view_function_and_trigger_has_its_file(database_url: str) -> None:
    """Nothing is defined by a migration alone: a fresh database's views, functions and triggers
    are the files, and each file is what PostgreSQL prints of it."""
    found = await extract(database_url)
    files = repeatable.load()
    assert [d.name for d in found if d.name not in {f.name for f in files}] == []
    assert [d.name for d in files if d.name not in {f.name for f in found}] == []
    printed = {d.name: d.sql for d in found}
    differs = [d.name for d in files if printed[d.name] != d.sql]
    assert differs == [], "run `python -m tools.definitions` and commit"


_V1 = Definition("views/defs_t_v1", "CREATE OR REPLACE VIEW defs_t_v1 AS SELECT a, b FROM defs_t;")
_V2 = Definition("views/defs_t_v2", "CREATE OR REPLACE VIEW defs_t_v2 AS SELECT a FROM defs_t_v1;")
_F1 = Definition(
    "functions/defs_f",
    "CREATE OR REPLACE FUNCTION defs_f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
)


async def _types(conn: asyncpg.Connection, view: str) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1",
        view,
    )
    return {r["column_name"]: r["data_type"] for r in rows}


async def test_a_changed_file_is_applied_once_and_a_view_whose_columns_change_is_rebuilt(
    empty_url: str,
) -> None:
    conn = await connect(empty_url)
    try:
        await conn.execute("CREATE TABLE defs_t (a int, b int)")
        order = [_F1, _V1, _V2]
        async with conn.transaction():
            assert await repeatable.apply(conn, order, everything=False) == [d.name for d in order]
        async with conn.transaction():
            assert await repeatable.apply(conn, order, everything=False) == []
        f2 = Definition(_F1.name, _F1.sql.replace("SELECT 1", "SELECT 2"))
        # b becomes text: CREATE OR REPLACE VIEW refuses, so v1 is dropped with v2 on it.
        v1 = Definition(_V1.name, _V1.sql.replace("SELECT a, b", "SELECT a, b::text AS b"))
        async with conn.transaction():
            applied = await repeatable.apply(conn, [f2, v1, _V2], everything=False)
        assert applied == [f2.name, v1.name, _V2.name]
        assert await conn.fetchval("SELECT defs_f()") == 2
        assert await _types(conn, "defs_t_v1") == {"a": "integer", "b": "text"}
        assert await _types(conn, "defs_t_v2") == {"a": "integer"}
        stored = dict(
            cast(
                list[tuple[str, str]],
                await conn.fetch("SELECT name, checksum FROM schema_definitions"),
            )
        )
        assert stored == {d.name: d.checksum for d in (f2, v1, _V2)}
    finally:
        await conn.close()


async def test_a_definition_postgresql_refuses_is_named_and_nothing_is_kept(
    empty_url: str,
) -> None:
    broken = Definition(
        "functions/defs_broken",
        "CREATE OR REPLACE FUNCTION defs_broken() RETURNS int LANGUAGE sql"
        " AS $$ SELECT count(*) FROM no_such_table $$;",
    )
    conn = await connect(empty_url)
    try:
        with pytest.raises(
            DefinitionError,
            match=r"controller/db/definitions/functions/defs_broken\.sql: .*no_such_table",
        ):
            await migrate(conn, definitions=[_F1, broken])
        # One transaction: the migrations and _F1 went with it.
        assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None
        assert await conn.fetchval("SELECT to_regprocedure('defs_f()')") is None
    finally:
        await conn.close()


async def test_two_migrators_at_once_both_succeed(empty_url: str) -> None:
    """Two controllers starting together: the advisory lock makes the second wait and find
    everything applied."""
    first, second = await connect(empty_url), await connect(empty_url)
    try:
        done = await asyncio.gather(migrate(first), migrate(second))
        assert sorted(map(len, done)) == [0, len(migrations())]
        count = await first.fetchval("SELECT count(*) FROM schema_definitions")
        assert count == len(repeatable.load())
    finally:
        await first.close()
        await second.close()


def test_the_order_file_lists_every_file_once(tmp_path: Path) -> None:
    write([_F1, _V1, _V2], tmp_path)
    assert repeatable.load(tmp_path) == [_F1, _V1, _V2]
    (tmp_path / "views" / "defs_t_v3.sql").write_text("CREATE VIEW defs_t_v3 AS SELECT 1;")
    with pytest.raises(DefinitionError, match=r"not listed \['views/defs_t_v3'\]"):
        repeatable.load(tmp_path)
    (tmp_path / "order.txt").write_text("views/defs_t_v3\nfunctions/defs_f\nfunctions/defs_f\n")
    with pytest.raises(DefinitionError, match=r"listed twice \['functions/defs_f'\]"):
        repeatable.load(tmp_path)


async def test_a_view_listed_before_a_view_it_is_built_on_is_refused(empty_url: str) -> None:
    conn = await connect(empty_url)
    try:
        await conn.execute("CREATE TABLE defs_t (a int, b int)")
        async with conn.transaction():
            await repeatable.apply(conn, [_V1, _V2], everything=False)
        v1 = Definition(_V1.name, _V1.sql.replace("SELECT a, b", "SELECT a, b::text AS b"))
        with pytest.raises(
            DefinitionError, match=r"\['views/defs_t_v2'\] must come after views/defs_t_v1"
        ):
            async with conn.transaction():
                await repeatable.apply(conn, [_V2, v1], everything=True)
    finally:
        await conn.close()


async def test_after_a_migration_a_view_it_dropped_comes_back_as_its_file_says(
    empty_url: str,
) -> None:
    """A migration altering a table under a view drops the view; the pass that ran it applies
    every file, unchanged ones included, so the view is there again."""
    conn = await connect(empty_url)
    try:
        await conn.execute("CREATE TABLE defs_t (a int, b int)")
        async with conn.transaction():
            await repeatable.apply(conn, [_F1, _V1, _V2], everything=False)
            await conn.execute("DROP VIEW defs_t_v2; DROP VIEW defs_t_v1")
            await conn.execute("ALTER TABLE defs_t ALTER COLUMN a TYPE bigint")
            assert await repeatable.apply(conn, [_F1, _V1, _V2], everything=False) == []
            applied = await repeatable.apply(conn, [_F1, _V1, _V2], everything=True)
        assert applied == [_F1.name, _V1.name, _V2.name]
        assert await _types(conn, "defs_t_v2") == {"a": "bigint"}
    finally:
        await conn.close()


_LOG_FN = Definition(
    "functions/defs_log_row",
    "CREATE OR REPLACE FUNCTION defs_log_row() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN INSERT INTO defs_log VALUES (NEW.a); RETURN NULL; END $$;",
)
_T1 = Definition(
    "triggers/defs_t_logged",
    "CREATE OR REPLACE TRIGGER defs_t_logged AFTER INSERT ON defs_t FOR EACH ROW"
    " WHEN (NEW.a > 0) EXECUTE FUNCTION defs_log_row();",
)


async def test_a_trigger_file_changed_or_dropped_by_a_migration_is_made_as_it_says(
    empty_url: str,
) -> None:
    """A trigger's file is its text: a changed file replaces the trigger in place, and a
    migration that drops its function (CASCADE takes the trigger) sees it made again."""

    async def logged(*values: int) -> list[int]:
        for v in values:
            await conn.execute("INSERT INTO defs_t VALUES ($1, 0)", v)
        rows = await conn.fetch("DELETE FROM defs_log RETURNING a")
        return sorted(r["a"] for r in rows)

    conn = await connect(empty_url)
    try:
        await conn.execute("CREATE TABLE defs_t (a int, b int); CREATE TABLE defs_log (a int)")
        async with conn.transaction():
            await repeatable.apply(conn, [_LOG_FN, _T1], everything=False)
        assert await logged(1, -1) == [1]
        t2 = Definition(_T1.name, _T1.sql.replace("NEW.a > 0", "NEW.a < 0"))
        async with conn.transaction():
            assert await repeatable.apply(conn, [_LOG_FN, t2], everything=False) == [t2.name]
        assert await logged(2, -2) == [-2]
        async with conn.transaction():
            await conn.execute("DROP FUNCTION defs_log_row() CASCADE")
            applied = await repeatable.apply(conn, [_LOG_FN, t2], everything=True)
        assert applied == [_LOG_FN.name, t2.name]
        assert await logged(3, -3) == [-3]
    finally:
        await conn.close()


async def test_a_trigger_on_a_partitioned_table_is_one_statement_not_one_per_partition(
    empty_url: str,
) -> None:
    """The results' day partitions come and go with the days: their clones of a parent's trigger
    are not definitions, the parent's trigger is."""
    conn = await connect(empty_url)
    try:
        await conn.execute(
            "CREATE TABLE defs_log (a int);"
            " CREATE TABLE defs_p (a int) PARTITION BY RANGE (a);"
            " CREATE TABLE defs_p_1 PARTITION OF defs_p FOR VALUES FROM (0) TO (10);"
            " CREATE TABLE defs_p_2 PARTITION OF defs_p FOR VALUES FROM (10) TO (20);"
        )
        await conn.execute(_LOG_FN.sql)
        await conn.execute(
            "CREATE TRIGGER defs_p_logged AFTER INSERT ON defs_p FOR EACH ROW"
            " EXECUTE FUNCTION defs_log_row()"
        )
    finally:
        await conn.close()
    found = {d.name: d.sql for d in await extract(empty_url)}
    assert [n for n in found if n.startswith("triggers/")] == ["triggers/defs_p_logged"]
    assert found["triggers/defs_p_logged"].count("CREATE OR REPLACE TRIGGER") == 1
    assert " ON public.defs_p FOR EACH ROW" in found["triggers/defs_p_logged"]
