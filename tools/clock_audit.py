"""The lines that read the wall clock where they stand, counted per file (issue 79).

Decisions take "now" from a clock they are given (shared/clock.py). What still reads the
wall is counted here, in five groups:

- `sql`: SQL outside the migrations (string literals in the Python of controller/, agent/,
  shared/, and `.sql` files there) reading `now()`, `clock_timestamp()`, `current_timestamp`,
  `localtimestamp`, `statement_timestamp()` or `transaction_timestamp()`;
- `sql-functions`: the same inside the dollar-quoted bodies (functions, triggers) of the
  repeatable definitions (controller/db/definitions, one file per function as it stands);
- `python`: calls of `utcnow()`, `datetime.now()`, `time.time()` or `WALL.now()` there (the
  real clock read where it stands, not handed down);
- `python-monotonic`: calls of `time.monotonic()` (or `monotonic` imported from `time`) or
  `WALL.monotonic()`;
- `python-defaults`: a parameter or a class's field whose default is the real clock (`WALL`,
  `utcnow`, `WALL.now`, `time.monotonic` or `monotonic` imported from `time`, `time.time`): a
  part built without a clock would read the wall, so each takes it as a required argument.

A line counts once per group; comments and docstrings do not count, nor column defaults
outside function bodies (they stamp a row, they decide nothing), nor shared/clock.py itself
(the one place the real clock is read).

tests/unit/test_clock_audit.py holds the counts to the budget in tools/clock_budget.json: a
count may only go down. Lower the budget as work proceeds (`--budget` prints today's figures).

    python tools/clock_audit.py [--files] [--budget]
"""

import argparse
import ast
import io
import json
import re
import sys
import tokenize
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("controller", "agent", "shared")
MIGRATIONS = ROOT / "controller/db/migrations"
THE_CLOCK = "shared/clock.py"
# The functions as they stand, one file each (controller/db/repeatable.py), are counted there;
# the dumped schema restates them, so it is not counted.
DEFINITIONS = ROOT / "controller/db/definitions"
SCHEMA_SNAPSHOT = "controller/db/schema.sql"
BUDGET = ROOT / "tools/clock_budget.json"
GROUPS = ("sql", "sql-functions", "python", "python-monotonic", "python-defaults")
# A default that is the real clock itself, not a call of it.
WALL_DEFAULTS = {
    "WALL",
    "utcnow",
    "WALL.now",
    "WALL.monotonic",
    "time.monotonic",
    "time.time",
}

SQL_NOW = re.compile(
    r"(?<![\w.])(now|clock_timestamp|statement_timestamp|transaction_timestamp)\s*\(\s*\)"
    r"|\b(current_timestamp|localtimestamp)\b",
    re.IGNORECASE,
)
DOLLAR = re.compile(r"\$(\w*)\$")


def _called(node: ast.Call, monotonic_imported: bool) -> str | None:
    """The group of a call that reads a clock (`python` or `python-monotonic`), else None."""
    func = node.func
    if isinstance(func, ast.Name):
        if func.id == "utcnow":
            return "python"
        return "python-monotonic" if func.id == "monotonic" and monotonic_imported else None
    if not isinstance(func, ast.Attribute):
        return None
    owner = func.value
    owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
    wall = (("now", "datetime"), ("time", "time"), ("now", "WALL"))
    if func.attr == "utcnow" or (func.attr, owner_name) in wall:
        return "python"
    monotonic = (("monotonic", "time"), ("monotonic", "WALL"))
    return "python-monotonic" if (func.attr, owner_name) in monotonic else None


def _docstring_lines(tree: ast.Module) -> set[int]:
    """The lines of the docstrings (and other bare string statements)."""
    return {
        line
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)
    }


STRING_TOKENS = (tokenize.STRING,)


def _defaults(tree: ast.Module) -> list[ast.expr]:
    """Every default of a parameter, and every value a class body gives an annotated field."""
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arguments):
            found += node.defaults + [d for d in node.kw_defaults if d is not None]
        elif isinstance(node, ast.ClassDef):
            found += [
                s.value for s in node.body if isinstance(s, ast.AnnAssign) and s.value is not None
            ]
    return found


def python_lines(text: str) -> tuple[set[int], dict[str, set[int]]]:
    """The lines of a Python module that read the clock: SQL in its strings, and Python calls
    per group."""
    tree = ast.parse(text)
    monotonic_imported = False
    made: list[ast.Call] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            made.append(node)
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            monotonic_imported |= any(a.name == "monotonic" for a in node.names)
    calls: dict[str, set[int]] = {"python": set(), "python-monotonic": set()}
    for call in made:
        if group := _called(call, monotonic_imported):
            calls[group].add(call.lineno)
    walls = WALL_DEFAULTS | ({"monotonic"} if monotonic_imported else set())
    calls["python-defaults"] = {d.lineno for d in _defaults(tree) if ast.unparse(d) in walls}
    sql: set[int] = set()
    if not SQL_NOW.search(text):  # a line of a string reading it would match in the text
        return sql, calls
    docs = _docstring_lines(tree)
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in STRING_TOKENS or token.start[0] in docs:
            continue
        for offset, line in enumerate(token.string.splitlines()):
            if SQL_NOW.search(_sql_code(line)):
                sql.add(token.start[0] + offset)
    return sql, calls


def _sql_code(line: str) -> str:
    """A line of SQL without its `--` comment."""
    return line.split("--", 1)[0]


def sql_file_lines(text: str, bodies_only: bool) -> set[int]:
    """The lines of an SQL file that read the clock; with `bodies_only`, only those inside a
    dollar-quoted body."""
    found: set[int] = set()
    inside: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        code = _sql_code(line)
        tags = DOLLAR.findall(code)
        was_inside = inside is not None
        for tag in tags:
            if inside is None:
                inside = tag
            elif tag == inside:
                inside = None
        in_body = was_inside or inside is not None or bool(tags)
        if SQL_NOW.search(code) and (in_body or not bodies_only):
            found.add(number)
    return found


def audit() -> dict[str, Counter[str]]:
    """Per group, the count of clock-reading lines per file (paths relative to the root)."""
    counts: dict[str, Counter[str]] = {group: Counter() for group in GROUPS}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            name = path.relative_to(ROOT).as_posix()
            skipped = (THE_CLOCK, SCHEMA_SNAPSHOT)
            if name in skipped or path.parent == MIGRATIONS or "__pycache__" in name:
                continue
            if path.suffix == ".py":
                sql, calls = python_lines(path.read_text())
                counts["sql"][name] += len(sql)
                for group, lines in calls.items():
                    counts[group][name] += len(lines)
            elif path.suffix == ".sql":
                text = path.read_text()
                if DEFINITIONS in path.parents:
                    counts["sql-functions"][name] += len(sql_file_lines(text, bodies_only=True))
                else:
                    counts["sql"][name] += len(sql_file_lines(text, bodies_only=False))
    return {group: Counter({k: v for k, v in c.items() if v}) for group, c in counts.items()}


def totals(counts: dict[str, Counter[str]]) -> dict[str, int]:
    return {group: sum(counts[group].values()) for group in GROUPS}


def budget() -> dict[str, dict[str, int]]:
    loaded: dict[str, dict[str, int]] = json.loads(BUDGET.read_text())
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", action="store_true", help="list the lines' counts per file")
    parser.add_argument("--budget", action="store_true", help="print today's figures as JSON")
    args = parser.parse_args(argv)
    counts = audit()
    now = totals(counts)
    if args.budget:
        print(json.dumps(now, indent=2))
        return 0
    committed = budget()
    if args.files:
        for group in GROUPS:
            print(f"## {group}")
            for name, count in sorted(counts[group].items(), key=lambda kv: (-kv[1], kv[0])):
                print(f"{count:5d}  {name}")
    print(f"{'group':<15}{'start':>7}{'budget':>8}{'now':>6}")
    over = False
    for group in GROUPS:
        limit = committed["budget"][group]
        over |= now[group] > limit
        print(f"{group:<15}{committed['start'][group]:>7}{limit:>8}{now[group]:>6}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
