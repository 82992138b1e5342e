"""Every statement that reads `check_results` bounds its `hour` column too: the view unpacks
closed hours from `result_packs`, and only a bound on `hour` reaches the packs' index (a bound
on `scheduled_at` alone reads every pack of the monitor). A new reader cannot forget it."""

import ast
import functools
from pathlib import Path

from controller.jobs.result_kinds import scheduled_since

CONTROLLER = Path(__file__).parents[2] / "controller"
# Readers that compose their bounds at run time, with the reason.
COMPOSED = {
    # its `cond` bounds `hour` with `since` and `until`; the widening windows add `extra`
    ("ingest/store.py", "list_page"),
}


def _text(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text_of(v) for v in node.values)
    return None


def _text_of(value: ast.expr) -> str:
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return value.value
    if isinstance(value, ast.FormattedValue):
        call = value.value
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "scheduled_since":
            return scheduled_since("?")
    return ""


@functools.cache
def _statements() -> list[tuple[str, str, str]]:
    """(file, enclosing function, statement text) of each string naming `FROM check_results`;
    a call of `scheduled_since` in it (which bounds `hour`) reads as its text. A module whose
    text never names `check_results` has no such string: it is not parsed."""
    found: list[tuple[str, str, str]] = []
    for path in sorted(CONTROLLER.rglob("*.py")):
        where = str(path.relative_to(CONTROLLER))
        source = path.read_text()
        if "check_results" not in source:
            continue
        tree = ast.parse(source, str(path))
        for fn in [
            n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)
        ]:
            parts = {id(v) for n in ast.walk(fn) if isinstance(n, ast.JoinedStr) for v in n.values}
            for node in ast.walk(fn):
                text = _text(node) if isinstance(node, ast.expr) and id(node) not in parts else None
                if text is not None and "FROM check_results" in text:
                    found.append((where, fn.name, text))
    return found


def test_the_scan_finds_the_readers() -> None:
    assert len({(f, fn) for f, fn, _ in _statements()}) >= 10


def test_every_reader_of_check_results_bounds_its_hour() -> None:
    unbounded = {
        (where, fn)
        for where, fn, text in _statements()
        if "hour" not in text and (where, fn) not in COMPOSED
    }
    assert not unbounded, sorted(unbounded)
