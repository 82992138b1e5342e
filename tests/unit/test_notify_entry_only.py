"""Every notice goes through the one notify entry (controller/notify/entry.py, `notify`):
no other module of the product queues a notification itself, so each notice names its source
(its budget) and maintenance is decided in one place. Read from the sources (an AST scan, no
import runs); the scan is tried on the writes it must catch."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRY = "controller/notify/entry.py"
STORE = "controller/notify/outbox_store.py"
ENQUEUE = re.compile(r"^enqueue")
INSERT = re.compile(r"INSERT\s+INTO\s+notification_outbox\b", re.IGNORECASE)


def writes(source: str) -> list[str]:
    """What in `source` queues a notification without the entry: a use of the outbox store's
    `enqueue*` (through the module or imported by name), or an INSERT into its table."""
    if "enqueue" not in source and "notification_outbox" not in source.lower():
        return []  # neither a use of the store's `enqueue*` nor an INSERT can be in it
    found: list[str] = []
    store_names = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "controller.notify":
            store_names |= {a.asname or a.name for a in node.names if a.name == "outbox_store"}
        if isinstance(node, ast.ImportFrom) and node.module == "controller.notify.outbox_store":
            found += [f"import {a.name}" for a in node.names if ENQUEUE.match(a.name)]
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "controller.notify.outbox_store":
                    store_names.add(a.asname or a.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and ENQUEUE.match(node.attr)
            and ast.unparse(node.value) in store_names
        ):
            found.append(ast.unparse(node))
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and INSERT.search(node.value)
        ):
            found.append(node.value[:60])
    return found


def test_the_scan_catches_every_way_to_write_the_outbox() -> None:
    caught = [
        "from controller.notify import outbox_store as outbox_db\n"
        "async def f(conn):\n    await outbox_db.enqueue(conn, 1, None, [])\n",
        "from controller.notify import outbox_store\n"
        "async def f(conn):\n    await outbox_store.enqueue_for_organization(conn, 1, [])\n",
        "from controller.notify.outbox_store import enqueue\n",
        "import controller.notify.outbox_store as o\nasync def f(c):\n    await o.enqueue(c)\n",
        'Q = "INSERT INTO notification_outbox (monitor_id, kind) VALUES ($1, $2)"\n',
    ]
    for source in caught:
        assert writes(source), source
    fine = (
        "from controller.notify import outbox_store as outbox_db\n"
        "async def f(conn):\n    return await outbox_db.list_history(conn, 1, 10, 0)\n"
    )
    assert writes(fine) == []


def test_nothing_but_the_entry_queues_a_notification() -> None:
    offenders = {}
    for path in sorted((ROOT / "controller").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel in (ENTRY, STORE):
            continue
        if found := writes(path.read_text()):
            offenders[rel] = found
    assert not offenders, f"call controller.notify.entry.notify instead: {offenders}"


def test_the_entry_is_what_queues() -> None:
    assert writes((ROOT / ENTRY).read_text())
