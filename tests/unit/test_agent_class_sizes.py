"""No class of agent/ takes more than 12 constructor parameters or holds more than 30 methods
(issue 81: the agent in small parts, the job feed, the check runner, the result sink and the
worker's slots, each named for what it owns). Counted with ast; shown to fail on planted
classes."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARAMETERS_MAX = 12
METHODS_MAX = 30


def sizes(source: str) -> dict[str, tuple[int, int]]:
    """Each class of `source` (nested ones too): (its constructor's parameters, `self` left
    out, `*args` and `**kwargs` counting one each; its methods, properties included)."""
    found: dict[str, tuple[int, int]] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        methods = [m for m in node.body if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)]
        parameters = 0
        for method in methods:
            if method.name == "__init__":
                a = method.args
                parameters = len(a.posonlyargs) + len(a.args) - 1 + len(a.kwonlyargs)
                parameters += (a.vararg is not None) + (a.kwarg is not None)
        found[node.name] = (parameters, len(methods))
    return found


def too_big(source: str) -> list[str]:
    return [
        f"{name}: {parameters} constructor parameters, {methods} methods"
        for name, (parameters, methods) in sizes(source).items()
        if parameters > PARAMETERS_MAX or methods > METHODS_MAX
    ]


def test_no_class_of_the_agent_is_too_big() -> None:
    found = {
        str(path.relative_to(ROOT)): wrong
        for path in sorted((ROOT / "agent").rglob("*.py"))
        if (wrong := too_big(path.read_text()))
    }
    assert not found, found


def _planted(parameters: int, methods: int) -> str:
    args = ", ".join(f"a{i}: int" for i in range(parameters))
    body = "".join(f"    def m{i}(self) -> None: ...\n" for i in range(methods - 1))
    return f"class Planted:\n    def __init__(self, {args}) -> None: ...\n{body}"


@pytest.mark.parametrize(
    ("parameters", "methods", "refused"),
    [(12, 30, False), (13, 30, True), (12, 31, True), (0, 1, False)],
)
def test_a_planted_class_past_either_bound_is_found(
    parameters: int, methods: int, refused: bool
) -> None:
    assert sizes(_planted(parameters, methods)) == {"Planted": (parameters, methods)}
    assert bool(too_big(_planted(parameters, methods))) is refused


def test_keyword_only_and_star_parameters_count() -> None:
    source = "class K:\n    def __init__(self, a, /, b, *c, d, e=1, **f) -> None: ...\n"
    assert sizes(source) == {"K": (6, 1)}
