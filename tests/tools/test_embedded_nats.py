"""The embedded nats-server runs Go code on one thread unless the environment says otherwise:
it always shares its host with PostgreSQL and the controller (docs/scaling.md)."""

import json
import urllib.request
from pathlib import Path

import pytest

from shared import embedded


def _gomaxprocs(tmp_path: Path) -> int:
    """What a started embedded server itself reports (`/varz`)."""
    port = embedded.free_port()
    proc, _ = embedded.start_nats(tmp_path / "nats", monitor_port=port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=10) as reply:
            varz = json.load(reply)
    finally:
        embedded.stop(proc)
    assert varz["cores"] >= 1
    return int(varz["gomaxprocs"])


def test_one_go_thread_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    assert _gomaxprocs(tmp_path) == 1


def test_the_environment_decides_when_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOMAXPROCS", "3")
    assert _gomaxprocs(tmp_path) == 3


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, {"GOMAXPROCS": "1"}),
        ({"GOMAXPROCS": "4"}, {"GOMAXPROCS": "4"}),
        ({"PATH": "/bin"}, {"PATH": "/bin", "GOMAXPROCS": "1"}),
    ],
)
def test_nats_env(environ: dict[str, str], expected: dict[str, str]) -> None:
    assert embedded.nats_env(environ) == expected
