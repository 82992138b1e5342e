"""Which monitors a fact of a mail domain concerns (issue 80): one rule, `findings.concerns`,
for the agents' domain facts and the report findings alike."""

import pytest

import controller.sidechecks.registry  # noqa: F401  (declares every finding kind)
from controller.sidechecks import findings
from controller.sidechecks.findings import DOMAIN_FACTS, concerns


@pytest.mark.parametrize(
    ("code", "monitor_type", "concerned"),
    [
        # mail sent in the domain's name: SMTP monitors and round trips
        ("spf_missing", "smtp", True),
        ("spf_missing", "roundtrip", True),
        ("spf_missing", "imap", False),
        ("dmarc_invalid", "pop3", False),
        ("dkim_key_weak", "roundtrip", True),
        ("dkim_key_changed", "imap", False),
        ("dmarc_failures_reported", "smtp", True),
        ("dmarc_failures_reported", "imap", False),
        # mail the domain's MX receives over SMTP
        ("mta_sts_invalid", "smtp", True),
        ("mta_sts_invalid", "imap", False),
        ("tls_rpt_missing", "roundtrip", True),
        ("tls_rpt_missing", "pop3", False),
        ("tls_failures_reported", "pop3", False),
        # a monitor's own finding concerns it whatever its type
        ("certificate_expired", "imap", True),
        ("dkim_revoked", "roundtrip", True),
        ("basic_auth_retiring", "pop3", True),
    ],
)
def test_a_domain_fact_concerns_the_monitors_of_what_it_is_about(
    code: str, monitor_type: str, concerned: bool
) -> None:
    assert concerns(code, monitor_type) is concerned


def test_every_domain_fact_says_what_it_is_about() -> None:
    assert set(findings.ABOUT) == DOMAIN_FACTS
    for code in DOMAIN_FACTS:
        assert not concerns(code, "imap") and not concerns(code, "pop3"), code


def test_a_domain_fact_about_nothing_known_is_refused() -> None:
    with pytest.raises(ValueError, match="about nothing known"):
        findings.domain_facts({"spf_missing": "outbound-ish"})
