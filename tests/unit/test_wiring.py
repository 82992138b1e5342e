"""How the controller's parts reach what they use (an AST scan, no import runs):

- only web/ and the composition root that serves it (runtime/serve.py) import Litestar: the
  domain packages (monitors/, scheduling/, ...) take their collaborators as arguments and
  know nothing of HTTP;
- no handler looks a service up on the app (`request.app.state.…`): handlers name what they
  use as parameters and Litestar's dependency injection hands it over (controller.web.services).
"""

import ast
from pathlib import Path

from tests.unit.test_layers import CONTROLLER, ROOT, imports_of

LITESTAR_IMPORTERS = ("controller.web", "controller.runtime.serve")


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _sources() -> dict[str, str]:
    return {_module(p): p.read_text() for p in sorted(CONTROLLER.rglob("*.py"))}


def litestar_outside_web(sources: dict[str, str]) -> list[str]:
    """The modules, outside web/ and the composition root, that import Litestar at run time."""
    return [
        module
        for module, source in sources.items()
        if not any(module == w or module.startswith(w + ".") for w in LITESTAR_IMPORTERS)
        and any(i.split(".")[0] == "litestar" for i in imports_of(source, module))
    ]


def _an_app(node: ast.expr) -> bool:
    """`<something>.app` (a request's or a connection's) or `scope["litestar_app"]`."""
    if isinstance(node, ast.Attribute):
        return node.attr == "app"
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.slice, ast.Constant)
        and node.slice.value == "litestar_app"
    )


def app_state_reads(sources: dict[str, str]) -> list[str]:
    """Each read of a running app's state, as `module:line`."""
    return [
        f"{module}:{node.lineno}"
        for module, source in sources.items()
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr == "state" and _an_app(node.value)
    ]


def test_only_web_and_the_composition_root_import_litestar() -> None:
    assert litestar_outside_web(_sources()) == []


def test_no_handler_reads_the_app_state() -> None:
    assert app_state_reads(_sources()) == []


def test_the_scans_see_what_they_look_for() -> None:
    planted = {
        "controller.monitors.writes": "from litestar import Request\n",
        "controller.scheduling.trigger": "def f():\n    import litestar.datastructures\n",
        "controller.web.api.users": (
            "from litestar import get\n"
            "async def h(request):\n"
            "    return request.app.state.pool\n"
            "def m(connection):\n"
            "    s = connection.app.state\n"
            "def w(scope):\n"
            '    return scope["litestar_app"].state.pool\n'
        ),
        "controller.runtime.serve": "from litestar import Litestar\n",
        "controller.web.app": "def lifespan(app):\n    app.state.services = 1\n",
    }
    assert litestar_outside_web(planted) == [
        "controller.monitors.writes",
        "controller.scheduling.trigger",
    ]
    assert sorted(app_state_reads(planted)) == [
        "controller.web.api.users:3",
        "controller.web.api.users:5",
        "controller.web.api.users:7",
    ]
