"""The report rules (controller/sidechecks/reports/rules.py) as tables: a window's counts and an
organization's thresholds → the verdict on each report finding, its detail and the items it was
raised for; when a verdict is news; which network a source address counts in; which monitors a
domain's finding is shown on."""

import pytest

from controller.posture.rules import Finding, Key
from controller.sidechecks.reports.rules import (
    CODES,
    DMARC_FAILURES,
    DMARC_UNKNOWN,
    FRESH,
    TLS_FAILURES,
    Count,
    Failure,
    ReportSettings,
    Verdict,
    Verdicts,
    Window,
    concerns,
    fresh,
    judge,
    network,
    shown_on,
    told,
    window,
)

HOST = "mx1.example.com"
DEFAULTS = ReportSettings()


def _judge(counts: list[Count], settings: ReportSettings, own: dict[Key, Finding]) -> Verdicts:
    """The verdicts on a window of `counts`, the last report holding them all."""
    return judge(window(counts), settings, HOST, own, fresh(counts))


def tls(result: str, n: int, mx: str = HOST, ip: str = "203.0.113.5", by: str = "Google") -> Count:
    return Count("tls", by, result, mx, ip, n)


def dmarc(ip: str, n: int, result: str = "fail", by: str = "google.com") -> Count:
    return Count("dmarc", by, result, "", ip, n)


@pytest.mark.parametrize(
    ("ip", "net"),
    [
        ("192.0.2.10", "192.0.2.0/24"),
        ("192.0.2.255", "192.0.2.0/24"),
        ("2001:db8:abcd:12::1", "2001:db8:abcd::/56"),
        ("2001:db8:abcd:1ff::1", "2001:db8:abcd:100::/56"),
        ("::ffff:192.0.2.1", "192.0.2.0/24"),
    ],
    ids=["v4", "v4-last", "v6", "v6-fourth-group", "v4-mapped"],
)
def test_a_source_counts_in_its_24_or_56(ip: str, net: str) -> None:
    assert network(ip) == net


def test_every_code_is_judged_and_nothing_raises_without_counts() -> None:
    verdicts = _judge([], DEFAULTS, {})
    assert set(verdicts) == set(CODES)
    assert all(v is None for v in verdicts.values())


@pytest.mark.parametrize(
    ("counts", "settings", "detail", "items"),
    [
        ([tls("success", 1000), tls("certificate-expired", 4)], DEFAULTS, None, None),
        (
            [tls("success", 95), tls("certificate-expired", 5)],
            DEFAULTS,
            "5 of 100 TLS sessions failed: certificate-expired: 5 to mx1.example.com"
            " (203.0.113.5), reported by Google",
            ("certificate-expired|mx1.example.com",),
        ),
        (
            [tls("certificate-expired", 1)],
            ReportSettings(tls_failures_min=1),
            "1 of 1 TLS sessions failed: certificate-expired: 1 to mx1.example.com"
            " (203.0.113.5), reported by Google",
            ("certificate-expired|mx1.example.com",),
        ),
        (
            [
                tls("starttls-not-supported", 3, by="Microsoft"),
                tls("starttls-not-supported", 4, by="Google"),
                tls("validation-failure", 9, mx="", ip=""),
            ],
            DEFAULTS,
            "16 of 16 TLS sessions failed: validation-failure: 9 to an MX not named, reported"
            " by Google; starttls-not-supported: 7 to mx1.example.com (203.0.113.5), reported"
            " by Google, Microsoft",
            ("starttls-not-supported|mx1.example.com", "validation-failure|"),
        ),
        (
            [tls("certificate-expired", 2, mx=f"mx{i}.example.com") for i in range(7)],
            DEFAULTS,
            "14 of 14 TLS sessions failed: "
            + "; ".join(
                f"certificate-expired: 2 to mx{i}.example.com (203.0.113.5), reported by Google"
                for i in range(5)
            )
            + "; and more (7 failure rows in all)",
            tuple(f"certificate-expired|mx{i}.example.com" for i in range(7)),
        ),
        ([dmarc("192.0.2.1", 500)], DEFAULTS, None, None),
    ],
    ids=["under-threshold", "at-threshold", "threshold-1", "reporters-merged", "six-more", "dmarc"],
)
def test_tls_failures_reported(
    counts: list[Count],
    settings: ReportSettings,
    detail: str | None,
    items: tuple[str, ...] | None,
) -> None:
    verdict = _judge(counts, settings, {})[TLS_FAILURES]
    if detail is None:
        assert verdict is None
        return
    assert verdict == Verdict(Finding(TLS_FAILURES, "", detail), items or ())


@pytest.mark.parametrize(
    ("own", "mx", "said"),
    [
        (
            {("certificate_expired", "DE"): None, ("certificate_expired", "US"): None},
            HOST,
            ". This monitor's agents saw it too: certificate_expired (seen from DE, US)",
        ),
        (
            {("certificate_expired", ""): None},
            HOST,
            ". This monitor's agents saw it too: certificate_expired (for the domain)",
        ),
        (
            {("certificate_expired", "DE"): None},
            "MX1.Example.com.",
            ". This monitor's agents saw it too: certificate_expired (seen from DE)",
        ),
        ({("certificate_expired", "DE"): None}, "mx2.example.com", ""),
        (
            {("certificate_expired", "DE"): None},
            "",
            ". This monitor's agents saw it too: certificate_expired (seen from DE)",
        ),
        ({("name_mismatch", "DE"): None}, HOST, ""),
    ],
    ids=["countries", "domain-wide", "host-spelt-otherwise", "other-mx", "mx-not-named", "other"],
)
def test_tls_failures_say_when_the_agents_saw_the_same(
    own: dict[tuple[str, str], None], mx: str, said: str
) -> None:
    findings = {key: Finding(key[0], key[1], "") for key in own}
    verdict = _judge([tls("certificate-expired", 5, mx=mx)], DEFAULTS, findings)[TLS_FAILURES]
    assert verdict is not None
    assert verdict.finding.detail.endswith(said)
    assert verdict.finding.detail.count("saw it too") == (1 if said else 0)


OWN_NET = "192.0.2.0/24"
STRANGER = "198.51.100.0/24"


@pytest.mark.parametrize(
    ("counts", "settings", "failures", "unknown"),
    [
        # The domain's own network passes, and one of its senders fails alignment.
        (
            [dmarc("192.0.2.10", 500, "pass"), dmarc("192.0.2.11", 40)],
            DEFAULTS,
            (
                "40 messages from 1 networks failed DMARC alignment: 192.0.2.0/24: 40 messages"
                " (500 passed)",
                (OWN_NET,),
            ),
            None,
        ),
        # A known network failing less than the threshold raises nothing.
        ([dmarc("192.0.2.10", 500, "pass"), dmarc("192.0.2.11", 9)], DEFAULTS, None, None),
        # A network that never passed is unknown, however much it sends.
        (
            [dmarc("198.51.100.7", 25)],
            DEFAULTS,
            None,
            (
                "25 messages from 1 networks sent in the domain's name and never passed DMARC:"
                " 198.51.100.0/24: 25 messages",
                (STRANGER,),
            ),
        ),
        # Unknown sources are summed across networks against the threshold.
        (
            [dmarc("198.51.100.7", 6), dmarc("203.0.113.9", 4)],
            DEFAULTS,
            None,
            (
                "10 messages from 2 networks sent in the domain's name and never passed DMARC:"
                " 198.51.100.0/24: 6 messages; 203.0.113.0/24: 4 messages",
                (STRANGER, "203.0.113.0/24"),
            ),
        ),
        ([dmarc("198.51.100.7", 9)], DEFAULTS, None, None),
        # A listed known network that never passed is known: its failures are yours.
        (
            [dmarc("198.51.100.7", 25)],
            ReportSettings(known_networks=("198.51.100.0/22",)),
            (
                "25 messages from 1 networks failed DMARC alignment: 198.51.100.0/24: 25 messages",
                (STRANGER,),
            ),
            None,
        ),
        # Passing counts of a network are summed from every reporter.
        (
            [
                dmarc("192.0.2.10", 1, "pass", by="a"),
                dmarc("192.0.2.10", 2, "pass", by="b"),
                dmarc("192.0.2.20", 12, by="a"),
            ],
            DEFAULTS,
            (
                "12 messages from 1 networks failed DMARC alignment: 192.0.2.0/24: 12 messages"
                " (3 passed)",
                (OWN_NET,),
            ),
            None,
        ),
        # Thresholds are the organization's.
        (
            [dmarc("192.0.2.10", 1, "pass"), dmarc("192.0.2.11", 2), dmarc("198.51.100.7", 1)],
            ReportSettings(dmarc_failures_min=2, dmarc_unknown_min=1),
            (
                "2 messages from 1 networks failed DMARC alignment: 192.0.2.0/24: 2 messages"
                " (1 passed)",
                (OWN_NET,),
            ),
            (
                "1 messages from 1 networks sent in the domain's name and never passed DMARC:"
                " 198.51.100.0/24: 1 messages",
                (STRANGER,),
            ),
        ),
        # An IPv4-mapped source is its IPv4 network, known by its IPv4 passes.
        (
            [dmarc("192.0.2.10", 5, "pass"), dmarc("::ffff:192.0.2.11", 10)],
            DEFAULTS,
            (
                "10 messages from 1 networks failed DMARC alignment: 192.0.2.0/24: 10 messages"
                " (5 passed)",
                (OWN_NET,),
            ),
            None,
        ),
        # A DMARC row without a source address is no network's.
        ([Count("dmarc", "x", "fail", "", "", 50)], DEFAULTS, None, None),
    ],
    ids=[
        "own-sender-fails",
        "own-under-threshold",
        "unknown",
        "unknown-summed",
        "unknown-under",
        "listed-network",
        "passes-summed",
        "org-thresholds",
        "v4-mapped",
        "no-source",
    ],
)
def test_dmarc_verdicts(
    counts: list[Count],
    settings: ReportSettings,
    failures: tuple[str, tuple[str, ...]] | None,
    unknown: tuple[str, tuple[str, ...]] | None,
) -> None:
    verdicts = _judge(counts, settings, {})
    for code, expected in ((DMARC_FAILURES, failures), (DMARC_UNKNOWN, unknown)):
        if expected is None:
            assert verdicts[code] is None, code
        else:
            assert verdicts[code] == Verdict(Finding(code, "", expected[0]), expected[1])


def test_more_than_five_networks_are_summarised() -> None:
    counts = [dmarc(f"198.51.{i}.1", 10 + i) for i in range(8)]
    verdict = _judge(counts, DEFAULTS, {})[DMARC_UNKNOWN]
    assert verdict is not None
    assert verdict.finding.detail == (
        "108 messages from 8 networks sent in the domain's name and never passed DMARC: "
        "198.51.7.0/24: 17 messages; 198.51.6.0/24: 16 messages; 198.51.5.0/24: 15 messages; "
        "198.51.4.0/24: 14 messages; 198.51.3.0/24: 13 messages; and 3 more networks"
    )
    assert len(verdict.items) == 8


@pytest.mark.parametrize(
    ("items", "before", "news"),
    [
        (("a",), None, True),
        (("a",), ["a"], False),
        (("a",), ["a", "b"], False),
        (("a", "c"), ["a", "b"], True),
        ((), [], False),
    ],
    ids=["appears", "same", "fewer", "new-item", "nothing"],
)
def test_a_verdict_is_news_when_it_appears_or_names_something_new(
    items: tuple[str, ...], before: list[str] | None, news: bool
) -> None:
    verdict = Verdict(Finding(TLS_FAILURES, "", "x"), items)
    assert told(verdict, before) is news


def test_a_reports_items_that_may_be_news_are_its_largest_failures() -> None:
    counts = [tls("certificate-expired", 10_000 - i, mx=f"mx{i}.example.com") for i in range(1500)]
    counts.append(tls("success", 10**6))
    new = fresh(counts)
    assert len(new.tls) == FRESH
    assert "certificate-expired|mx0.example.com" in new.tls
    assert "certificate-expired|mx1499.example.com" not in new.tls


@pytest.mark.parametrize(
    ("code", "monitor_type", "shown"),
    [
        (TLS_FAILURES, "smtp", True),
        (TLS_FAILURES, "roundtrip", True),
        (TLS_FAILURES, "imap", False),
        (TLS_FAILURES, "pop3", False),
        (DMARC_FAILURES, "smtp", True),
        (DMARC_FAILURES, "roundtrip", True),
        (DMARC_FAILURES, "imap", False),
        (DMARC_UNKNOWN, "smtp", True),
        (DMARC_UNKNOWN, "roundtrip", True),
        (DMARC_UNKNOWN, "pop3", False),
        ("certificate_expired", "smtp", False),  # not a report finding
    ],
)
def test_a_report_finding_concerns_smtp_monitors_and_round_trips(
    code: str, monitor_type: str, shown: bool
) -> None:
    assert concerns(code, monitor_type) is shown


MONITORS = [
    (1, "smtp", "mx1.example.com"),
    (2, "smtp", "mail.example.com"),  # submission, not an MX
    (3, "roundtrip", "MX1.example.com."),  # sends through mx1
    (4, "imap", "mx1.example.com"),
    (5, "pop3", "mail.example.com"),
]


def _failing(*mxs: str) -> Window:
    return Window(10, 10, tuple(Failure("starttls-not-supported", mx, "", 1, ("r",)) for mx in mxs))


@pytest.mark.parametrize(
    ("code", "seen", "shown"),
    [
        (TLS_FAILURES, _failing("mx1.example.com", "mx2.example.com"), {1, 3}),
        (TLS_FAILURES, _failing("mx9.example.com"), {1, 2, 3}),  # no monitor at that MX
        (TLS_FAILURES, _failing(""), {1, 2, 3}),  # no MX named
        (DMARC_FAILURES, _failing("mx1.example.com"), {1, 2, 3}),  # every sender
        (DMARC_UNKNOWN, Window(), {1, 2, 3}),
    ],
)
def test_a_report_finding_is_shown_on_the_monitors_it_concerns(
    code: str, seen: Window, shown: set[int]
) -> None:
    assert shown_on(code, MONITORS, seen) == shown
