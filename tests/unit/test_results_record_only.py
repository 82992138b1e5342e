"""Every result is recorded through one module (controller/ingest/record.py: `checked`, `missed`,
`answered`, `expired`): no other module of the product calls the results store's write
(`store`) or writes the tables behind `check_results` itself, so what a row replaces and how
it moves its (monitor, country) state is decided once for the ingester, the scheduler and the
alerter alike.
The tables' upkeep (packing, partitions) stays in the store modules that own it. Read from the
sources (an AST scan, no import runs); the scan is tried on the writes it must catch."""

import ast
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from controller.ingest import record
from controller.jobs.result_kinds import ResultRow

ROOT = Path(__file__).resolve().parents[2]
RECORD = "controller/ingest/record.py"
STORE_MODULE = "controller.ingest.store"
# The results store (its statement, in the .sql files beside it) and the packer's store.
OWNERS = (
    "controller/ingest/store.py",
    "controller/ingest/store_results.sql",
    # its variants, written by `make ingest-sql` (tools/ingest_sql.py)
    "controller/ingest/store_results_old.sql",
    "controller/ingest/store_results_once.sql",
    "controller/ingest/store_results_once_old.sql",
    "controller/ingest/store_state.sql",
    "controller/ingest/pack_store.py",
)
TABLES = (
    r"(check_results|result_rows|result_details|result_rollups|result_packs|result_agents"
    r"|monitor_country_state)\b"
)
WRITE = re.compile(
    rf"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(\s+TABLE)?|COPY)\s+{TABLES}"
    rf"|copy_(records_)?to_table\(\s*['\"]{TABLES}",
    re.IGNORECASE,
)


def writes(source: str) -> list[str]:
    """What in `source` writes results without the record module: a call of the results
    store's `store` (through the module or imported by name), or SQL writing its tables."""
    found = [m.group(0) for m in WRITE.finditer(source)]
    if "controller.ingest" not in source:  # each import the scan follows names it
        return found
    tree = ast.parse(source)
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "controller.ingest":
            modules |= {a.asname or a.name for a in node.names if a.name == "store"}
        if isinstance(node, ast.ImportFrom) and node.module == STORE_MODULE:
            found += [f"import {a.name}" for a in node.names if a.name == "store"]
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == STORE_MODULE}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "store"
            and ast.unparse(node.value) in modules
        ):
            found.append(ast.unparse(node))
    return found


def test_the_scan_catches_every_way_to_write_results() -> None:
    caught = [
        "from controller.ingest import store as results\n"
        "async def f(conn, rows):\n    await results.store(conn, rows, 2)\n",
        "from controller.ingest import store\nasync def f(c, rows):\n"
        "    await store.store(c, rows)\n",
        "from controller.ingest.store import store\n",
        "import controller.ingest.store as s\nasync def f(c):\n    await s.store(c, [])\n",
        "import controller.ingest.store\nasync def f(c):\n"
        "    await controller.ingest.store.store(c, [])\n",
        'Q = "INSERT INTO result_rows (monitor_id) VALUES ($1)"\n',
        'Q = "update monitor_country_state SET last_status = $2 WHERE monitor_id = $1"\n',
        'Q = "DELETE FROM result_details WHERE monitor_id = $1"\n',
        "async def f(c, rows):\n    await c.copy_records_to_table('result_rows', records=rows)\n",
        "UPDATE monitor_country_state s SET last_status = u.status FROM u\n",  # a .sql file
    ]
    for source in caught:
        assert writes(source), source
    fine = (
        "from controller.ingest import store as results\n"
        "async def f(conn):\n    return await results.list_page(conn, 1)\n"
        'Q = "SELECT status FROM check_results WHERE monitor_id = $1"\n'
        'R = "DELETE FROM result_days WHERE day < $1"\n'
    )
    assert writes(fine) == []


def product_sources() -> dict[str, str]:
    """The controller's modules and statement files (migrations define the tables, and the
    schema snapshot, tools/schema.py, restates them)."""
    paths = [*ROOT.glob("controller/**/*.py"), *ROOT.glob("controller/**/*.sql")]
    return {
        str(p.relative_to(ROOT)): p.read_text()
        for p in paths
        if "controller/db/migrations" not in str(p)
        and not str(p).endswith("controller/db/schema.sql")
    }


def test_nothing_but_the_record_module_writes_results() -> None:
    offenders = {}
    for rel, text in sorted(product_sources().items()):
        if rel in (RECORD, *OWNERS):
            continue
        found = writes(text) if rel.endswith(".py") else [m.group(0) for m in WRITE.finditer(text)]
        if found:
            offenders[rel] = found
    assert not offenders, f"record results through controller.ingest.record: {offenders}"


def test_the_record_module_is_what_writes() -> None:
    """The scan is not vacuous: the record module calls the store's write, the store's files
    write the tables, and the ingester, the scheduler's publisher and the alerter record."""
    sources = product_sources()
    assert writes(sources[RECORD]) == ["results.store"] * 4
    assert all(WRITE.search(sources[f]) for f in OWNERS)
    for writer in (
        "controller/ingest/ingester.py",
        "controller/scheduling/publisher.py",
        "controller/alerting/evaluator.py",
    ):
        assert re.search(r"\brecord\.(checked|missed|answered|expired)\(", sources[writer]), writer


def _row(kind: str, **changed: Any) -> ResultRow:
    row = ResultRow.missed(
        uuid.uuid4(), "smtp", "DE", "job", datetime(2026, 1, 1, tzinfo=UTC), kind, "why"
    )
    return msgspec.structs.replace(row, **changed)


@pytest.mark.parametrize(
    ("kind", "rows"),
    [
        ("missed", [_row("expired")]),
        ("missed", [_row("no_agent", agent_id="de-1")]),
        ("missed", [_row("no_agent", status="down")]),
        ("missed", [_row("refused")]),
        ("expired", [_row("no_agent")]),
        ("expired", [_row("saturated"), _row("expired")]),
        ("answered", [_row("no_agent")]),
        ("answered", [_row("expired", status="up")]),
        ("answered", [_row("no_agent", status="up", error_kind=None, agent_id="de-1")]),
        ("missed", [_row("no_agent", status="up", error_kind=None)]),
    ],
)
async def test_each_kind_refuses_rows_not_its_own(kind: str, rows: list[ResultRow]) -> None:
    """A writer records only its own kind of row: refused before anything is written (no
    connection is touched)."""
    with pytest.raises(ValueError, match="not the controller's own"):
        await getattr(record, kind)(cast(Any, None), rows, 2, datetime.now(UTC))
