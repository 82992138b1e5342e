"""The results store's statement variants are named SQL files (tools/ingest_sql.py): each
written one is what `make ingest-sql` makes of today's store_results.sql and store_once.sql, and
each is checked as the ingester loads it, by a real error (`python -O` keeps it)."""

import difflib

import pytest

from controller.ingest import store
from shared.guards import BrokenInvariant
from tools.ingest_sql import FILES, SourceError, made, variants


def test_each_written_variant_is_what_its_sources_make() -> None:
    stale = []
    for path, text in made().items():
        committed = path.read_text() if path.exists() else ""
        if committed != text:
            diff = difflib.unified_diff(
                committed.splitlines(), text.splitlines(), "committed", "made", lineterm="", n=1
            )
            stale.append(f"{path.name}:\n" + "\n".join(list(diff)[:30]))
    assert not stale, "run `make ingest-sql` and commit:\n" + "\n".join(stale)


def test_the_ingester_reads_every_variant_by_its_name() -> None:
    assert {store._FILES[key] for key in FILES} == {path.name for path in FILES.values()}
    for key, path in FILES.items():
        assert store._STATEMENTS[key] == path.read_text()
    assert "result_packs" in store._INSERT_OLD and "result_packs" not in store._INSERT
    assert "DISTINCT ON" in store._INSERT and "DISTINCT ON" not in store._ONCE


def _planted(old: str, new: str) -> str:
    sql = store._INSERT
    assert old in sql
    return sql.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ('AS "jobId"', 'AS "job"', "reads the batch elsewhere"),  # a field renamed
        ("(e->>2)", "(e->>3)", "reads the batch elsewhere"),  # a field moved
        ("(e->>0)::uuid AS facts,", "(e->>0)::uuid AS hash,", "does not read"),
        ("k.status NOT IN (", "k.status IN (", "UNCOUNTED"),
    ],
)
def test_a_statement_that_disagrees_with_python_fails_as_it_loads(
    old: str, new: str, says: str
) -> None:
    with pytest.raises(BrokenInvariant, match=says):
        store._checked("planted.sql", _planted(old, new))
    assert store._checked("store_results.sql", store._INSERT) == store._INSERT


def test_a_source_without_a_part_the_variants_are_cut_at_is_refused() -> None:
    source = store._INSERT
    forms = (FILES[False, False].parent / "store_once.sql").read_text()
    with pytest.raises(SourceError, match="DISTINCT ON"):
        variants(source.replace("SELECT DISTINCT ON (", "SELECT (", 1), forms)
    with pytest.raises(SourceError, match="u AS"):
        variants(source, forms.replace("), u AS (", "), v AS ("))
