"""A view, function or trigger with its file under controller/db/definitions is changed in that
file: no migration after they became files restates one (`CREATE OR REPLACE`), since `migrate`
applies the files after the migrations and the file's older text would win. A migration may
still `CREATE` a new function or trigger; the file holds its text from then on."""

import re
from pathlib import Path

from controller.db import repeatable

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "controller/db/migrations"
# The last migration written before views and functions (and, later, triggers) became files.
LAST_BEFORE = "0176"

RESTATES = re.compile(
    r"CREATE\s+OR\s+REPLACE\s+(FUNCTION|VIEW|TRIGGER)\s+(?:public\.)?\"?(\w+)", re.IGNORECASE
)


def restated(sql: str, files: set[str]) -> list[str]:
    """The definitions (kind/name) that `sql` restates."""
    kinds = {"function": "functions", "trigger": "triggers", "view": "views"}
    found = (f"{kinds[m.group(1).lower()]}/{m.group(2).lower()}" for m in RESTATES.finditer(sql))
    return sorted({name for name in found if name in files})


def test_restating_is_caught() -> None:
    files = {"functions/uptime_ms", "triggers/monitors_due_created", "views/check_results"}
    sql = (
        "CREATE OR REPLACE FUNCTION public.uptime_ms(a int) RETURNS int ...;\n"
        "create or replace view check_results AS SELECT 1;\n"
        "CREATE OR REPLACE TRIGGER monitors_due_created AFTER INSERT ON monitors ...;\n"
        "CREATE FUNCTION new_one() RETURNS trigger ...;\n"
        "CREATE TRIGGER new_one AFTER INSERT ON monitors ...;\n"
    )
    assert restated(sql, files) == [
        "functions/uptime_ms",
        "triggers/monitors_due_created",
        "views/check_results",
    ]


def test_no_later_migration_restates_a_definition() -> None:
    files = {d.name for d in repeatable.load()}
    later = sorted(p for p in MIGRATIONS.glob("*.sql") if p.name[:4] > LAST_BEFORE)
    found = {p.name: restated(p.read_text(), files) for p in later}
    assert {k: v for k, v in found.items() if v} == {}, (
        "edit the file under controller/db/definitions instead"
    )


DROPS = re.compile(
    r"DROP\s+(FUNCTION|VIEW|TRIGGER)\s+(?:IF\s+EXISTS\s+)?(?:public\.)?\"?(\w+)[^;\n]*(;?[^\n]*)",
    re.IGNORECASE,
)
# A migration that drops a defined function or view to change what `CREATE OR REPLACE` cannot
# (its arguments, its result's type) says so on the same line; its file makes it again.
REMADE = "-- remade by its file"


def dropped(sql: str, files: set[str]) -> list[str]:
    """The definitions (kind/name) `sql` drops for good: a file would make them again."""
    kinds = {"function": "functions", "trigger": "triggers", "view": "views"}
    found = (
        f"{kinds[m.group(1).lower()]}/{m.group(2).lower()}"
        for m in DROPS.finditer(sql)
        if REMADE not in m.group(0)
    )
    return sorted({name for name in found if name in files})


def test_dropping_for_good_is_caught() -> None:
    files = {"functions/uptime_ms", "triggers/monitors_due_created", "views/check_results"}
    sql = (
        "DROP FUNCTION IF EXISTS public.uptime_ms(int);\n"
        "DROP VIEW check_results; -- remade by its file\n"
        "DROP TRIGGER monitors_due_created ON monitors;\n"
        "DROP FUNCTION gone_for_good();\n"
    )
    assert dropped(sql, files) == ["functions/uptime_ms", "triggers/monitors_due_created"]


def test_no_later_migration_drops_a_definition_that_keeps_its_file() -> None:
    """A function, view or trigger a migration drops for good loses its file in the same change, or
    `migrate` would make it again from the file after every migration."""
    files = {d.name for d in repeatable.load()}
    later = sorted(p for p in MIGRATIONS.glob("*.sql") if p.name[:4] > LAST_BEFORE)
    found = {p.name: dropped(p.read_text(), files) for p in later}
    assert {k: v for k, v in found.items() if v} == {}, (
        f"delete its file under controller/db/definitions (and its line in order.txt), or mark"
        f" the drop `{REMADE}` when the file makes it again"
    )
