"""The scheduler is three parts and a worker (docs/architecture.md, "Schedule"): the planner,
admission and the publisher each take a handful of collaborators (at most six, before the
keyword-only settings values), know nothing of each other, and meet only in the worker, which
takes the three and the pool. Read from the sources (an AST scan, no import runs)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCHEDULING = ROOT / "controller/scheduling"
PARTS = {"planner": "Planner", "admission": "Admission", "publisher": "JobPublisher"}
WORKER = ("scheduler", "Scheduler")
HANDFUL = 6


def collaborators(source: str, cls: str) -> list[str]:
    """The names `cls.__init__` takes before its keyword-only parameters (its collaborators)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    return [a.arg for a in item.args.args[1:]]
    raise AssertionError(f"no {cls}.__init__")


def imported(source: str, package: str = "controller.scheduling") -> set[str]:
    """The modules of `package` that `source` imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == package:
                found |= {a.name for a in node.names}
            elif node.module.startswith(f"{package}."):
                found.add(node.module.rsplit(".", 1)[1])
    return found


def test_the_scan_reads_constructors_and_imports() -> None:
    source = (
        "from controller.scheduling import planner as p\n"
        "from controller.scheduling.publisher import JobPublisher\n"
        "class A:\n    def __init__(self, pool, js, *, batch: int = 1) -> None: ...\n"
    )
    assert collaborators(source, "A") == ["pool", "js"]
    assert imported(source) == {"planner", "publisher"}


def test_each_part_takes_a_handful_and_none_knows_another() -> None:
    for module, cls in PARTS.items():
        source = (SCHEDULING / f"{module}.py").read_text()
        taken = collaborators(source, cls)
        assert 1 <= len(taken) <= HANDFUL, (cls, taken)
        assert not imported(source) & {*PARTS, WORKER[0]}, module


def test_the_worker_takes_the_three_parts_and_the_pool() -> None:
    source = (SCHEDULING / f"{WORKER[0]}.py").read_text()
    assert collaborators(source, WORKER[1]) == ["pool", "planner", "admission", "publisher"]
    assert set(PARTS) <= imported(source)
