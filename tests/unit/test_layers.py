"""The controller's layers, read from its imports (an AST scan, no import runs):

- its packages stand in one declared order, `LAYERS`, from what starts it (`__main__`) down to
  the plumbing (`db`): a module imports, at run time, only modules of its own package or of a
  package below it, so no two packages import each other, directly or round a longer cycle. A
  top-level module (`cli.py`, `tail.py`) is a package of its own. Imports inside a function
  count as any other; imports under `if TYPE_CHECKING:` are types only and do not count.
  docs/architecture.md ("Layers") states the same order;
- only web/ itself, the composition root that builds the app (runtime/serve.py) and apply/export
  (ascode/, a client of the API that checks its files with the API's own request types, and the
  OAuth2 device-code command, which finds a monitor through the API the same way) import
  controller.web: the write path, fair use, the trigger and every worker answer in their own
  terms (controller.monitors.errors), and web/ says it as HTTP;
- the pure modules (`rules`, `*_rules`, `plan`, `kinds`) reach no store, no db module and no
  asyncpg, directly or through the controller modules they import.
"""

import ast
import re
from collections.abc import Mapping, Set
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER = ROOT / "controller"
# Modules outside web/ that may import it, and why (see the module docstring).
WEB_IMPORTERS = {"controller.runtime.serve", "controller.ascode"}

# The controller's packages, top to bottom: each imports only those below it (and itself).
LAYERS = (
    "__main__",  # `python -m controller`: each command, its module imported once chosen
    "tail",  # `controller tail`: a deployment's logs, read through the CLI
    "cli",  # the command line's grammar, light to import
    "ascode",  # clients of the API: apply/export, oauth2-device
    "runtime",  # the composition root: each role's objects built and run
    "web",  # HTTP: the API, the console, AlertSite
    "statuspages",  # customers' public status pages: content, notices, subscribers, stores
    "reports",  # TLS-RPT/DMARC reports taken and judged
    "alerting",  # rounds judged into states, incidents and notices: the alerter
    "posture",  # mail security posture: findings, the alerter's posture pass
    "scheduling",  # due rounds → jobs, confirmations, admission, the trigger
    "ingest",  # results stored (the results store, the alert queue it marks), packed, kept
    "fleet",  # live agents, their load and self-checks; the fleet's health told to operators
    "oracles",  # resolvers and blocklists checked before they are believed; world metrics
    "operator_health",  # operator facts per (name, country): the step, the table, the telling
    "sidechecks",  # the side checks' registry, frame, findings, facts and each one's package
    "roundtrips",  # round trips: what may be sent, what was delivered
    "oauth2",  # access tokens of monitors' logins
    "notify",  # channels, texts, the notification and event outboxes
    "monitors",  # the monitor's model, its one write path, fair use, alert thresholds
    "logins",  # login back-off and caps of monitors' accounts
    "access",  # mailprobe's own accounts, customers, logins to it
    "observability",  # the controller's metrics
    "jobs",  # a check job's id and lifetime; the results the controller records itself
    "secrets",  # secrets at rest, countries' sealing keys
    "db",  # the pool, migrations, SQL helpers
)


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


def package_of(module: str) -> str | None:
    """The controller package a module is in (`controller.ingest.store` → `ingest`; a top-level
    module is its own: `controller.cli` → `cli`); None outside the controller's packages."""
    parts = module.split(".")
    return parts[1] if parts[0] == "controller" and len(parts) > 1 else None


def package_edges(
    graph: Mapping[str, Set[str]], known: Set[str]
) -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) → the imports that make that edge
    (`module -> module`), over the modules of `graph` (module → what it imports); a target
    counts when it, or the module it names a member of, is in `known`."""
    edges: dict[tuple[str, str], list[str]] = {}
    for module, imports in graph.items():
        a = package_of(module)
        for target in sorted(imports):
            b = package_of(target)
            if a is None or b is None or a == b:
                continue
            if target not in known and target.rsplit(".", 1)[0] not in known:
                continue
            edges.setdefault((a, b), []).append(f"{module} -> {target}")
    return edges


def upward(
    edges: Mapping[tuple[str, str], list[str]], layers: tuple[str, ...]
) -> dict[str, list[str]]:
    """The edges that point up `layers` (or touch a package it does not place)."""
    rank = {p: i for i, p in enumerate(layers)}
    return {
        f"{a} -> {b}": found
        for (a, b), found in sorted(edges.items())
        if a not in rank or b not in rank or rank[a] > rank[b]
    }


def cycles(edges: Set[tuple[str, str]]) -> list[list[str]]:
    """The packages that import each other, directly or round a longer cycle: each strongly
    connected set of more than one package, sorted (Tarjan's algorithm)."""
    nodes = sorted({n for e in edges for n in e})
    out: dict[str, list[str]] = {n: sorted(b for a, b in edges if a == n) for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(n: str) -> None:
        index[n] = low[n] = len(index)
        stack.append(n)
        for m in out[n]:
            if m not in index:
                visit(m)
                low[n] = min(low[n], low[m])
            elif m in stack:
                low[n] = min(low[n], index[m])
        if low[n] == index[n]:
            group = []
            while True:
                m = stack.pop()
                group.append(m)
                if m == n:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for n in nodes:
        if n not in index:
            visit(n)
    return sorted(found)


def _controller_edges() -> dict[tuple[str, str], list[str]]:
    return package_edges(_graph(), set(_modules()))


def test_every_package_has_its_layer() -> None:
    """A package added to the controller takes its place in `LAYERS` (and in the docs)."""
    packages = {package_of(m) for m in _modules()} - {None}
    assert len(set(LAYERS)) == len(LAYERS)
    assert packages == set(LAYERS)


def test_imports_point_down_the_layers() -> None:
    """Pins: no module imports, at run time, a package above its own in `LAYERS` (so the
    composition root is at the top, the metrics below every worker, the outboxes below
    everyone who tells anyone anything)."""
    assert upward(_controller_edges(), LAYERS) == {}


def test_no_cycles_between_packages() -> None:
    """Pins: no two packages import each other, directly or round a longer cycle (what
    `LAYERS` implies, said on its own so a failure names the packages)."""
    assert cycles(set(_controller_edges())) == []


def test_controller_and_agent_share_only_shared() -> None:
    """Pins docs/architecture.md: nothing in `controller` imports `agent`, nor the reverse, and
    `shared` imports neither."""
    banned = {"controller": {"agent"}, "agent": {"controller"}, "shared": {"agent", "controller"}}
    found = [
        f"{module} -> {target}"
        for top, others in banned.items()
        for path in sorted((ROOT / top).rglob("*.py"))
        for module in [_name(path)]
        for target in sorted(imports_of(path.read_text(), module))
        if target.split(".")[0] in others
    ]
    assert found == []


def test_the_docs_state_the_layers() -> None:
    """docs/architecture.md's "Layers" says the order `LAYERS` holds, top to bottom."""
    text = (ROOT / "docs" / "architecture.md").read_text().split("\n### Layers\n", 1)[1]
    order = text.split("\n\n", 2)[1]
    assert tuple(re.findall(r"`(\w+)/?`", order)) == LAYERS


def test_only_web_and_its_builders_import_web() -> None:
    """Pins: the write path, fair use, the trigger and the workers do not reach up into web/."""
    found = {
        m: sorted(i for i in imports if i.startswith("controller.web"))
        for m, imports in _graph().items()
        if not m.startswith("controller.web")
        and not any(m == w or m.startswith(w + ".") for w in WEB_IMPORTERS)
    }
    assert {m: i for m, i in found.items() if i} == {}


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
    modules = {
        "controller.web.app": {"controller.alerting.state_store", "controller.web.api"},
        "controller.alerting.state_store": {"controller.notify.outbox_store.enqueue"},
        "controller.notify.outbox_store": {"controller.web.app", "controller.db.pool.Conn"},
        "controller.cli": {"controller.notify"},
        "controller.notify": set(),
        "controller.db.pool": {"asyncpg"},
    }
    edges = package_edges(modules, set(modules))
    assert set(edges) == {
        ("web", "alerting"),
        ("alerting", "notify"),
        ("notify", "web"),
        ("notify", "db"),
        ("cli", "notify"),
    }
    assert upward(edges, ("cli", "web", "alerting", "notify", "db")) == {
        "notify -> web": ["controller.notify.outbox_store -> controller.web.app"]
    }
    assert upward(edges, ("web", "alerting", "notify", "db")) == {
        "cli -> notify": ["controller.cli -> controller.notify"],  # a package with no place
        "notify -> web": ["controller.notify.outbox_store -> controller.web.app"],
    }
    assert cycles(set(edges)) == [["alerting", "notify", "web"]]
    assert cycles({("a", "b"), ("b", "a"), ("c", "d")}) == [["a", "b"]]
    assert cycles(set(edges) - {("notify", "web")}) == []


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
        if _assigned(p.read_text(), "ALL_TYPES")
    ]
    assert defined == ["controller/monitors/kinds.py"]
    assert set(ALL_TYPES) == set(JOB_TYPES)
    assert _assigned("ALL_TYPES = ('smtp',)\n", "ALL_TYPES")
    assert _assigned("ALL_TYPES: tuple[str, ...] = ()\n", "ALL_TYPES")
