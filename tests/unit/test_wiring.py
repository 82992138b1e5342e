"""How the controller's parts reach what they use (an AST scan, no import runs). That only web/
and the composition root (runtime/serve.py) import Litestar is the `litestar` import contract
of pyproject.toml (`make lint`); here:

- no handler looks a service up on the app (`request.app.state.…`): handlers name what they
  use as parameters and Litestar's dependency injection hands it over (controller.web.services);
- no handler takes the whole `ControllerSettings`: each names the settings groups it reads
  (read from the built app's handlers).
"""

import ast
import typing
from pathlib import Path
from typing import cast

import asyncpg
from cryptography.fernet import Fernet
from litestar import Litestar, get
from litestar.di import NamedDependency, Provide

from controller.settings import AccessSettings, ControllerSettings
from controller.web.app import create_app
from tests.unit.test_layers import CONTROLLER, ROOT


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _sources() -> dict[str, str]:
    return {_module(p): p.read_text() for p in sorted(CONTROLLER.rglob("*.py"))}


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


def test_no_handler_reads_the_app_state() -> None:
    assert app_state_reads(_sources()) == []


def test_the_scans_see_what_they_look_for() -> None:
    planted = {
        "controller.web.api.users": (
            "from litestar import get\n"
            "async def h(request):\n"
            "    return request.app.state.pool\n"
            "def m(connection):\n"
            "    s = connection.app.state\n"
            "def w(scope):\n"
            '    return scope["litestar_app"].state.pool\n'
        ),
        "controller.web.app": "def lifespan(app):\n    app.state.services = 1\n",
    }
    assert sorted(app_state_reads(planted)) == [
        "controller.web.api.users:3",
        "controller.web.api.users:5",
        "controller.web.api.users:7",
    ]


def _app(*extra: object) -> Litestar:
    """The API as `serve` builds it (no pool is opened: nothing runs), with `extra` handlers."""
    settings = ControllerSettings.of(
        database_url="postgresql://u@localhost/db", secrets_key=Fernet.generate_key().decode()
    )
    app = create_app(settings, cast(asyncpg.Pool, None))
    for handler in extra:
        app.register(handler)  # type: ignore[arg-type]
    return app


def whole_settings_takers(app: Litestar) -> list[str]:
    """The app's handlers that take the whole ControllerSettings, as `handler:parameter`: a
    parameter of that type, or a dependency whose provider returns it."""
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for name, field in handler.parsed_fn_signature.parameters.items():
                if field.annotation is ControllerSettings:
                    found.append(f"{handler.handler_name}:{name}")
            for name, provide in handler.resolve_dependencies().items():
                if typing.get_type_hints(provide.dependency).get("return") is ControllerSettings:
                    found.append(f"{handler.handler_name}:{name}")
    return sorted(set(found))


def test_no_handler_takes_the_whole_settings() -> None:
    app = _app()
    assert sum(len(getattr(r, "route_handlers", [])) for r in app.routes) > 100
    assert whole_settings_takers(app) == []


def test_the_handler_scan_sees_the_whole_settings() -> None:
    def whole() -> ControllerSettings:
        raise AssertionError("never called")

    def one_group() -> AccessSettings:
        raise AssertionError("never called")

    @get("/planted-param", dependencies={"settings": Provide(one_group, sync_to_thread=False)})
    async def by_parameter(settings: NamedDependency[ControllerSettings]) -> str:
        return ""

    @get("/planted-provider", dependencies={"access": Provide(whole, sync_to_thread=False)})
    async def by_provider(access: NamedDependency[AccessSettings]) -> str:
        return ""

    assert whole_settings_takers(_app(by_parameter, by_provider)) == [
        "by_parameter:settings",
        "by_provider:access",
    ]
