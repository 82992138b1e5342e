"""The web surfaces (API, AlertSite, console) and apply/export take the typed `Monitor`: the
store decodes it once, its stored config as sent is read by two places only, and no surface
reaches into another's private helpers."""

import ast
from pathlib import Path
from typing import Any

import msgspec
import pytest

from controller.monitors import change_rules as rules
from controller.monitors.kinds import ALL_TYPES, IMAP_POP, PORT_HINTS, ROUNDTRIP, SMTP
from controller.monitors.store import WRITABLE, decode, stored_values
from controller.monitors.write_model import ImapPopSecretEnv, RoundTripSecretEnv, SmtpSecretEnv
from shared.messages import (
    ImapPopConfig,
    JobConfig,
    MonitorType,
    RoundTripConfig,
    RoundTripSend,
    SmtpConfig,
    default_port,
)
from tests.unit.test_monitor_decode import row

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER = ROOT / "controller"
SURFACES = [CONTROLLER / "web", CONTROLLER / "ascode"]
# The readers of `Monitor.config_as_sent` (see its docstring): the response building, and the
# store's `stored_values`, which the write path compares changes with.
AS_SENT_READERS = {
    "controller/monitors/store.py",
    "controller/monitors/writes.py",
    "controller/web/api/monitor_rules.py",
}


def _modules(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_stored_values_are_the_writable_columns_config_as_sent() -> None:
    """Pins: a write compares its changes with the columns as stored, the config as sent (not
    the typed one, which spells defaults out)."""
    sent = {"requireTls": True}
    monitor = decode(row("smtp", sent))  # type: ignore[arg-type]
    values = stored_values(monitor)
    assert set(values) == WRITABLE
    assert values["config"] == sent and values["hostname"] == "mx.example.com"


@pytest.mark.parametrize(
    ("changes", "nothing"),
    [
        ({"config": {"requireTls": True}}, True),
        ({"config": {"requireTls": True}, "name": "probe", "port": None}, True),
        # The same typed config, with a default spelt out: the response would show it, so it
        # is a change.
        ({"config": {"requireTls": True, "secure": False}}, False),
        ({"config": {}}, False),
        ({"status": "disabled"}, False),
    ],
)
def test_a_restated_monitor_changes_nothing(changes: dict[str, Any], nothing: bool) -> None:
    monitor = decode(row("smtp", {"requireTls": True}))  # type: ignore[arg-type]
    assert rules.changes_nothing(stored_values(monitor), changes) is nothing


def _as_sent_reads(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and n.attr == "config_as_sent"
    ]


def test_config_as_sent_is_read_by_the_response_and_the_write_path_only() -> None:
    """Pins: every other reader takes the typed `config`."""
    readers = {_rel(p) for p in _modules(CONTROLLER) if _as_sent_reads(p)}
    assert readers <= AS_SENT_READERS
    assert readers  # the scan sees the readers


def _monitor_subscripts(path: Path) -> list[str]:
    """`monitor["…"]` / `monitor['…']` in `path`: a monitor read as a Record or dict."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{n.lineno}: {ast.unparse(n)}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Subscript)
        and isinstance(n.value, ast.Name)
        and n.value.id in ("monitor", "m")
        and isinstance(n.slice, ast.Constant)
        and isinstance(n.slice.value, str)
    ]


def test_surfaces_read_monitors_typed() -> None:
    """Pins: the web surfaces and apply/export read a monitor's fields as attributes of the
    typed `Monitor`, never by column name."""
    found = {_rel(p): s for p in _modules(*SURFACES) if (s := _monitor_subscripts(p))}
    assert found == {}


def _private_imports(path: Path) -> list[str]:
    """Names starting with `_` that `path` imports from another controller module."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{n.lineno}: {n.module}.{a.name}"
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("controller.")
        for a in n.names
        if a.name.startswith("_")
    ]


def test_no_surface_imports_another_modules_private_helpers() -> None:
    """Pins: an operation two surfaces share (a trigger-check, a write) lives where it belongs
    and both call it; the console does not reach into the API's private helpers."""
    found = {_rel(p): s for p in _modules(*SURFACES) if (s := _private_imports(p))}
    assert found == {}


def test_the_scans_see_what_they_look_for(tmp_path: Path) -> None:
    copy = tmp_path / "copy.py"
    copy.write_text(
        "from controller.web.api.results import WINDOWS, _trigger\n"
        "def f(monitor, m):\n"
        "    return monitor['id'], m[\"type\"], monitor.config_as_sent\n"
    )
    assert len(_private_imports(copy)) == 1
    assert len(_monitor_subscripts(copy)) == 2
    assert _as_sent_reads(copy) == [3]


def _with_tls(monitor_type: str, tls: bool) -> JobConfig:
    if monitor_type == "smtp":
        return SmtpConfig(secure=tls)
    if monitor_type == "roundtrip":
        return RoundTripConfig(send=RoundTripSend(secure=tls))
    return ImapPopConfig(tls=tls)


@pytest.mark.parametrize("monitor_type", ALL_TYPES)
def test_every_type_says_its_default_ports(monitor_type: MonitorType) -> None:
    """Pins: the console's port hint of each type of the registry names the ports
    `default_port` uses, with TLS first."""
    hint = PORT_HINTS[monitor_type]
    on, off = (default_port(monitor_type, _with_tls(monitor_type, t)) for t in (True, False))
    assert hint.startswith(f"{on} with ") and hint.endswith(f", else {off}")


def test_each_kinds_secret_env_names_exactly_its_secrets() -> None:
    """`secretEnv` takes a variable for each secret the kind has, at the path the kind keeps
    it, and nothing else (the request Struct and the registry held together)."""
    for kind, struct in ((SMTP, SmtpSecretEnv), (IMAP_POP, ImapPopSecretEnv)):
        names = {f.encode_name for f in msgspec.structs.fields(struct)}
        assert names == set(kind.all_secrets), kind.name
    names = {f.encode_name for f in msgspec.structs.fields(RoundTripSecretEnv)}
    assert names == set(ROUNDTRIP.all_secrets)
