"""The version is written once, in pyproject.toml: what reports it (OpenAPI `info.version`,
`/health`, agent heartbeats) reads the installed distribution's metadata."""

import tomllib
from importlib.metadata import version
from pathlib import Path

from shared import __version__

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_pyprojects_and_written_nowhere_else() -> None:
    """Pins the single version source: `shared.__version__` is pyproject's version as installed,
    and no module of the three packages spells it out (a second copy would drift)."""
    written = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == version("mailprobe") == written
    copies = [
        p.relative_to(ROOT).as_posix()
        for package in ("controller", "agent", "shared")
        for p in (ROOT / package).rglob("*.py")
        if f'"{written}"' in p.read_text()
    ]
    assert not copies, copies
