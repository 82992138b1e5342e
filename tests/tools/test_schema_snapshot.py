"""controller/db/schema.sql is today's schema: what the migrations make of a new database on the
test server, dumped and normalised by tools/schema.py."""

import difflib

from tools.schema import SNAPSHOT, migrated_schema, normalise


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
