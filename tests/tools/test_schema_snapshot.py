"""controller/db/schema.sql is today's schema: what the migrations make of a new database on the
test server, dumped and normalised by tools/schema.py."""

import asyncio
import difflib
import uuid

import asyncpg

from controller.db.migrate import migrate
from controller.db.pool import connect
from tools.schema import SNAPSHOT, dump_schema, migrated_schema, normalise, with_database


async def test_the_snapshot_is_what_the_migrations_make(database_url: str) -> None:
    fresh = await migrated_schema(database_url)
    committed = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    if committed != fresh:
        diff = difflib.unified_diff(
            committed.splitlines(),
            fresh.splitlines(),
            "controller/db/schema.sql (committed)",
            "a freshly migrated database",
            lineterm="",
            n=1,
        )
        shown = "\n".join(list(diff)[:60])
        raise AssertionError(
            "controller/db/schema.sql differs from a freshly migrated database:"
            f" run `make schema` and commit it.\n{shown}"
        )


def test_normalising_keeps_the_schema_and_drops_what_varies() -> None:
    dump = (
        "--\n-- PostgreSQL database dump\n--\n\n"
        "\\restrict Zk3Yq8\n\n"
        "-- Dumped from database version 18.6\n"
        "SET statement_timeout = 0;\n"
        "SELECT pg_catalog.set_config('search_path', '', false);\n\n\n\n"
        "CREATE TABLE public.t (\n    id bigint NOT NULL\n);   \n\n\n"
        "\\unrestrict Zk3Yq8\n\n"
    )
    kept = normalise(dump).split("\n", 3)[-1]
    assert kept == "CREATE TABLE public.t (\n    id bigint NOT NULL\n);\n"


async def test_the_day_partitions_are_not_schema(database_url: str) -> None:
    """`migrate` makes the results' day partitions around the day it runs: days made later, or
    on another day, leave the snapshot as it is (a snapshot of yesterday's days failed today)."""
    name = f"mailprobe_days_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = with_database(database_url, name)
    try:
        conn = await connect(url)
        try:
            await migrate(conn)
            before = await asyncio.to_thread(dump_schema, url)
            made = await conn.fetchval(
                "SELECT ensure_check_result_partitions('2031-02-27'::date, 3)"
            )
            assert made == 12  # four tables, three days each, across a month's end
        finally:
            await conn.close()
        assert await asyncio.to_thread(dump_schema, url) == before
    finally:
        admin = await asyncpg.connect(database_url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
