"""The controller's structure rules that import contracts cannot state (an AST scan, no import
runs). The layers themselves (the packages' order, controller and agent sharing only shared/,
who imports web/, db/ at the bottom) are import-linter contracts in pyproject.toml, checked by
`make lint` (tests/tools/test_import_contracts.py plants a violation of each); here:

- docs/architecture.md ("Layers") states the order the layers contract holds;
- the pure modules (`rules`, `*_rules`, `plan`, `kinds`) reach no store, no db module and no
  asyncpg, directly or through the controller modules they import. Imports inside a function
  count as any other; imports under `if TYPE_CHECKING:` are types only and do not count.
"""

import ast
import re
import tomllib
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER = ROOT / "controller"


def layers() -> tuple[str, ...]:
    """The controller's packages, top to bottom, as the layers contract of pyproject.toml lists
    them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = (
        c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "controller-layers"
    )
    return tuple(contract["layers"])


def _name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _type_checking(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): its body never runs; its `else` does."""
    return isinstance(node, ast.If) and ast.unparse(node.test) in (
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    )


def imports_of(source: str, module: str) -> set[str]:
    """The modules `source` (the module `module`) imports at run time: each `from a.b import c`
    as `a.b` and, when it is a module, `a.b.c`."""
    found: set[str] = set()
    stack: list[ast.AST] = [ast.parse(source)]
    while stack:
        node = stack.pop()
        if _type_checking(node):
            assert isinstance(node, ast.If)
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
        stack.extend(ast.iter_child_nodes(node))
    return found


@cache
def _modules() -> dict[str, Path]:
    return {_name(p): p for p in CONTROLLER.rglob("*.py")}


def _runtime_imports(module: str) -> set[str]:
    return imports_of(_modules()[module].read_text(), module)


def _is_io(module: str) -> bool:
    """A store, a db module or the database driver."""
    last = module.rsplit(".", 1)[-1]
    return (
        module.split(".")[0] == "asyncpg"
        or module == "controller.db"
        or module.startswith("controller.db.")
        or (module.startswith("controller.") and (last == "store" or last.endswith("_store")))
    )


def io_reached(module: str, imports: dict[str, set[str]]) -> dict[str, list[str]]:
    """The store/db modules `module` reaches, each with the import chain that gets there,
    following the controller's own modules (`imports`: module → what it imports)."""
    reached: dict[str, list[str]] = {}
    seen = {module}
    queue = [[module]]
    while queue:
        chain = queue.pop(0)
        for target in sorted(imports.get(chain[-1], ())):
            if target in seen:
                continue
            seen.add(target)
            if _is_io(target):
                reached[target] = [*chain, target]
            elif target in imports:
                queue.append([*chain, target])
    return reached


def _is_pure(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return last in ("rules", "plan", "kinds") or last.endswith("_rules")


@cache
def _graph() -> dict[str, set[str]]:
    return {m: _runtime_imports(m) for m in _modules()}


def test_the_docs_state_the_layers() -> None:
    """docs/architecture.md's "Layers" says the order the layers contract holds, top to bottom."""
    text = (ROOT / "docs" / "architecture.md").read_text().split("\n### Layers\n", 1)[1]
    order = text.split("\n\n", 2)[1]
    assert tuple(re.findall(r"`(\w+)/?`", order)) == layers()


def test_pure_modules_reach_no_store() -> None:
    """Pins: `rules`, `*_rules`, `plan` and `kinds` modules do no I/O, not even through another
    module of the controller they import."""
    graph = _graph()
    pure = sorted(m for m in graph if _is_pure(m))
    assert "controller.scheduling.plan" in pure and "controller.monitors.kinds" in pure
    found = {m: chains for m in pure if (chains := io_reached(m, graph))}
    assert found == {}


def test_the_scans_see_what_they_look_for() -> None:
    planted = (
        "from typing import TYPE_CHECKING\n"
        "from controller.monitors import store as monitors\n"
        "from . import helper\n"
        "import controller.web.api.errors\n"
        "if TYPE_CHECKING:\n"
        "    from controller.ingest.store import ResultRow\n"
        "def f():\n"
        "    from controller.db.pool import Conn\n"
        "if TYPE_CHECKING:\n"
        "    pass\n"
        "else:\n"
        "    from controller.access import accounts_store\n"
        "if not TYPE_CHECKING:\n"
        "    import controller.fleet.live\n"
    )
    imports = imports_of(planted, "controller.scheduling.plan")
    assert "controller.monitors.store" in imports
    assert "controller.scheduling.helper" in imports
    assert "controller.web.api.errors" in imports
    assert "controller.db.pool" in imports
    assert "controller.ingest.store" not in imports
    assert "controller.access.accounts_store" in imports  # an `else:` runs
    assert "controller.fleet.live" in imports  # so does `if not TYPE_CHECKING:`
    graph = {
        "controller.x.rules": {"controller.x.helper"},
        "controller.x.helper": {"controller.y.things_store", "msgspec"},
    }
    assert io_reached("controller.x.rules", graph) == {
        "controller.y.things_store": [
            "controller.x.rules",
            "controller.x.helper",
            "controller.y.things_store",
        ]
    }
    assert _is_io("asyncpg") and _is_io("controller.db.sql") and not _is_io("controller.storage")


def _assigned(source: str, name: str) -> bool:
    return any(
        isinstance(n, ast.Assign | ast.AnnAssign)
        and any(
            isinstance(t, ast.Name) and t.id == name
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
        )
        for n in ast.walk(ast.parse(source))
    )


def test_all_types_is_the_registrys_and_the_wires() -> None:
    """Pins: `ALL_TYPES` is defined once, by the kind registry, and names exactly the types a
    job can carry (it once meant two different sets in two modules)."""
    from controller.monitors.kinds import ALL_TYPES
    from shared.messages import JOB_TYPES

    defined = [
        str(p.relative_to(ROOT))
        for top in ("controller", "shared", "agent")
        for p in (ROOT / top).rglob("*.py")
        if "ALL_TYPES" in (text := p.read_text()) and _assigned(text, "ALL_TYPES")
    ]
    assert defined == ["controller/monitors/kinds.py"]
    assert set(ALL_TYPES) == set(JOB_TYPES)
    assert _assigned("ALL_TYPES = ('smtp',)\n", "ALL_TYPES")
    assert _assigned("ALL_TYPES: tuple[str, ...] = ()\n", "ALL_TYPES")
