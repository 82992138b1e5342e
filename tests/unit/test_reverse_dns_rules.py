"""Reverse DNS rules as a table: PTR facts and the banner → verdicts on `ptr_missing`,
`ptr_not_forward_confirmed` and `banner_name_mismatch`; unknown facts judge nothing."""

from typing import Any

import pytest

from controller.posture.rules import CODES
from controller.sidechecks.reverse_dns import rules
from controller.sidechecks.reverse_dns.rules import banner_name, reverse_dns
from shared.sidechecks.reverse_dns import PtrCheck, ReverseDns

REVERSE_DNS_CODES = frozenset(rules.CODES)

A, B = "192.0.2.1", "2001:db8::1"
GOOD = {"names": ["mail.example.org"], "confirmed": ["mail.example.org"]}
BANNER = "mail.example.org ESMTP Postfix"


def seen(*checks: dict[str, Any]) -> ReverseDns:
    return ReverseDns(addresses=[PtrCheck(**c) for c in checks])


@pytest.mark.parametrize(
    ("facts", "banner", "held", "judged"),
    [
        (seen({"address": A, **GOOD}), BANNER, set(), REVERSE_DNS_CODES),
        # no PTR: missing; the banner has nothing to match (cleared, not judged against nothing)
        (
            seen({"address": A, "names": []}),
            BANNER,
            {"ptr_missing"},
            {"ptr_missing", "banner_name_mismatch"},
        ),
        # a PTR that points at a name without this address
        (
            seen({"address": A, "names": ["mail.example.org"], "confirmed": []}),
            BANNER,
            {"ptr_not_forward_confirmed"},
            REVERSE_DNS_CODES,
        ),
        # the banner names another host (a generic provider PTR, say)
        (
            seen(
                {
                    "address": A,
                    "names": ["1-2-0-192.dsl.example.net"],
                    "confirmed": ["1-2-0-192.dsl.example.net"],
                }
            ),
            BANNER,
            {"banner_name_mismatch"},
            REVERSE_DNS_CODES,
        ),
        # case, a final dot and a reply code before the name do not count
        (seen({"address": A, **GOOD}), "220 MAIL.example.org. ESMTP", set(), REVERSE_DNS_CODES),
        # one of two addresses without PTR: missing names it; the other still judged
        (
            seen({"address": A, **GOOD}, {"address": B, "names": []}),
            BANNER,
            {"ptr_missing"},
            REVERSE_DNS_CODES,
        ),
        # the PTR lookup failed: nothing about it is judged
        (seen({"address": A, "error": "timed out"}), BANNER, set(), set()),
        # forward lookups failed: the PTR is there, confirmation unknown
        (
            seen({"address": A, "names": ["mail.example.org"], "error": "forward lookup: x"}),
            BANNER,
            set(),
            {"ptr_missing", "banner_name_mismatch"},
        ),
        # one address unknown, the other fine: missing not judged (the unknown one may lack it)
        (
            seen({"address": A, **GOOD}, {"address": B, "error": "timed out"}),
            BANNER,
            set(),
            {"banner_name_mismatch"},
        ),
        # no banner recorded (the greeting failed): the banner is not judged
        (seen({"address": A, **GOOD}), None, set(), {"ptr_missing", "ptr_not_forward_confirmed"}),
        (ReverseDns(), BANNER, set(), set()),  # no address looked up at all
    ],
    ids=[
        "good",
        "no-ptr",
        "not-confirmed",
        "banner-other",
        "banner-spelling",
        "one-of-two-missing",
        "ptr-failed",
        "forward-failed",
        "one-unknown",
        "no-banner",
        "nothing",
    ],
)
def test_reverse_dns_verdicts(
    facts: ReverseDns, banner: str | None, held: set[str], judged: set[str]
) -> None:
    verdicts = reverse_dns(facts, banner, A, "DE")
    assert {code for code, _ in verdicts} == judged
    assert {code for (code, _), f in verdicts.items() if f is not None} == held
    assert all(cc == "DE" for _, cc in verdicts)


def test_details_name_the_addresses_and_names() -> None:
    facts = seen(
        {"address": A, "names": ["a.example.net"], "confirmed": []}, {"address": B, "names": []}
    )
    found = {c: f for (c, _), f in reverse_dns(facts, BANNER, A, "DE").items() if f is not None}
    assert found["ptr_missing"].detail == f"no PTR record for {B}"
    assert "a.example.net" in found["ptr_not_forward_confirmed"].detail
    assert found["banner_name_mismatch"].detail == (
        f"the banner names mail.example.org; the PTR of {A} is a.example.net"
    )


@pytest.mark.parametrize(
    ("banner", "name"),
    [
        ("mail.example.org ESMTP", "mail.example.org"),
        ("220 Mail.Example.org.", "mail.example.org"),
        ("220-mail.example.org hi", "mail.example.org"),
        ("", ""),
        ("ESMTP ready", "esmtp"),
    ],
)
def test_banner_name(banner: str, name: str) -> None:
    assert banner_name(banner) == name


def test_reverse_dns_codes_are_warnings_with_advice() -> None:
    for code in REVERSE_DNS_CODES:
        severity, advice = CODES[code]
        assert severity == "warning" and advice.endswith(".")
