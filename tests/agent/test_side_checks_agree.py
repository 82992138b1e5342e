"""The side checks that read a mail domain's DNS (mail DNS and readiness), run by the agent
against the same zones served by a real DNS server on loopback (testkit/peers/dns.py) and judged
by the controller's rules, never disagree about one fact: whether a DMARC record applies (by
RFC 9989's Tree Walk, for both), whether the domain publishes SPF, which MX names it has, and an
SPF syntax error of the domain's own record is one finding (mail DNS's `spf_invalid`), not two.
A zone set here is judged by both; a fact two of them read differently fails the test."""

from dataclasses import dataclass

import pytest

from agent.sidechecks.mail_dns import MailDnsProbe
from agent.sidechecks.readiness import ReadinessProbe
from controller.posture.facts import Observation
from controller.sidechecks.findings import Verdicts
from controller.sidechecks.mail_dns import rules as mail_dns_rules
from controller.sidechecks.readiness import rules as readiness_rules
from shared.sidechecks.dmarc_tree import tree_walk
from shared.sidechecks.mail_dns import MailDns
from shared.sidechecks.readiness import Readiness
from testkit.peers.dns import DnsPeer, Records

HOST = "mx.example.test"
SUB = "a.b.example.test"
SENDS = "v=spf1 ip4:192.0.2.1 -all"


def _zone(domain: str, spf: list[str] | None = None, **dmarc: list[str]) -> Records:
    """`domain`'s MX and SPF, and DMARC records by the name they are at (`example_test` for
    `_dmarc.example.test`)."""
    records: Records = {(domain, "MX"): [f"10 {HOST}."], (HOST, "A"): ["192.0.2.1"]}
    records[(domain, "TXT")] = [f'"{s}"' for s in (spf if spf is not None else [SENDS])]
    for name, texts in dmarc.items():
        records[(f"_dmarc.{name.replace('_', '.')}", "TXT")] = [f'"{t}"' for t in texts]
    return records


REJECT = {"example_test": ["v=DMARC1; p=reject"]}
ZONES: dict[str, tuple[str, Records]] = {
    "a subdomain under its Organizational Domain's p=reject": (
        SUB,
        _zone(SUB, example_test=["v=DMARC1; p=reject"]),
    ),
    "no DMARC record anywhere": (SUB, _zone(SUB)),
    "the domain's own p=none": (
        "example.test",
        _zone("example.test", example_test=["v=DMARC1; p=none"]),
    ),
    "a PSD's record above an Organizational Domain without one": (
        "example.test",
        _zone("example.test", test=["v=DMARC1; p=reject; psd=y"]),
    ),
    "two DMARC records of its own, the Organizational Domain's above": (
        "b.example.test",
        _zone(
            "b.example.test",
            b_example_test=["v=DMARC1; p=none", "v=DMARC1; p=reject"],
            example_test=["v=DMARC1; p=quarantine"],
        ),
    ),
    # RFC 7489 6.4's ABNF: "v" *WSP "=" *WSP "DMARC1" (the "v" of any case, DMARC1 exactly)
    "a DMARC record written with spaces around =": (
        "example.test",
        _zone("example.test", example_test=["v = DMARC1; p=reject"]),
    ),
    "a DMARC record whose version is not DMARC1 exactly": (
        "example.test",
        _zone("example.test", example_test=["v=dmarc1; p=reject"]),
    ),
    # RFC 9989 4.7: a tag that does not parse is discarded, not the record; pct is no tag now
    "an obsolete pct out of its old range": (
        "example.test",
        _zone("example.test", example_test=["v=DMARC1; p=reject; pct=150"]),
    ),
    "a part that is no tag=value, p=reject beside it": (
        "example.test",
        _zone("example.test", example_test=["v=DMARC1; p=reject; strict"]),
    ),
    "a misspelt policy, reports asked": (
        "example.test",
        _zone("example.test", example_test=["v=DMARC1; p=rejct; rua=mailto:d@example.test"]),
    ),
    "a bad np, p=reject beside it": (
        "example.test",
        _zone("example.test", example_test=["v=DMARC1; p=reject; np=block"]),
    ),
    # RFC 7208 4.5: "v=spf1" followed by a space or the record's end, of any case
    "a TXT record that only looks like SPF": (
        "example.test",
        _zone("example.test", ["v=spf1;-all", "V=SPF1 ip4:192.0.2.1 -all"], **REJECT),
    ),
    "two SPF records": ("example.test", _zone("example.test", [SENDS, "v=spf1 -all"], **REJECT)),
    "an SPF term that does not parse": (
        "example.test",
        _zone("example.test", ["v=spf1 ip4:300.1.1.1 -all"], **REJECT),
    ),
    "no SPF record": ("example.test", _zone("example.test", [], **REJECT)),
    # RFC 7208 4.6.4: at most 10 terms that cause DNS lookups
    "an SPF tree past ten lookups": (
        "example.test",
        {
            **_zone("example.test", **REJECT),
            # one record of two strings (a string holds at most 255 characters)
            ("example.test", "TXT"): [
                '"v=spf1 ' + " ".join(f"include:i{n}.example.test" for n in range(6)) + ' "'
                + '"' + " ".join(f"include:i{n}.example.test" for n in range(6, 11)) + ' -all"'
            ],
            **{(f"i{n}.example.test", "TXT"): ['"v=spf1 -all"'] for n in range(11)},
        },
    ),
    "an include of a domain without SPF": (
        "example.test",
        {
            **_zone("example.test", ["v=spf1 include:nospf.example.test -all"], **REJECT),
            ("nospf.example.test", "A"): ["192.0.2.9"],
        },
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Judged:
    mail_dns: MailDns
    readiness: Readiness
    verdicts: Verdicts  # both side checks' for the round


async def _judged(domain: str, records: Records) -> Judged:
    async with DnsPeer(records) as peer:
        seen = await MailDnsProbe(resolver=peer.address, allow_private=True).probe(
            domain, HOST, 25, 5.0
        )
        ready = await ReadinessProbe(resolver=peer.address, canaries=()).probe(domain, (), 5.0)
    tls = Observation(country="DE")
    verdicts = mail_dns_rules.mail_dns("smtp", HOST, seen, tls)
    verdicts |= readiness_rules.readiness(ready, "DE")
    return Judged(seen, ready, verdicts)


def _raised(verdicts: Verdicts, code: str) -> bool | None:
    """Whether `code` holds (None: not judged)."""
    key = (code, "DE")
    return None if key not in verdicts else verdicts[key] is not None


@pytest.mark.parametrize("zone", sorted(ZONES))
async def test_mail_dns_and_readiness_agree_on_every_fact_they_both_read(zone: str) -> None:
    domain, records = ZONES[zone]
    j = await _judged(domain, records)
    assert j.mail_dns.errors == {} and j.readiness.error == "", (j.mail_dns, j.readiness)

    # DMARC: a record applies (readiness: the record the Tree Walk found) or none does.
    applies = readiness_rules.readings(j.readiness)["dmarc"] != ""
    assert _raised(j.verdicts, "dmarc_missing") is (not applies), zone
    walked = mail_dns_rules.applying(j.mail_dns)
    assert walked is not None and (walked.record is not None) is applies, zone
    # A faulty record: mail DNS names the policy receivers apply, the one readiness judges.
    invalid = j.verdicts.get(("dmarc_invalid", "DE"))
    ready = tree_walk(domain, j.readiness.dmarc.walk) if j.readiness.dmarc else None
    if invalid is not None and ready is not None and ready.record is not None:
        said = f"p={ready.policy}" if ready.policy else "no DMARC policy"
        assert f"receivers apply {said}" in invalid.detail, (zone, invalid.detail)

    # SPF: published or not; the domain's own record broken is one finding.
    published = j.readiness.spf is not None and j.readiness.spf.record is not None
    assert _raised(j.verdicts, "spf_missing") is (not published), zone
    assert not (_raised(j.verdicts, "spf_invalid") and _raised(j.verdicts, "spf_include_broken"))

    # MX: the same names.
    assert sorted(j.mail_dns.mx or []) == sorted(j.readiness.mx or []), zone


@pytest.mark.parametrize(
    ("zone", "raised"),
    [
        ("a subdomain under its Organizational Domain's p=reject", set()),
        ("no DMARC record anywhere", {"dmarc_missing"}),
        ("the domain's own p=none", {"dmarc_policy_none"}),
        ("a PSD's record above an Organizational Domain without one", set()),
        ("two DMARC records of its own, the Organizational Domain's above", {"dmarc_invalid"}),
        ("an obsolete pct out of its old range", {"dmarc_obsolete_tags"}),
        ("a part that is no tag=value, p=reject beside it", {"dmarc_invalid"}),
        ("a misspelt policy, reports asked", {"dmarc_invalid", "dmarc_policy_none"}),
        ("a bad np, p=reject beside it", {"dmarc_invalid", "dmarc_policy_none"}),
        ("a DMARC record written with spaces around =", set()),
        ("a DMARC record whose version is not DMARC1 exactly", {"dmarc_missing"}),
        ("a TXT record that only looks like SPF", set()),
        ("two SPF records", {"spf_invalid"}),
        ("an SPF term that does not parse", {"spf_invalid"}),
        ("no SPF record", {"spf_missing"}),
        ("an include of a domain without SPF", {"spf_include_broken"}),
        ("an SPF tree past ten lookups", {"spf_lookup_limit"}),
    ],
)
async def test_each_zone_raises_its_own_findings_once(zone: str, raised: set[str]) -> None:
    """What each zone raises of the SPF and DMARC findings, one finding per fact."""
    domain, records = ZONES[zone]
    j = await _judged(domain, records)
    codes = {c for (c, _), f in j.verdicts.items() if f is not None}
    assert codes & (SPF_CODES | DMARC_CODES) == raised, zone


SPF_CODES = frozenset(
    {
        "spf_missing",
        "spf_invalid",
        "spf_include_broken",
        "spf_too_permissive",
        "spf_ptr",
        "spf_lookup_limit",
        "spf_void_lookups",
    }
)
DMARC_CODES = frozenset(
    {
        "dmarc_missing",
        "dmarc_invalid",
        "dmarc_policy_none",
        "dmarc_np_weaker",
        "dmarc_obsolete_tags",
    }
)
