"""What the alerter takes of a typed `Monitor` (controller.monitors.store) without a database:
the countries a round goes to, `judge`'s view of the monitor (`JudgedMonitor.of`), who is
notified (controller.notify.recipients) and what an incident notice says
(controller.notify.texts), as tables."""

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from controller.alerting.rules import JudgedMonitor, expected_countries
from controller.monitors.store import Monitor, RoundState
from controller.notify.incident import Incident
from controller.notify.links import NO_LINKS, Links
from controller.notify.recipients import CHANNELS, Outgoing, Owner, to_owners, to_recipients
from controller.notify.texts import Kind, Texts, render, target
from shared.messages import SmtpAuth, SmtpConfig
from shared.secret import Secret

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PUBLIC_ID = UUID("5f0c6f5e-2f4a-4d47-9d3e-0a4f2b8d3c11")
SECRET = "enc:v1:sealed-secret-never-in-a-notice"
LINKS = Links("https://mailprobe.example.test")
PAGE = f"https://mailprobe.example.test/console/monitors/{PUBLIC_ID}"


def monitor(**changes: object) -> Monitor:
    values: dict[str, object] = {
        "id": 7,
        "public_id": PUBLIC_ID,
        "organization_id": 1,
        "customer_id": 2,
        "type": "smtp",
        "name": "Relay",
        "hostname": "mx.example.test",
        "port": 25,
        "status": "active",
        "check_interval": 60,
        "timeout_seconds": 10,
        "allowed_country_codes": None,
        "config": SmtpConfig(auth=SmtpAuth(user="login-user-x7", password=Secret(SECRET))),
        "notification_email": "ops@example.test",
        "notification_phone_number": None,
        "mail_domain": None,
        "next_due_at": None,
        "created_at": AT,
        "updated_at": AT,
        "last_checked_at": None,
        "config_as_sent": {"auth": {"user": "login-user-x7", "pass": SECRET}},
    }
    return Monitor(**(values | changes))  # type: ignore[arg-type]


def rounds(countries: list[str] | None = None) -> RoundState:
    return RoundState(
        countries=countries, since=AT, mail_dns_at=None, login_failures=0, login_retry_at=None
    )


@pytest.mark.parametrize(
    ("allowed", "latest", "expected", "why"),
    [
        (["DE", "FR"], ["US"], (["DE", "FR"], 2), "the listed countries first"),
        (None, ["US", "JP", "BR"], (["US", "JP", "BR"], 3), "else the latest round's"),
        ([], ["US"], (["US"], 1), "an empty list is no list"),
        (None, None, (None, 2), "else the default count, the countries unknown"),
        (None, [], (None, 2), "a latest round sent nowhere tells nothing"),
    ],
)
def test_the_countries_a_round_goes_to(
    allowed: list[str] | None,
    latest: list[str] | None,
    expected: tuple[list[str] | None, int],
    why: str,
) -> None:
    assert expected_countries(allowed, latest, 2) == expected, why


@pytest.mark.parametrize(
    ("changes", "latest", "judged", "why"),
    [
        ({}, None, JudgedMonitor(str(PUBLIC_ID), timedelta(minutes=1), 3), "defaults"),
        (
            {"allowed_country_codes": ["DE"], "check_interval": 300},
            ["US", "FR"],
            JudgedMonitor(str(PUBLIC_ID), timedelta(minutes=5), 1),
            "listed countries, the interval in seconds",
        ),
        (
            {"status": "disabled"},
            ["US", "FR"],
            JudgedMonitor(str(PUBLIC_ID), timedelta(minutes=1), 2, disabled=True),
            "disabled",
        ),
        (
            {"status": "maintenance"},
            None,
            JudgedMonitor(str(PUBLIC_ID), timedelta(minutes=1), 3),
            "maintenance is not disabled (its notices are held, elsewhere)",
        ),
        (
            {"type": "roundtrip"},
            None,
            JudgedMonitor(str(PUBLIC_ID), timedelta(minutes=1), 3, roundtrip=True),
            "a round trip",
        ),
    ],
)
def test_judge_sees_the_typed_monitor_and_its_rounds(
    changes: dict[str, object], latest: list[str] | None, judged: JudgedMonitor, why: str
) -> None:
    assert JudgedMonitor.of(monitor(**changes), rounds(latest), 3) == judged, why


TEXTS = Texts("subject", "text", "<p>html</p>", "sms")


@pytest.mark.parametrize(
    ("email", "phone", "expected"),
    [
        (
            "ops@example.test",
            None,
            [
                Outgoing(
                    "down", "email", "ops@example.test", "subject", "text", "<p>html</p>", "k:email"
                )
            ],
        ),
        (
            None,
            "+4915112345678",
            [Outgoing("down", "sms", "+4915112345678", "", "sms", None, "k:sms")],
        ),
        (
            "ops@example.test",
            "+4915112345678",
            [
                Outgoing(
                    "down", "email", "ops@example.test", "subject", "text", "<p>html</p>", "k:email"
                ),
                Outgoing("down", "sms", "+4915112345678", "", "sms", None, "k:sms"),
            ],
        ),
        (None, None, []),
        ("", "", []),
    ],
)
def test_a_monitors_notice_goes_to_each_of_its_recipients(
    email: str | None, phone: str | None, expected: list[Outgoing]
) -> None:
    m = monitor(notification_email=email, notification_phone_number=phone)
    *notes, channels = to_recipients("down", m, TEXTS, "k")
    assert notes == expected
    # and the monitor's notification channels, whatever its addresses (the store expands it)
    assert channels == Outgoing("down", CHANNELS, "", "subject", "text", None, "k")


def test_an_organization_notice_goes_by_email_to_each_owner_keyed_per_owner() -> None:
    owners = [Owner(3, "a@example.test"), Owner(9, "b@example.test")]
    notes = to_owners("login_cap", owners, TEXTS, "login_cap:7:t")
    assert [(n.channel, n.target, n.dedupe_key) for n in notes] == [
        ("email", "a@example.test", "login_cap:7:t:3"),
        ("email", "b@example.test", "login_cap:7:t:9"),
    ]
    assert to_owners("login_cap", [], TEXTS, "k") == []


def incident(**changes: object) -> Incident:
    values: dict[str, object] = {
        "id": 11,
        "public_id": UUID(int=11),
        "monitor_id": 7,
        "started_at": AT,
        "opened_at": AT,
        "ended_at": None,
        "cause_kind": "refused",
        "cause": "connection refused",
        "countries": ["DE", "FR"],
        "notified": False,
        "reminders": 0,
        "end_reason": None,
        "recovery_held": False,
    }
    return Incident(**(values | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "changes", "subject", "lines"),
    [
        ("down", {}, "[mailprobe] DOWN: Relay", ["Cause: connection refused", "Seen from: DE, FR"]),
        (
            "reminder",
            {},
            "[mailprobe] Still down: Relay for 30m",
            ["Relay (SMTP mx.example.test:25) has been down for 30m."],
        ),
        (
            "recovered",
            {"ended_at": AT + timedelta(minutes=20)},
            "[mailprobe] Recovered: Relay after 20m",
            ["Downtime: 20m"],
        ),
        (
            "no_data",
            {"ended_at": AT + timedelta(minutes=5), "end_reason": "no data for 60m"},
            "[mailprobe] Closed for lack of data: Relay (not recovered)",
            ["Why: no data for 60m"],
        ),
    ],
)
def test_incident_notices_are_built_from_the_typed_monitor_and_incident(
    kind: Kind, changes: dict[str, object], subject: str, lines: list[str]
) -> None:
    texts = render(kind, monitor(), incident(**changes), AT + timedelta(minutes=30), LINKS)
    assert texts.subject == subject
    named = ["Monitor: Relay (SMTP mx.example.test:25)", f"Console: {PAGE}"]
    for line in [*lines, *named]:
        assert line in texts.text.splitlines()
    assert f"<a href='{PAGE}'>" in texts.html
    assert texts.sms.endswith(f" {PAGE}") and "mx.example.test" in texts.sms
    for part in (texts.subject, texts.text, texts.html, texts.sms):
        assert SECRET not in part and "login-user-x7" not in part, "never a word of the config"


def test_a_notice_names_the_target_on_one_line() -> None:
    m = monitor(
        name="Relay\r\nBcc: x@evil.test", type="pop3", hostname="pop.example.test", port=None
    )
    assert target(m) == "POP3 pop.example.test"
    texts = render("down", m, incident(), AT, NO_LINKS)
    assert "\n" not in texts.subject and "\r" not in texts.subject
    assert texts.subject == "[mailprobe] DOWN: Relay  Bcc: x@evil.test"


def test_without_public_url_a_notice_names_the_monitor_and_its_id_but_links_nowhere() -> None:
    texts = render("down", monitor(), incident(), AT, NO_LINKS)
    lines = texts.text.splitlines()
    assert "Monitor: Relay (SMTP mx.example.test:25)" in lines
    assert f"Monitor id: {PUBLIC_ID}" in lines
    assert "http" not in texts.text and "<a " not in texts.html and "http" not in texts.sms


def test_a_long_sms_keeps_its_words_and_drops_the_link() -> None:
    texts = render("down", monitor(name="R" * 280), incident(), AT, LINKS)
    assert PAGE not in texts.sms and len(texts.sms) <= 300
