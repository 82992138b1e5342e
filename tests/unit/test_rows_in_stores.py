"""Rows stay inside the stores (an AST scan of controller/, no import runs).

Every query and every read of a row happens in a store module (`*_store.py`, a package's
`store.py`) or in controller/db/; what a store hands out is a typed Struct. Outside those, the
scan finds:

- `record`: `asyncpg.Record` or `Record`, imported, named or in an annotation;
- `row read`: a subscript of a row-like name (`row`, `r`, `rec`, `record`, `*_row`) by a string,
  the way a Record's columns are read;
- `query`: `.fetchrow(`, `.fetchval(`, `.executemany(`, `.copy_*(` on anything, and `.fetch(`,
  `.execute(`, `.cursor(` on a connection or pool (a name such as `conn`, `pool`, `tx`);

and inside the stores:

- `store hands out`: a public function whose return annotation names a Record or `Any`.

OFFENDERS lists what is left to move, per module and kind; it only shrinks. A module that gets
better fails too until its entry is lowered (or removed), so the list stays the truth.
"""

import ast
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER = ROOT / "controller"

ROW_NAMES = re.compile(r"^(r|row|rec|record|\w+_row)$")
CONN_NAMES = re.compile(r"^(_?(c|conn|connection|pool|tx|db)|\w*_(conn|pool))$")
ANY_RECEIVER = {"fetchrow", "fetchval", "executemany", "copy_records_to_table"}
ANY_RECEIVER |= {"copy_from_query", "copy_to_table", "copy_from_table"}
CONN_RECEIVER = {"fetch", "execute", "cursor"}

# What is left, (module, kind) → count. The target is an empty dict.
OFFENDERS: dict[tuple[str, str], int] = {}


def is_store(path: Path) -> bool:
    rel = path.relative_to(ROOT)
    return (
        rel.parts[:2] == ("controller", "db")
        or path.name == "store.py"
        or path.name.endswith("_store.py")
    )


def _names_record(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "Record"
    if isinstance(node, ast.Attribute):
        return node.attr == "Record"
    if isinstance(node, ast.alias):
        return node.name.rsplit(".", 1)[-1] == "Record"
    return False


def _annotations(tree: ast.AST) -> list[ast.expr]:
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
            found += [a.annotation for a in args if a.annotation is not None]
            if node.returns is not None:
                found.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
    return found


def _quoted(annotation: ast.expr) -> list[ast.AST]:
    """The nodes of the string annotations inside `annotation`, parsed."""
    out: list[ast.AST] = []
    for node in ast.walk(annotation):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                out += list(ast.walk(ast.parse(node.value, mode="eval")))
            except SyntaxError:
                continue
    return out


def _receiver(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def outside_offences(source: str) -> Counter[str]:
    """What a module outside the stores does with rows, by kind."""
    tree = ast.parse(source)
    found: Counter[str] = Counter()
    for node in ast.walk(tree):
        if _names_record(node):
            found["record"] += 1
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and isinstance(node.value, ast.Name)
            and ROW_NAMES.match(node.value.id)
            and (
                isinstance(node.slice, ast.JoinedStr)
                or (isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str))
            )
        ):
            found["row read"] += 1
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func.attr
            if method in ANY_RECEIVER or (
                method in CONN_RECEIVER and CONN_NAMES.match(_receiver(node.func.value))
            ):
                found["query"] += 1
    for annotation in _annotations(tree):
        found["record"] += sum(_names_record(n) for n in _quoted(annotation))
    return found


def store_offences(source: str) -> Counter[str]:
    """The public functions of a store whose return annotation names a Record or Any."""
    found: Counter[str] = Counter()
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and not node.name.startswith("_")
            and node.returns is not None
        ):
            names = [*ast.walk(node.returns), *_quoted(node.returns)]
            if any(_names_record(n) or (isinstance(n, ast.Name) and n.id == "Any") for n in names):
                found["store hands out"] += 1
    return found


def offenders() -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for path in sorted(CONTROLLER.rglob("*.py")):
        source = path.read_text()
        found = store_offences(source) if is_store(path) else outside_offences(source)
        rel = path.relative_to(ROOT).as_posix()
        out |= {(rel, kind): n for kind, n in sorted(found.items()) if n}
    return out


def test_rows_stay_in_the_stores() -> None:
    found = offenders()
    worse = {k: n for k, n in found.items() if n > OFFENDERS.get(k, 0)}
    better = {
        k: (OFFENDERS[k], found.get(k, 0)) for k in OFFENDERS if found.get(k, 0) < OFFENDERS[k]
    }
    assert not worse, f"rows read outside the stores (or Records handed out): {worse}"
    assert not better, f"fewer offenders than listed, lower OFFENDERS (listed, found): {better}"


def test_the_scan_sees_each_kind() -> None:
    outside = outside_offences(
        "import asyncpg\n"
        "from asyncpg import Record\n"
        "def f(row: 'asyncpg.Record', conn) -> None:\n"
        "    conn.fetch('SELECT 1')\n"
        "    conn.fetchrow('SELECT 1')\n"
        "    x = row['a'], r[f'up_{0}'], data['a'], sub.fetch(10)\n"
        "    self._pool.execute('SELECT 1'), other_conn.fetch('SELECT 1'), imap.execute(1)\n"
    )
    assert outside == {"record": 2, "row read": 2, "query": 4}
    inside = store_offences(
        "def a() -> list[asyncpg.Record]: ...\n"
        "async def b() -> dict[str, Any]: ...\n"
        "def c() -> list[Item]: ...\n"
        "def _d() -> asyncpg.Record: ...\n"
    )
    assert inside == {"store hands out": 2}
    assert is_store(CONTROLLER / "ingest" / "store.py")
    assert is_store(CONTROLLER / "access" / "accounts_store.py")
    assert is_store(CONTROLLER / "db" / "pool.py")
    assert not is_store(CONTROLLER / "web" / "api" / "results.py")
