"""What a posture notice says and where it goes, as tables: one notice for the findings of a
pass (a finding several countries see is one entry naming them, worst first), one for the
certificates that crossed an expiry threshold, each naming the monitor, its host and its console
page; and the channels a severity goes by (`Thresholds.finding_channels`)."""

import pytest

from controller.monitors.thresholds import Thresholds
from controller.notify.links import NO_LINKS, Links
from controller.posture.notices import Expiring, expiry, findings, grouped
from controller.posture.rules import CODES, Finding
from tests.unit.test_alert_inputs import PUBLIC_ID, SECRET, monitor

LINKS = Links("https://mailprobe.example.test/")  # a trailing slash is not doubled
PAGE = f"https://mailprobe.example.test/console/monitors/{PUBLIC_ID}"

CHAIN = "the chain did not verify"


def test_one_finding_seen_from_several_countries_is_one_entry_naming_them() -> None:
    found = [Finding("chain_not_verified", cc, CHAIN) for cc in ("US", "DE", "FR")]
    texts = findings(monitor(), found, Links("https://mailprobe.example.test"))
    assert texts.subject == "[mailprobe] Chain not verified: Relay"
    lines = texts.text.splitlines()
    assert lines[0] == "Relay (SMTP mx.example.test:25): Chain not verified, seen from DE, FR, US."
    assert "Chain not verified: critical, seen from DE, FR, US" in lines
    assert f"Seen: {CHAIN}" in lines  # the same detail once, not once per country
    assert "Monitor: Relay (SMTP mx.example.test:25)" in lines
    assert f"Console: {PAGE}" in lines
    assert texts.sms == (
        "mailprobe critical: Relay (mx.example.test): Chain not verified from DE, FR, US " + PAGE
    )


def test_several_findings_of_a_pass_are_one_notice_worst_first() -> None:
    found = [
        Finding("spf_missing", "DE", "no SPF record (v=spf1) at customer.test"),
        Finding("dmarc_missing", "DE", "no DMARC record at _dmarc.customer.test"),
        Finding("mx_mismatch", "US", "MX of customer.test: a.example"),
        Finding("mx_mismatch", "DE", "MX of customer.test: b.example"),
        Finding("tlsa_mismatch", "US", "no DNSSEC-signed TLSA record matches"),
        Finding("spf_missing", "US", "no SPF record (v=spf1) at customer.test"),
    ]
    assert [(g.code, g.countries) for g in grouped(found)] == [
        ("tlsa_mismatch", ("US",)),
        ("dmarc_missing", ("DE",)),
        ("mx_mismatch", ("DE", "US")),
        ("spf_missing", ("DE", "US")),
    ]
    texts = findings(monitor(), found, LINKS)
    assert texts.subject == "[mailprobe] 4 findings (critical): Relay"
    assert texts.text.splitlines()[0] == (
        "Relay (SMTP mx.example.test:25): TLSA mismatch, DMARC missing, MX mismatch and"
        " SPF missing."
    )
    assert "Seen: MX of customer.test: b.example / MX of customer.test: a.example" in texts.text
    assert texts.text.count("What to do: ") == 4
    assert texts.sms.startswith("mailprobe critical: Relay (mx.example.test): TLSA mismatch from")
    assert len(texts.sms) <= 300


def test_a_finding_of_the_monitor_as_a_whole_is_seen_from_every_country() -> None:
    texts = findings(monitor(), [Finding("weak_cipher", "", "cipher RC4-SHA")], NO_LINKS)
    assert "seen from every country" in texts.text.splitlines()[0]
    assert f"Monitor id: {PUBLIC_ID}" in texts.text.splitlines()


@pytest.mark.parametrize(
    ("certs", "subject", "lines", "sms"),
    [
        (
            [Expiring("ab" * 32, 5, 7)],
            "[mailprobe] Certificate expires in 5 days: Relay",
            [
                "The certificate of Relay (SMTP mx.example.test:25) expires in 5 days.",
                "Notice: 7 days before expiry (expires in 5 days)",
            ],
            "mailprobe warning: the certificate of Relay (mx.example.test) expires in 5 days",
        ),
        (
            [Expiring("cd" * 32, 18, 21), Expiring("ef" * 32, -1, 7)],
            "[mailprobe] Certificate has expired: Relay",
            [
                "2 certificates of Relay (SMTP mx.example.test:25) expire soon.",
                f"Certificate SHA-256: {'ef' * 32}",
                f"Certificate SHA-256: {'cd' * 32}",
            ],
            "mailprobe critical: the certificate of Relay (mx.example.test) has expired",
        ),
    ],
)
def test_certificates_crossing_thresholds_in_a_pass_are_one_notice(
    certs: list[Expiring], subject: str, lines: list[str], sms: str
) -> None:
    texts = expiry(monitor(), certs, LINKS)
    assert texts.subject == subject
    for line in [*lines, f"Console: {PAGE}"]:
        assert line in texts.text.splitlines()
    assert texts.sms == f"{sms} {PAGE}"
    for part in (texts.subject, texts.text, texts.html, texts.sms):
        assert SECRET not in part


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (
            Thresholds(),
            {"critical": {"email", "channels"}, "warning": {"email", "channels"}, "info": set()},
        ),
        (
            Thresholds(finding_sms_severities=("critical",), finding_channel_severities=()),
            {"critical": {"email", "sms"}, "warning": {"email"}, "info": set()},
        ),
        (
            Thresholds(
                finding_email_severities=(),
                finding_sms_severities=("info",),
                finding_channel_severities=("critical",),
            ),
            {"critical": {"channels"}, "warning": set(), "info": {"sms"}},
        ),
    ],
)
def test_a_severity_goes_by_the_channels_chosen_for_it(
    t: Thresholds, expected: dict[str, set[str]]
) -> None:
    assert {s: set(t.finding_channels(s)) for s in expected} == expected


def test_every_finding_kind_declares_a_known_severity() -> None:
    assert {severity for severity, _ in CODES.values()} <= {"critical", "warning", "info"}
