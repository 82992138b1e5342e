"""The import contracts of pyproject.toml ([tool.importlinter], run by `make lint`) each break on
a violation planted in a copy of the tree, and each report names only the violation planted for
its contract."""

import shutil
import subprocess
import sys
import tomllib
from itertools import pairwise
from pathlib import Path

import pytest

pytestmark = pytest.mark.breadth

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("controller", "agent", "shared", "tests", "bench", "testkit")

# Contract id → (planted file, its text): an import the contract forbids.
PLANTED = {
    "controller-agent": ("controller/ingest/planted.py", "import agent.worker\n"),
    "agent-controller": ("agent/planted.py", "from controller.db import pool\n"),
    "shared": ("shared/planted.py", "def f() -> None:\n    import controller.settings\n"),
    # An import inside a function points up the layers as much as one at the top.
    "controller-layers": (
        "controller/notify/planted.py",
        "def f() -> None:\n    from controller.alerting import rules\n",
    ),
    "web-importers": ("controller/runtime/planted.py", "import controller.web.app\n"),
    "litestar": ("controller/scheduling/planted.py", "def f() -> None:\n    import litestar\n"),
    "tests-bench": ("testkit/planted.py", "import bench\n"),
    "db-bottom": (
        "controller/db/planted.py",
        "from controller.settings import ControllerSettings\n",
    ),
}


def _contract_ids() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["id"] for c in config["tool"]["importlinter"]["contracts"]}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages lint-imports reads and pyproject.toml, copied."""
    copy = tmp_path_factory.mktemp("contracts")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def _names(tree: Path) -> dict[str, str]:
    """Contract name → id."""
    contracts = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["name"]: c["id"] for c in contracts["contracts"]}


def reports(tree: Path) -> dict[str, str]:
    """The id of each contract `lint-imports` finds broken in `tree`, with its report (the
    imports it names)."""
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    names = _names(tree)
    found = {i for name, i in names.items() if f"{name} BROKEN" in done.stdout}
    kept = {i for name, i in names.items() if f"{name} KEPT" in done.stdout}
    assert found | kept == set(names.values()), done.stdout + done.stderr
    assert (done.returncode != 0) == bool(found), done.stdout + done.stderr
    # After the summary, each broken contract's report: its name underlined, then its imports.
    _, _, detail = done.stdout.partition("Broken contracts")
    headed = {detail.find(f"\n{name}\n-"): names[name] for name in names if names[name] in found}
    assert -1 not in headed, done.stdout
    return {headed[a]: detail[a:b] for a, b in pairwise([*sorted(headed), len(detail)])}


def broken(tree: Path) -> set[str]:
    """The ids of the contracts `lint-imports` finds broken in `tree`."""
    return set(reports(tree))


def test_every_contract_has_its_planted_violation() -> None:
    assert set(PLANTED) == _contract_ids()


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    assert broken(tree) == set()


def _module(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def test_each_planted_violation_breaks_its_contract_alone(tree: Path) -> None:
    """Every violation planted at once (one run of lint-imports): each contract is broken, and
    its report names its own planted module and no other's."""
    for path, text in PLANTED.values():
        (tree / path).write_text(text)
    try:
        found = reports(tree)
    finally:
        for path, _ in PLANTED.values():
            (tree / path).unlink()
    assert set(found) == set(PLANTED)
    for contract in PLANTED:
        named = {c for c, (p, _) in PLANTED.items() if f"{_module(p)} ->" in found[contract]}
        assert named == {contract}, found[contract]


def test_a_package_without_a_layer_breaks_the_layers(tree: Path) -> None:
    package = tree / "controller" / "planted"
    package.mkdir()
    (package / "__init__.py").write_text("")
    try:
        assert broken(tree) == {"controller-layers"}
    finally:
        shutil.rmtree(package)


# What the contracts allow: imports for types only, and the packages allowed to import web/ and
# Litestar importing them in their own __init__ too.
ALLOWED = {
    "controller/db/planted.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from controller.web.app import create_app\n"
        "    import agent.worker\n"
    ),
    "controller/web/__init__.py": "import litestar\n",
    "controller/ascode/__init__.py": "import controller.web\n",
    "controller/runtime/serve.py": "import controller.web\n",
}


def test_what_the_contracts_allow_breaks_none(tree: Path) -> None:
    kept = {path: (tree / path).read_text() for path in ALLOWED if (tree / path).exists()}
    for path, text in ALLOWED.items():
        (tree / path).write_text(kept.get(path, "") + text)
    try:
        assert broken(tree) == set()
    finally:
        for path in ALLOWED:
            if path in kept:
                (tree / path).write_text(kept[path])
            else:
                (tree / path).unlink()
