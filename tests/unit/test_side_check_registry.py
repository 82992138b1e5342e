"""Every side check is registered everywhere it must be (issue 65): a wire module of
shared/sidechecks, an agent module of agent/sidechecks and a controller package of
controller/sidechecks are in their registries, the same names on both sides with the same wire;
each is in the results API's schema, on the console's monitor page, in the metrics, bounded at
ingest, and its finding kinds declared. A side check added on one side only, or left out of a
surface, fails here (docs/architecture.md, "Adding a side check")."""

import importlib
import pkgutil
import re
from pathlib import Path

import msgspec
import pytest
from prometheus_client import generate_latest

import agent.sidechecks
import controller.sidechecks
import shared.sidechecks
from agent.sidechecks import SIDE_CHECKS as AGENT
from agent.sidechecks import relay as agent_relay
from controller.ingest import store as results_store  # noqa: F401  (what the ingester loads)
from controller.posture.rules import CODES
from controller.sidechecks import facts_store
from controller.sidechecks.findings import DOMAIN_FACTS, SENDING, domain_facts
from controller.sidechecks.registry import SIDE_CHECKS, WIRED
from controller.web.api.results import CheckResultOut
from shared.messages import SmtpCheckJob, SmtpConfig
from shared.sidechecks import SideCheckWire
from shared.sidechecks.relay import RelayAsk
from testkit.peers.jobs import make_job

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "controller" / "web" / "console" / "templates"


def _modules(package: object) -> list[str]:
    path = getattr(package, "__path__")  # noqa: B009
    return [m.name for m in pkgutil.iter_modules(path)]


def test_every_wire_module_is_registered_on_both_sides_with_the_same_wire() -> None:
    wires = {}
    for name in _modules(shared.sidechecks):
        module = importlib.import_module(f"shared.sidechecks.{name}")
        if isinstance(wire := getattr(module, "WIRE", None), SideCheckWire):
            wires[wire.name] = wire
    assert set(wires) == set(AGENT) == set(WIRED), (set(wires), set(AGENT), set(WIRED))
    for name, wire in wires.items():
        assert AGENT[name].wire is wire and WIRED[name].wire is wire, name


def test_every_side_check_module_and_package_is_in_its_registry() -> None:
    """An agent module or a controller package with a `SIDE_CHECK` that no registry names
    would never run."""
    for name in _modules(agent.sidechecks):
        check = getattr(importlib.import_module(f"agent.sidechecks.{name}"), "SIDE_CHECK", None)
        if check is not None:
            assert AGENT.get(check.wire.name) is check, f"agent/sidechecks/{name}.py"
    packages = [m.name for m in pkgutil.iter_modules(controller.sidechecks.__path__) if m.ispkg]
    assert packages
    for name in packages:
        check = importlib.import_module(f"controller.sidechecks.{name}").SIDE_CHECK
        assert SIDE_CHECKS.get(check.name) is check, f"controller/sidechecks/{name}/"


def test_every_side_check_that_rides_jobs_is_in_the_results_api_schema() -> None:
    schema = msgspec.json.schema(CheckResultOut)
    defs = schema["$defs"]
    side = defs["CheckResultOut"]["properties"]["sideChecks"]
    ref = side.get("$ref", "").rsplit("/", 1)[-1]
    assert set(defs[ref]["properties"]) == set(WIRED)


def test_every_side_checks_findings_are_declared_for_posture_its_api_and_notices() -> None:
    for check in SIDE_CHECKS.values():
        for code in check.codes:
            assert CODES[code] == check.codes[code], (check.name, code)


def test_every_side_check_is_on_the_console_monitor_page() -> None:
    """Shown by the page's side checks section: its latest answers (a side check that keeps
    rows of facts), or a link to its own section, which the page must have."""
    page = (TEMPLATES / "monitor.html").read_text()
    assert '{% include "_side_checks.html" %}' in page
    included = [page] + [
        (TEMPLATES / name).read_text() for name in re.findall(r'include "(_[a-z_]+\.html)"', page)
    ]
    ids = {i for text in included for i in re.findall(r'<section id="([a-z-]+)"', text)}
    for check in SIDE_CHECKS.values():
        if check.console is not None:
            assert check.console in ids, (check.name, check.console)
        else:
            assert facts_store.keeps_rows(check), check.name


def test_every_side_check_that_rides_results_is_bounded_at_ingest() -> None:
    """An agent is a stranger: the ingester cuts every side check's facts to its bound."""
    assert [name for name, check in WIRED.items() if check.bound is None] == []


def test_every_side_check_has_its_series_in_the_metrics() -> None:
    text = generate_latest().decode()
    for name in SIDE_CHECKS:
        assert f'mailprobe_side_check_facts_total{{side_check="{name}"}}' in text, name


def test_the_relay_test_runs_when_its_side_check_asks_and_only_then() -> None:
    """An agent of this version reads `sideChecks`, whatever an older controller's
    `relayCheck` says."""
    on = make_job("smtp", 25, SmtpConfig(relay_check=True))
    off = make_job("smtp", 25, SmtpConfig())
    for job, ask, runs in ((on, None, False), (off, RelayAsk(), True), (on, RelayAsk(), True)):
        prepared = agent_relay.prepare(job, ask)
        assert isinstance(prepared, SmtpCheckJob) and prepared.config.relay_check is runs


def test_a_domain_fact_is_declared_and_a_monitors_own_finding_is_not_one() -> None:
    """Facts of the mail domain (issue 80: one finding per customer and domain, counted once,
    one notice per recipient) are declared kinds; what compares the domain with the monitor's
    own host or login stays the monitor's."""
    assert set(CODES) >= DOMAIN_FACTS
    for code in ("spf_missing", "dmarc_missing", "dmarc_policy_none", "spf_changed"):
        assert code in DOMAIN_FACTS, code
    own = ("mx_mismatch", "mta_sts_mismatch", "tlsa_mismatch", "basic_auth_retiring")
    assert not DOMAIN_FACTS & set(own)
    with pytest.raises(ValueError, match="not declared"):
        domain_facts({"no_such_code": SENDING})
