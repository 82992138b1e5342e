"""`Any` in product code is a small, listed set (an AST scan, no import runs).

Every use of `typing.Any` in controller/, agent/ and shared/ is counted per module: the name
`Any` (or `typing.Any`) wherever it stands, in an annotation, an alias, a `cast` or a generic's
arguments; the import itself does not count. LISTED names each module that may use it, how many
times and why `Any` is the right type there (a value of unknown shape at a boundary, a library's
invariant generic, a hook msgspec calls with anything). A module over its count, or a new module
using `Any`, fails; so does a module under its count, until its entry is lowered (or removed),
so the list stays the truth and only shrinks.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("controller", "agent", "shared")

# module path → uses of `Any` allowed, and why `Any` is right there.
LISTED: dict[str, int] = {
    "controller/web/alertsite/mapping.py": 28,  # not yet reviewed
    "shared/stream_move.py": 14,  # not yet reviewed
    "controller/ascode/spec.py": 11,  # not yet reviewed
    "controller/web/console/pages.py": 11,  # not yet reviewed
    "controller/ascode/plan.py": 9,  # not yet reviewed
    "controller/web/api/report_mailbox.py": 8,  # not yet reviewed
    "controller/web/console/form_fields.py": 8,  # not yet reviewed
    "controller/web/console/forms.py": 8,  # not yet reviewed
    "controller/web/console/status.py": 8,  # not yet reviewed
    "controller/web/console/status_feeds.py": 8,  # not yet reviewed
    "controller/ascode/channels.py": 7,  # not yet reviewed
    "controller/monitors/writes.py": 7,  # not yet reviewed
    "controller/web/api/monitor_kinds.py": 7,  # not yet reviewed
    "controller/web/request_types.py": 7,  # not yet reviewed
    "controller/web/api/monitor_rules.py": 6,  # not yet reviewed
    "agent/probers/imap.py": 5,  # not yet reviewed
    "controller/monitors/kinds.py": 5,  # not yet reviewed
    "controller/monitors/secret_binding.py": 5,  # not yet reviewed
    "controller/posture/facts.py": 5,  # not yet reviewed
    "controller/web/console/roundtrip_view.py": 5,  # not yet reviewed
    "agent/worker.py": 4,  # not yet reviewed
    "controller/ascode/device_cli.py": 4,  # not yet reviewed
    "controller/reports/mailbox/imap.py": 4,  # not yet reviewed
    "controller/web/alertsite/routes.py": 4,  # not yet reviewed
    "controller/monitors/config.py": 3,  # not yet reviewed
    "controller/notify/apprise_channel.py": 3,  # not yet reviewed
    "controller/reports/mailbox_store.py": 3,  # not yet reviewed
    "controller/scheduling/trigger.py": 3,  # not yet reviewed
    "controller/web/api/posture.py": 3,  # not yet reviewed
    "controller/web/console/monitor_view.py": 3,  # not yet reviewed
    "shared/embedded.py": 3,  # not yet reviewed
    "controller/db/pool.py": 2,  # not yet reviewed
    "controller/monitors/oauth2_grants.py": 2,  # not yet reviewed
    "controller/oauth2/device.py": 2,  # not yet reviewed
    "controller/oauth2/fetcher.py": 2,  # not yet reviewed
    "controller/web/console/status_notice_forms.py": 2,  # not yet reviewed
    "shared/messages.py": 2,  # not yet reviewed
    "controller/access/credentials.py": 1,  # not yet reviewed
    "controller/monitors/change_rules.py": 1,  # not yet reviewed
    "controller/monitors/fair_use.py": 1,  # not yet reviewed
    "controller/monitors/store.py": 1,  # not yet reviewed
    "controller/monitors/write_values.py": 1,  # not yet reviewed
    "controller/notify/__init__.py": 1,  # not yet reviewed
    "controller/notify/outbox_store.py": 1,  # not yet reviewed
    "controller/scheduling/job_config.py": 1,  # not yet reviewed
    "controller/scheduling/plan.py": 1,  # not yet reviewed
    "controller/web/api/alerts.py": 1,  # not yet reviewed
    "controller/web/api/openapi_doc.py": 1,  # not yet reviewed
    "controller/web/console/posture_view.py": 1,  # not yet reviewed
    "controller/web/console/report_view.py": 1,  # not yet reviewed
}


def _is_any(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "Any"
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "Any"
        and isinstance(node.value, ast.Name)
        and node.value.id == "typing"
    )


def uses_of_any(source: str) -> int:
    """The uses of `Any` in a module's source: names, not imports, not strings."""
    return sum(1 for node in ast.walk(ast.parse(source)) if _is_any(node))


def counted() -> dict[str, int]:
    found: dict[str, int] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            n = uses_of_any(path.read_text())
            if n:
                found[path.relative_to(ROOT).as_posix()] = n
    return found


def test_scan_counts_names_not_imports_or_strings() -> None:
    source = (
        "import typing\n"
        "from typing import Any\n"
        "x: Any = 1\n"
        "y: 'Any' = 2\n"
        "def f(a: dict[str, Any], *b: typing.Any) -> list[Any]: ...\n"
        "z = cast(Any, x)  # Any in a comment\n"
    )
    assert uses_of_any(source) == 5


def test_any_only_where_listed() -> None:
    found = counted()
    over = {m: (n, LISTED.get(m, 0)) for m, n in found.items() if n > LISTED.get(m, 0)}
    under = {m: (found.get(m, 0), n) for m, n in LISTED.items() if found.get(m, 0) < n}
    assert not over, f"`Any` beyond LISTED, module: (found, listed): {over}"
    assert not under, f"fewer `Any` than LISTED, lower the entry: (found, listed): {under}"
