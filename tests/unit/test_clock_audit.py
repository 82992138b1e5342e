"""The lines that read the wall clock only go down: tools/clock_audit.py counts them, and the
counts stay within the budget committed in tools/clock_budget.json (issue 79's ratchet)."""

from collections import Counter

import pytest

from tools.clock_audit import GROUPS, audit, budget, main, python_lines, sql_file_lines, totals

Counts = dict[str, Counter[str]]


@pytest.fixture(scope="module")
def counted() -> Counts:
    """The tree's counts, read once for the module (a read parses every file: seconds)."""
    return audit()


def test_no_group_reads_the_wall_on_more_lines_than_its_budget(counted: Counts) -> None:
    now = totals(counted)
    limits = budget()["budget"]
    over = {group: (now[group], limits[group]) for group in GROUPS if now[group] > limits[group]}
    assert not over, (
        f"lines reading the wall clock past the budget (now, budget): {over}; pass the instant"
        " from the clock you are given (shared/clock.py), see `python tools/clock_audit.py --files`"
    )


def test_the_budget_never_rises_above_the_start() -> None:
    committed = budget()
    assert all(committed["budget"][g] <= committed["start"][g] for g in GROUPS)


def test_the_tool_fails_past_the_budget(monkeypatch: pytest.MonkeyPatch, counted: Counts) -> None:
    import tools.clock_audit as clock_audit

    tight = {"start": budget()["start"], "budget": {g: 0 for g in GROUPS}}
    monkeypatch.setattr(clock_audit, "budget", lambda: tight)
    monkeypatch.setattr(clock_audit, "audit", lambda: counted)
    assert main([]) == 1


PYTHON = '''"""A docstring that says now() and utcnow() counts nothing."""
import time
from time import monotonic

# a comment: SELECT now()
SQL = "UPDATE t SET at = now() WHERE id = $1"
LATER = (
    "SELECT 1"
    " WHERE at < clock_timestamp()"
)
MINE = f"UPDATE t SET at = $1, {SQL}"


def f() -> None:
    """now() in a docstring"""
    a = utcnow()
    b = datetime.now(UTC)
    c = time.time()
    d = time.monotonic()
    e = monotonic()
    g = loop.time()
    h = datetime.fromisoformat("2026-01-01")
    i = WALL.now()
    j = WALL.monotonic()
    k = clock.now()
'''


def test_python_lines_are_the_sql_strings_and_the_calls_not_comments_or_docstrings() -> None:
    sql, calls = python_lines(PYTHON)
    assert sql == {6, 9}
    assert calls == {
        "python": {16, 17, 18, 23},
        "python-monotonic": {19, 20, 24},
        "python-defaults": set(),
    }


SQL = """CREATE TABLE t (at timestamptz NOT NULL DEFAULT now());
-- a comment: now()
CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.at := now();  -- now()
    NEW.b := $1;
    RETURN NEW;
END $$;
SELECT ensure((now() AT TIME ZONE 'UTC')::date);
DO $fn$ BEGIN PERFORM current_timestamp; END $fn$;
"""


@pytest.mark.parametrize(("bodies_only", "lines"), [(True, {5, 10}), (False, {1, 5, 9, 10})])
def test_sql_lines_inside_bodies_or_anywhere_but_comments(
    bodies_only: bool, lines: set[int]
) -> None:
    assert sql_file_lines(SQL, bodies_only=bodies_only) == lines


def test_sql_functions_are_counted_as_they_stand_not_in_every_migration_that_wrote_them(
    counted: Counts,
) -> None:
    """A body a later migration replaced runs no more: the functions and triggers are counted
    in their one-file definitions, each once, never in the migrations' text nor the dump."""
    functions = counted["sql-functions"]
    assert all(n.startswith("controller/db/definitions/") for n in functions)
    assert "controller/db/schema.sql" not in counted["sql"]
    assert not any("migrations/" in name for group in counted.values() for name in group)


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("def f(clock: Clock = WALL) -> None: ...", {1}),
        ("def f(*, now: Callable[[], datetime] = utcnow) -> None: ...", {1}),
        ("class C:\n    clock: Clock = WALL\n    n: int = 0", {2}),
        ("def f(clock: Callable[[], float] = time.monotonic) -> None: ...", {1}),
        (
            "from time import monotonic\ndef f(clock: Callable[[], float] = monotonic) -> None:"
            " ...",
            {2},
        ),
        ("def f(clock: Callable[[], float] = monotonic) -> None: ...", set()),  # not time's
        ("def f(clock: Clock) -> None: ...", set()),
        ("def f(n: int = 0, clock: Clock | None = None) -> None: ...", set()),
        ("def f() -> None:\n    g(clock=WALL)", set()),  # a clock passed, not a default
    ],
)
def test_a_default_that_is_the_real_clock_counts(source: str, lines: set[int]) -> None:
    assert python_lines(source)[1]["python-defaults"] == lines
