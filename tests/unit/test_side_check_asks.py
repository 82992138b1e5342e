"""Which side checks a monitor's rounds ask (controller.sidechecks.asks), as tables: the facts
the ingester refuses (`unasked`) by the monitor's configuration, and the planner's jobs held to
it (every side check a planned job asks is one the ingester takes facts of)."""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from controller.monitors.store import Monitor, RoundState, WatchedMonitor, decode_config
from controller.scheduling import rules as schedule
from controller.secrets.box import SecretBox, generate_key
from controller.secrets.seal_keys import CountryKeys
from controller.sidechecks.asks import asking, unasked
from controller.sidechecks.blocklists.rules import DEFAULT_LISTS
from controller.sidechecks.heartbeat_mail.rules import Reader
from controller.sidechecks.registry import WIRED
from shared.messages import MonitorType
from shared.sealing import generate
from testkit.scheduling import Answered, Readers, round_planner

BOX = SecretBox(generate_key())
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INTERVAL = 600
EVERY = sorted(WIRED)
PASSWORD = {"auth": {"user": "alice", "pass": BOX.seal("s3cret")}}
IMAP = {"protocol": "imap", "user": "alice", "password": BOX.seal("s3cret")}


def monitor(
    kind: MonitorType = "smtp",
    stored: dict[str, Any] | None = None,
    mail_domain: str | None = None,
    reputation: dict[str, list[str]] | None = None,
) -> Monitor:
    stored = stored if stored is not None else {}
    return Monitor(
        id=7,
        public_id=uuid.UUID("0b9f3c1e-8a42-4d55-9a1b-2f6c7d8e9f01"),
        organization_id=3,
        customer_id=1,
        type=kind,
        name="m",
        hostname="mx.example.com",
        port=None,
        status="active",
        check_interval=INTERVAL,
        timeout_seconds=30,
        allowed_country_codes=["DE", "FR"],
        config=decode_config(kind, stored),
        notification_email=None,
        notification_phone_number=None,
        mail_domain=mail_domain,
        reputation=reputation,
        next_due_at=AT,
        created_at=AT,
        updated_at=AT,
        last_checked_at=None,
        config_as_sent=stored,
    )


# Monitors as configured, and the side checks whose facts a result of theirs may not carry.
MONITORS: list[tuple[str, Monitor, set[str]]] = [
    (
        "smtp, nothing opted in",
        monitor(),
        {"mail_dns", "readiness", "relay", "exchange_tls", "heartbeat_mail"},
    ),
    (
        "smtp with a password login",
        monitor(stored=PASSWORD),
        {"mail_dns", "relay", "exchange_tls", "heartbeat_mail"},
    ),
    (
        "smtp with a mail domain",
        monitor(mail_domain="customer.test"),
        {"relay", "exchange_tls", "heartbeat_mail"},
    ),
    (
        "smtp, relay test opted in",
        monitor(stored={"relayCheck": True}),
        {"mail_dns", "readiness", "exchange_tls", "heartbeat_mail"},
    ),
    (
        "smtp with everything",
        monitor(stored={**PASSWORD, "relayCheck": True}, mail_domain="customer.test"),
        {"exchange_tls", "heartbeat_mail"},
    ),
    ("imap with a password", monitor("imap", IMAP), {"mail_dns", "relay", "reverse_dns"}),
    (
        "imap with a mail domain",
        monitor("imap", IMAP, mail_domain="customer.test"),
        {"relay", "reverse_dns"},
    ),
]

CASES = [pytest.param(m, refused, id=name) for name, m, refused in MONITORS]


@pytest.mark.parametrize(("monitor", "refused"), CASES)
def test_the_side_facts_a_result_may_not_carry_by_its_monitors_configuration(
    monitor: Monitor, refused: set[str]
) -> None:
    assert set(unasked(monitor, EVERY)) == refused
    assert unasked(monitor, []) == []
    # One rule: what the ingester takes is what a round that resolves DNS asks.
    assert {c.name for c in asking(monitor, True)} == set(EVERY) - refused


def test_a_gone_monitor_or_an_unknown_side_check_takes_no_facts() -> None:
    assert unasked(None, EVERY) == EVERY
    assert unasked(monitor(), ["mx_count", "reverse_dns"]) == ["mx_count"]


def test_a_round_off_the_dns_cadence_asks_only_the_side_checks_of_their_own_cadence() -> None:
    _, everything, refused = MONITORS[4]
    assert [c.name for c in asking(everything, False)] == ["blocklists"]
    # the ingester cannot tell the round: it takes every one a DNS round asks
    assert set(unasked(everything, EVERY)) == refused


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> CountryKeys:
    directory: Path = tmp_path_factory.mktemp("keys")
    for cc in ("DE", "FR"):
        _, public = generate()
        (directory / f"{cc}.pub").write_text(public)
    return CountryKeys(str(directory))


@pytest.mark.parametrize(("monitor", "refused"), CASES)
def test_every_side_check_a_planned_job_asks_is_one_the_ingester_takes(
    keys: CountryKeys, monitor: Monitor, refused: set[str]
) -> None:
    """A day of a monitor's rounds, scheduled every 10 minutes and triggered between them,
    planned with a DNS window of an hour and the default blocklists (the monitor's address
    listed): no job asks a side check whose facts the ingester would refuse, and every side
    check it takes is asked by some round (the rule is no wider than the planner's)."""
    listed = msgspec.structs.replace(monitor, reputation={"ips": ["192.0.2.1"], "domains": []})
    phase = schedule.phase_ms(str(monitor.public_id), INTERVAL)
    answers = Answered(DEFAULT_LISTS, 3600)
    readers = Readers({7: [Reader("5d1c0a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "erp@", "", 60, 5)]})
    planner = round_planner(BOX, keys, dns_interval_s=3600, blocklists=answers, readers=readers)
    live = frozenset({"DE", "FR"})
    asked: set[str] = set()
    for n in range(144):
        due = schedule.next_due(phase, INTERVAL, AT + timedelta(seconds=INTERVAL * n))
        resolved = None if n == 0 else due - timedelta(minutes=3)
        rounds = RoundState(
            countries=None, since=AT, mail_dns_at=resolved, login_failures=0, login_retry_at=None
        )
        target = WatchedMonitor(msgspec.structs.replace(listed, next_due_at=due), rounds)
        for trigger in (False, True):
            now = due + timedelta(seconds=1 + 300 * trigger)
            plan = planner.round(target, now, live, trigger=trigger)
            assert plan.unusable is None and len(plan.jobs) + len(plan.deferred) == 2, plan
            for job in [*plan.jobs, *(job for _, job in plan.deferred)]:
                assert not unasked(listed, job.side_checks), (now, trigger, job.side_checks)
                asked |= set(job.side_checks)
    assert asked == set(EVERY) - refused
