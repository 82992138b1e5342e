"""Ruff's S101 refuses `assert` in controller/, agent/ and shared/ (a product guard is a real
error, shared.guards.BrokenInvariant) and lets tests, testkit, tools and bench assert: the
configuration in pyproject.toml, shown on a planted file of each place."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).with_name("ruff")
PLANTED = "def f(x: int | None) -> int:\n    assert x is not None\n    return x\n"


def _refused(path: str) -> bool:
    done = subprocess.run(
        [str(RUFF), "check", "--no-cache", "--stdin-filename", path, "-"],
        input=PLANTED,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return "S101" in done.stdout


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ("controller/monitors/planted.py", True),
        ("agent/planted.py", True),
        ("shared/mailclient/planted.py", True),
        ("tests/unit/planted.py", False),
        ("testkit/planted.py", False),
        ("tools/planted.py", False),
    ],
)
def test_an_assert_is_refused_only_in_product_code(path: str, refused: bool) -> None:
    assert _refused(path) is refused
