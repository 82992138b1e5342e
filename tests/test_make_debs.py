"""`make test-debs` (and `make browser`, ...): the Debian packages of every listed binary that is
missing, each once, in one `apt-get update` and one `apt-get install`; nothing when none is.

`apt-get` here is a script on PATH that writes down how it was called (and `sudo` one that
runs it): what is tested is the Makefile's choice of packages, not apt.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _make(tmp_path: Path, debs: str) -> list[str]:
    """The calls `make test-debs` made with TEST_DEBS=`debs`, one line each."""
    calls = tmp_path / "calls"
    tools = tmp_path / "bin"
    tools.mkdir(exist_ok=True)
    scripts = {"apt-get": f'echo "apt-get $*" >> {calls}', "sudo": 'exec env "$@"'}
    for name, script in scripts.items():
        (tools / name).write_text(f"#!/bin/sh\n{script}\n")
        (tools / name).chmod(0o755)
    subprocess.run(
        ["make", "--no-print-directory", "test-debs", f"TEST_DEBS={debs}"],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"},
        check=True,
        capture_output=True,
        timeout=30,
    )
    return calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_the_missing_packages_go_in_one_install(tmp_path: Path) -> None:
    calls = _make(
        tmp_path,
        "/nonexistent/a=pkg-a,pkg-b /bin/sh=pkg-present /nonexistent/b=pkg-b /nonexistent/c=pkg-c",
    )
    assert len(calls) == 2
    assert calls[0] == "apt-get update -q"
    assert calls[1].startswith("apt-get install -y -q --no-install-recommends ")
    assert sorted(calls[1].split()[5:]) == ["pkg-a", "pkg-b", "pkg-c"]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_nothing_runs_when_every_binary_is_there(tmp_path: Path) -> None:
    assert _make(tmp_path, "/bin/sh=pkg-present /bin/ls=other") == []
