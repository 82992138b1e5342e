"""Posture rules as tables: facts from stored results, quality and drift verdicts, baseline moves,
the drift debounce, and expiry notices once per threshold."""

from datetime import UTC, datetime
from typing import Any

import pytest

from controller.posture.facts import Observation, StoredFacts, observe
from controller.posture.rules import (
    Change,
    Finding,
    Tracker,
    baseline_moves,
    drift,
    expiry_notice,
    quality,
)

CERT_A = "a" * 64
CERT_B = "b" * 64


def ok(country: str, **facts: Any) -> Observation:
    """A healthy STARTTLS server as `country` sees it, with `facts` changed."""
    base: dict[str, Any] = {
        "starttls": True,
        "auth": frozenset({"PLAIN", "LOGIN"}),
        "tls_version": "TLSv1.3",
        "cipher": "TLS_AES_256_GCM_SHA384",
        "cert_sha256": CERT_A,
        "key_type": "EC",
        "key_bits": 256,
        "signature": "ecdsa-with-SHA256",
        "chain_verified": True,
        "name_matched": True,
        "days_left": 80,
    }
    return Observation(country=country, **(base | facts))


def held(verdicts: dict[Any, Finding | None]) -> set[tuple[str, str]]:
    return {key for key, finding in verdicts.items() if finding is not None}


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (  # STARTTLS upgrade: offered, AUTH read over TLS
            {
                "tls": {"mode": "starttls", "version": "TLSv1.3", "certSha256": CERT_A},
                "capabilities": ["AUTH PLAIN LOGIN", "SIZE 100"],
                "capabilities_before_tls": ["STARTTLS", "SIZE 100"],
            },
            {"starttls": True, "auth": frozenset({"PLAIN", "LOGIN"}), "cert_sha256": CERT_A},
        ),
        (  # stripped: plain, no STARTTLS in what was advertised
            {"tls": None, "capabilities": ["SIZE 100"], "capabilities_before_tls": None},
            {"starttls": False, "auth": frozenset(), "tls_version": None},
        ),
        (  # implicit TLS: the upgrade is not a question
            {"tls": {"mode": "implicit"}, "capabilities": ["AUTH=PLAIN", "IMAP4REV1"]},
            {"starttls": None, "auth": frozenset({"PLAIN"})},
        ),
        (  # an older agent: no facts at all
            {"tls": None, "capabilities": None, "capabilities_before_tls": None},
            {"starttls": None, "auth": None},
        ),
        (  # POP3 says STLS and SASL
            {
                "country": "pop3",
                "tls": {"mode": "starttls"},
                "capabilities": ["SASL PLAIN", "USER"],
                "capabilities_before_tls": ["STLS", "USER"],
            },
            {"starttls": True, "auth": frozenset({"PLAIN"})},
        ),
    ],
    ids=["starttls", "stripped", "implicit", "old-agent", "pop3"],
)
def test_facts_from_a_stored_result(row: dict[str, Any], expected: dict[str, Any]) -> None:
    """`country` "pop3" stands for a POP3 monitor's row (its upgrade keyword is STLS)."""
    defaults: dict[str, Any] = {"country": "DE", "scheduled_at": datetime(2026, 1, 1, tzinfo=UTC)}
    row = defaults | row
    o = observe("pop3" if row["country"] == "pop3" else "smtp", StoredFacts(**row))
    assert {k: getattr(o, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("facts", "codes"),
    [
        ({}, set()),
        ({"tls_version": "TLSv1"}, {"tls_below_1_2"}),
        ({"tls_version": "TLSv1.1"}, {"tls_below_1_2"}),
        ({"cipher": "DES-CBC3-SHA"}, {"weak_cipher"}),
        ({"cipher": "RC4-SHA"}, {"weak_cipher"}),
        ({"key_type": "RSA", "key_bits": 1024}, {"short_key"}),
        ({"key_type": "RSA", "key_bits": 2048}, set()),
        ({"key_type": "EC", "key_bits": 192}, {"short_key"}),
        ({"signature": "sha1WithRSAEncryption"}, {"sha1_signature"}),
        ({"chain_verified": False}, {"chain_not_verified"}),
        ({"name_matched": False}, {"name_mismatch"}),
        ({"chain_verified": None, "name_matched": None}, set()),
        ({"days_left": 21}, {"certificate_expiring"}),
        ({"days_left": 22}, set()),
        ({"days_left": -1}, {"certificate_expired"}),
    ],
)
def test_quality_findings(facts: dict[str, Any], codes: set[str]) -> None:
    assert {code for code, _ in held(quality(ok("DE", **facts)))} == codes


def _plain(monitor_type: str, capabilities: list[str] | None, **row: Any) -> Observation:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    facts = StoredFacts(scheduled_at=at, country="DE", capabilities=capabilities, **row)
    return observe(monitor_type, facts)


@pytest.mark.parametrize(
    ("monitor_type", "capabilities", "row", "codes", "detail"),
    [
        # the issue's server: AUTH PLAIN LOGIN in clear, no STARTTLS
        ("smtp", ["AUTH LOGIN PLAIN", "SIZE 100"], {}, {"auth_in_clear"}, "LOGIN PLAIN"),
        ("smtp", ["AUTH=LOGIN", "PIPELINING"], {}, {"auth_in_clear"}, "login by LOGIN"),
        ("smtp", ["AUTH XOAUTH2"], {}, {"auth_in_clear"}, "XOAUTH2"),  # a bearer, as it is
        # challenge-response only: no password in clear, still no TLS
        ("smtp", ["AUTH CRAM-MD5 SCRAM-SHA-256"], {}, {"auth_without_tls"}, "CRAM-MD5"),
        ("smtp", ["SIZE 100"], {}, set(), None),  # no login offered at all
        # STARTTLS offered: the client can protect its login (its own finding if not taken)
        ("smtp", ["AUTH PLAIN", "STARTTLS"], {}, set(), None),
        # checked over STARTTLS or implicit TLS: the login went over TLS
        (
            "smtp",
            ["AUTH PLAIN"],
            {"tls": {"mode": "starttls"}, "capabilities_before_tls": ["STARTTLS"]},
            set(),
            None,
        ),
        ("smtp", ["AUTH PLAIN"], {"tls": {"mode": "implicit"}}, set(), None),
        # IMAP: LOGIN is always there unless LOGINDISABLED
        ("imap", ["IMAP4REV1", "IDLE"], {}, {"auth_in_clear"}, "LOGIN"),
        ("imap", ["IMAP4REV1", "LOGINDISABLED"], {}, set(), None),
        ("imap", ["IMAP4REV1", "AUTH=PLAIN", "LOGINDISABLED"], {}, {"auth_in_clear"}, "PLAIN"),
        ("imap", ["IMAP4REV1", "STARTTLS"], {}, set(), None),
        # POP3: USER/PASS or SASL PLAIN without STLS
        ("pop3", ["USER", "UIDL"], {}, {"auth_in_clear"}, "USER"),
        ("pop3", ["SASL CRAM-MD5", "UIDL"], {}, {"auth_without_tls"}, "CRAM-MD5"),
        ("pop3", ["USER", "STLS"], {}, set(), None),
    ],
)
def test_logins_without_tls(
    monitor_type: str,
    capabilities: list[str],
    row: dict[str, Any],
    codes: set[str],
    detail: str | None,
) -> None:
    """A login offered on a plain connection of a server that offers no upgrade: critical when
    it sends a reusable secret as it is, a warning otherwise; judged (and cleared) whenever
    the connection's capabilities were read."""
    verdicts = quality(_plain(monitor_type, capabilities, **row))
    assert {"auth_in_clear", "auth_without_tls"} <= {code for code, _ in verdicts}
    found = [f for f in verdicts.values() if f is not None]
    assert {f.code for f in found} == codes
    if detail is not None:
        assert detail in found[0].detail and "no STARTTLS/STLS" in found[0].detail
    if codes:
        assert found[0].severity == ("critical" if "auth_in_clear" in codes else "warning")


def test_logins_without_tls_unknown_is_not_judged() -> None:
    """An older agent (no capabilities) or a check that failed before the server said anything
    judges neither finding: nothing raised, nothing cleared."""
    verdicts = quality(_plain("smtp", None))
    assert ("auth_in_clear", "DE") not in verdicts and ("auth_without_tls", "DE") not in verdicts


def test_quality_only_judges_facts_that_were_seen() -> None:
    """A country whose check failed before TLS judges nothing: nothing raised, nothing cleared."""
    assert quality(Observation(country="DE")) == {}


@pytest.mark.parametrize(
    ("seen", "baselines", "findings"),
    [
        ([ok("DE"), ok("US")], {}, set()),
        (
            [ok("DE"), ok("US", starttls=False, tls_version=None, auth=frozenset())],
            {},
            {("starttls_stripped", "US")},
        ),
        ([ok("DE"), ok("US", auth=frozenset({"PLAIN"}))], {}, {("downgrade", "US")}),
        ([ok("DE"), ok("US", tls_version="TLSv1.2")], {}, {("downgrade", "US")}),
        ([ok("DE"), ok("US", cert_sha256=CERT_B), ok("FR")], {}, {("certificate_mismatch", "US")}),
        # two countries, two certificates: the one that changed from its baseline is odd
        (
            [ok("DE"), ok("US", cert_sha256=CERT_B)],
            {"DE": {"cert_sha256": CERT_A}, "US": {"cert_sha256": CERT_A}},
            {("certificate_mismatch", "US")},
        ),
        (
            [ok("DE", cert_sha256=CERT_B), ok("US")],
            {"DE": {"cert_sha256": CERT_A}, "US": {"cert_sha256": CERT_A}},
            {("certificate_mismatch", "DE")},
        ),
        # one country: nothing to compare with
        ([ok("US", starttls=False)], {}, set()),
        # everyone lost STARTTLS: a change of the server, not one path
        ([ok("DE", starttls=False), ok("US", starttls=False)], {}, set()),
    ],
    ids=[
        "same",
        "stripped",
        "auth-lost",
        "tls-lower",
        "cert-3",
        "cert-tie-de",
        "cert-tie-us",
        "alone",
        "all-lost",
    ],
)
def test_drift_findings(
    seen: list[Observation], baselines: dict[str, Any], findings: set[tuple[str, str]]
) -> None:
    assert held(drift(seen, baselines)) == findings


def test_a_stripped_country_is_not_also_a_downgrade() -> None:
    """Stripping STARTTLS also hides the AUTH offered over TLS: one finding says it."""
    seen = [ok("DE"), ok("US", starttls=False, tls_version=None, auth=frozenset())]
    assert ("downgrade", "US") not in drift(seen, {})


def test_a_change_seen_everywhere_moves_the_baseline_and_is_recorded() -> None:
    before: dict[str, dict[str, object]] = {
        "DE": {"cert_sha256": CERT_A},
        "US": {"cert_sha256": CERT_A},
    }
    new, changes = baseline_moves(
        [ok("DE", cert_sha256=CERT_B), ok("US", cert_sha256=CERT_B)], before
    )
    assert new["DE"]["cert_sha256"] == new["US"]["cert_sha256"] == CERT_B
    assert changes == [Change("cert_sha256", [CERT_A], CERT_B, ["DE", "US"])]
    assert (
        held(drift([ok("DE", cert_sha256=CERT_B), ok("US", cert_sha256=CERT_B)], before)) == set()
    )


def test_a_change_seen_in_one_country_only_keeps_the_baseline() -> None:
    before: dict[str, dict[str, object]] = {
        "DE": {"cert_sha256": CERT_A},
        "US": {"cert_sha256": CERT_A},
    }
    new, changes = baseline_moves([ok("DE"), ok("US", cert_sha256=CERT_B)], before)
    assert new["US"]["cert_sha256"] == CERT_A
    assert [c.fact for c in changes] == []


def test_first_sight_sets_the_baseline_silently() -> None:
    new, changes = baseline_moves([ok("DE")], {})
    assert new["DE"]["starttls"] is True and changes == []


def test_drift_opens_after_two_rounds_and_clears_at_once() -> None:
    t = Tracker()
    odd = Finding("starttls_stripped", "US", "x")
    assert t.step({odd.key: odd}) == ([], [])  # a rollout half-done for one round
    assert t.step({odd.key: odd}) == ([odd], [])
    assert t.step({odd.key: odd}) == ([], [])  # still open, not again
    assert t.step({}) == ([], [])  # US not judged this round: stays open
    assert t.step({odd.key: None}) == ([], [odd])


def test_a_one_round_blip_never_opens_a_drift_finding() -> None:
    t = Tracker()
    odd = Finding("certificate_mismatch", "US", "x")
    for _ in range(10):
        assert t.step({odd.key: odd}) == ([], [])
        assert t.step({odd.key: None}) == ([], [])


def test_quality_findings_open_at_once() -> None:
    t = Tracker()
    f = Finding("name_mismatch", "DE", "x")
    assert t.step({f.key: f}) == ([f], [])


@pytest.mark.parametrize(
    ("days_left", "sent", "notice"),
    [
        (30, [], None),
        (21, [], 21),
        (15, [21], None),
        (7, [21], 7),
        (5, [], 7),  # first seen past both: only the nearest
        (3, [21, 7], None),
        (-2, [21], 7),  # expired before the 7-day notice went out
    ],
)
def test_expiry_notice_once_per_threshold(
    days_left: int, sent: list[int], notice: int | None
) -> None:
    assert expiry_notice(days_left, (21, 7), sent) == notice
