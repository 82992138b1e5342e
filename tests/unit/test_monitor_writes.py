"""Monitor writes: the pure rules as tables, and that `controller.monitors.writes` is the only
place in the controller that inserts, updates or deletes a monitor row."""

import ast
from pathlib import Path
from typing import Any

import pytest

from controller.monitors import change_rules as rules

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER = ROOT / "controller"
SERVICE = CONTROLLER / "monitors" / "writes.py"
WRITES = {"insert", "update", "delete"}


@pytest.mark.parametrize(
    ("changes", "reset"),
    [
        ({"check_interval": 120}, True),
        ({"status": "disabled"}, True),
        ({"status": "active", "name": "x"}, True),
        ({"name": "x", "hostname": "mx.example.com"}, False),
        ({"allowed_country_codes": ["DE"]}, False),  # countries: planned each round, no regrid
        ({"timeout_seconds": 5}, False),
        ({}, False),
    ],
)
def test_due_reset_on_interval_or_status(changes: dict[str, Any], reset: bool) -> None:
    """Pins: setting the interval or the status clears `next_due_at` (the scheduler puts the
    monitor on its new grid); no other column touches the due time."""
    out = rules.with_due_reset(changes)
    assert ("next_due_at" in out) is reset
    if reset:
        assert out["next_due_at"] is None
    assert {k: v for k, v in out.items() if k != "next_due_at"} == changes


ROW = {"name": "a", "status": "active", "next_due_at": 5, "config": {"x": 1}}


@pytest.mark.parametrize(
    ("changes", "nothing"),
    [
        ({}, True),
        ({"name": "a"}, True),
        ({"name": "a", "config": {"x": 1}}, True),
        ({"name": "b"}, False),
        ({"config": {"x": 2}}, False),
        # Status restated: the due reset makes it a change (as it always was).
        (rules.with_due_reset({"status": "active"}), False),
    ],
)
def test_changes_nothing(changes: dict[str, Any], nothing: bool) -> None:
    """Pins: a write is skipped exactly when every column it sets already holds that value."""
    assert rules.changes_nothing(ROW, changes) is nothing


def test_creating_cites_no_status() -> None:
    """Pins: a create's budget refusal never names the status (a new monitor had no checks)."""
    budget = {"check_interval": "interval", "status": "enabled", "timeout_seconds": "timeout"}
    assert rules.creating(budget) == {"check_interval": "interval", "timeout_seconds": "timeout"}


def _monitor_writes(path: Path) -> list[str]:
    """`monitors.insert/update/delete` calls in `path` (any alias of controller.monitors.store,
    or those functions imported by name), as `line: text`."""
    tree = ast.parse(path.read_text(), str(path))
    aliases: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "controller.monitors":
            aliases |= {a.asname or a.name for a in node.names if a.name == "store"}
        elif isinstance(node, ast.ImportFrom) and node.module == "controller.monitors.store":
            found += [f"{node.lineno}: imports {a.name}" for a in node.names if a.name in WRITES]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "controller.monitors.store" and a.asname:
                    aliases.add(a.asname)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in WRITES
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
        if (
            isinstance(node, ast.Attribute)
            and node.attr in WRITES
            and ast.unparse(node.value) == "controller.monitors.store"
        ):
            found.append(f"{node.lineno}: controller.monitors.store.{node.attr}")
    return found


def test_only_the_service_writes_monitor_rows() -> None:
    """Pins: every monitor insert, update and delete in the controller goes through
    `controller/monitors/writes.py`, so no surface can write a monitor without fair use, secret
    binding, the due-time reset or the no-op skip (a fourth copy fails here)."""
    offenders = {
        str(path.relative_to(ROOT)): calls
        for path in sorted(CONTROLLER.rglob("*.py"))
        if path != SERVICE and (calls := _monitor_writes(path))
    }
    assert offenders == {}
    assert _monitor_writes(SERVICE)  # the check sees the service's own calls


def test_the_check_sees_a_copy(tmp_path: Path) -> None:
    """Pins: the scan above finds each spelling of a direct write."""
    copy = tmp_path / "copy.py"
    copy.write_text(
        "from controller.monitors import store as m\n"
        "from controller.monitors.store import delete\n"
        "import controller.monitors.store\n"
        "async def f(conn):\n"
        "    await m.insert(conn, 1, {})\n"
        "    await controller.monitors.store.update(conn, 1, {})\n"
    )
    assert len(_monitor_writes(copy)) == 3
