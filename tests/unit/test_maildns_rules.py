"""Mail DNS rules as tables: what one country resolved → which findings hold, which are
judged absent, and what is not judged at all."""

import re
from typing import Any

import pytest

from controller.posture.facts import Observation
from controller.posture.rules import CODES
from controller.sidechecks.mail_dns import rules
from controller.sidechecks.mail_dns.rules import mail_dns, mx_allowed, parse_policy, tlsa_matches
from controller.sidechecks.readiness import rules as readiness_rules
from shared.sidechecks.dmarc_tree import stops, targets
from shared.sidechecks.mail_dns import MailDns
from shared.sidechecks.readiness import DkimKey, Dmarc, DmarcLookup, Readiness

MAIL_DNS_CODES = frozenset(rules.CODES)

HOST = "mx.example.test"
POLICY = "version: STSv1\nmode: enforce\nmx: *.example.test\nmax_age: 86400\n"
CERT, SPKI = "aa" * 32, "bb" * 32


def good(**changes: Any) -> MailDns:
    facts: dict[str, Any] = {
        "domain": "example.test",
        "mx": [HOST],
        "spf": ["v=spf1 mx ip4:192.0.2.0/24 ip6:2001:db8::/32 include:_spf.example.test -all"],
        "dmarc": ["v=DMARC1; p=reject; rua=mailto:d@example.test; pct=100; adkim=s"],
        "mta_sts": ["v=STSv1; id=20240101"],
        "mta_sts_policy": POLICY,
        "tls_rpt": ["v=TLSRPTv1; rua=mailto:tls@example.test"],
        "tlsa": [f"3 1 1 {SPKI}"],
        "tlsa_dnssec": True,
    }
    return MailDns(**(facts | changes))


def seen_tls(**changes: Any) -> Observation:
    facts: dict[str, Any] = {"country": "DE", "cert_sha256": CERT, "cert_spki_sha256": SPKI}
    facts |= {"chain_verified": True, "name_matched": True}
    return Observation(**(facts | changes))


def holding(verdicts: dict[Any, Any]) -> set[str]:
    return {code for (code, _), f in verdicts.items() if f is not None}


def test_a_well_configured_domain_judges_every_code_and_raises_none() -> None:
    verdicts = mail_dns("smtp", HOST, good(), seen_tls())
    assert holding(verdicts) == set()
    assert {code for code, _ in verdicts} == MAIL_DNS_CODES
    assert {cc for _, cc in verdicts} == {"DE"}


@pytest.mark.parametrize(
    ("changes", "codes"),
    [
        ({"mx": ["other.example.net"]}, {"mx_mismatch", "mta_sts_mismatch"}),
        ({"mx": []}, {"mx_mismatch"}),
        ({"spf": []}, {"spf_missing"}),
        ({"spf": ["v=spf1 -all", "v=spf1 mx -all"]}, {"spf_invalid"}),
        ({"spf": ["v=spf1 mx include -all"]}, {"spf_invalid"}),
        ({"spf": ["v=spf1 ip4:300.1.1.1 -all"]}, {"spf_invalid"}),
        ({"spf": ["v=spf1 ip4:2001:db8::1 -all"]}, {"spf_invalid"}),
        ({"spf": ["v=spf1 redirect=a.test redirect=b.test"]}, {"spf_invalid"}),
        ({"spf": ["v=spf1 a:mail.%{d}/24 mx//64 ~all exp=explain.%{d}"]}, set()),
        ({"dmarc": [], "dmarc_walk": [DmarcLookup(name="test", records=[])]}, {"dmarc_missing"}),
        ({"dmarc": ["v=DMARC1; rua=mailto:d@example.test"]}, {"dmarc_invalid"}),
        ({"dmarc": ["v=DMARC1; p=block"]}, {"dmarc_invalid"}),
        ({"dmarc": ["v=DMARC1; p=none; pct=150"]}, set()),  # no tag now: readiness says obsolete
        ({"dmarc": ["v=DMARC1; p=none; t=maybe"]}, {"dmarc_invalid"}),
        ({"dmarc": ["v=DMARC1; p=reject; np=block"]}, {"dmarc_invalid"}),
        ({"dmarc": ["v=DMARC1; p=none; aspf=x"]}, {"dmarc_invalid"}),
        ({"dmarc": ["v=DMARC1; p=none", "v=DMARC1; p=reject"]}, {"dmarc_invalid"}),
        ({"dmarc": ["v=DMARC1; p=none; rua=nowhere"]}, {"dmarc_invalid"}),
        ({"tls_rpt": []}, {"tls_rpt_missing"}),
        ({"tls_rpt": ["v=TLSRPTv1;"]}, {"tls_rpt_missing"}),
        ({"mta_sts": ["v=STSv1; id=a", "v=STSv1; id=b"]}, {"mta_sts_invalid"}),
        ({"mta_sts": ["v=STSv1; id=not-alnum!"]}, {"mta_sts_invalid"}),
        ({"mta_sts_policy": None, "errors": {"mtaStsPolicy": "HTTP 404"}}, {"mta_sts_invalid"}),
        ({"mta_sts_policy": "version: STSv1\nmode: enforce\nmax_age: 1\n"}, {"mta_sts_invalid"}),
        ({"mta_sts_policy": POLICY.replace("enforce", "strict")}, {"mta_sts_invalid"}),
        ({"mta_sts_policy": POLICY.replace("86400", "99999999")}, {"mta_sts_invalid"}),
        (
            {"mta_sts_policy": POLICY.replace("*.example.test", "mx.other.test")},
            {"mta_sts_mismatch"},
        ),
        ({"mta_sts_policy": POLICY.replace("enforce", "none")}, set()),
        ({"mta_sts": [], "mta_sts_policy": None}, set()),
        ({"tlsa": [f"3 1 1 {'cc' * 32}"]}, {"tlsa_mismatch"}),
        ({"tlsa": [f"3 0 1 {CERT}"]}, set()),
        ({"tlsa": [f"3 1 1 {'cc' * 32}", f"3 1 1 {SPKI.upper()}"]}, set()),
    ],
)
def test_findings_of_bad_records(changes: dict[str, Any], codes: set[str]) -> None:
    assert holding(mail_dns("smtp", HOST, good(**changes), seen_tls())) == codes


def test_an_invalid_certificate_breaks_an_enforced_mta_sts_policy() -> None:
    verdicts = mail_dns("smtp", HOST, good(), seen_tls(chain_verified=False))
    assert holding(verdicts) == {"mta_sts_mismatch"}
    finding = verdicts[("mta_sts_mismatch", "DE")]
    assert finding is not None and "does not validate" in finding.detail


def test_unsigned_tlsa_records_are_unverified_never_a_finding() -> None:
    """Without the resolver's AD bit, even a non-matching TLSA record judges nothing."""
    verdicts = mail_dns(
        "smtp", HOST, good(tlsa=["3 1 1 " + "cc" * 32], tlsa_dnssec=False), seen_tls()
    )
    assert ("tlsa_mismatch", "DE") not in verdicts


def test_failed_lookups_judge_nothing() -> None:
    """A null list (the lookup failed) neither raises nor clears its findings."""
    nothing = MailDns(domain="example.test", errors={"mx": "timed out"})
    assert mail_dns("smtp", HOST, nothing, seen_tls()) == {}


def test_mx_and_mta_sts_match_are_judged_for_smtp_monitors_only() -> None:
    """An IMAP host is not where the domain's mail is delivered: no MX or MTA-STS verdict."""
    codes = {c for c, _ in mail_dns("imap", "imap.example.test", good(mx=[]), seen_tls())}
    assert "mx_mismatch" not in codes and "mta_sts_mismatch" not in codes
    assert "spf_missing" in codes


@pytest.mark.parametrize(
    ("port", "mx_judged"), [(25, True), (587, False), (465, False), (2525, False)]
)
def test_whether_the_mx_names_the_host_is_judged_on_port_25_only(
    port: int, mx_judged: bool
) -> None:
    """Mail for the domain arrives on its MX hosts' port 25; a submission server (587, 465) or
    another port is no MX, so a domain whose MX names other hosts is no finding of it."""
    verdicts = mail_dns("smtp", HOST, good(mx=["other.example.net"]), seen_tls(), port)
    assert ("mx_mismatch" in holding(verdicts)) is mx_judged


@pytest.mark.parametrize(
    ("host", "patterns", "allowed"),
    [
        ("mx.example.test", ("mx.example.test",), True),
        ("MX.Example.test.", ("mx.example.test",), True),
        ("mx.example.test", ("*.example.test",), True),
        ("a.mx.example.test", ("*.example.test",), False),
        ("example.test", ("*.example.test",), False),
        ("mx.example.test", ("mx2.example.test",), False),
    ],
)
def test_mta_sts_mx_patterns(host: str, patterns: tuple[str, ...], allowed: bool) -> None:
    assert mx_allowed(host, patterns) is allowed


def test_policy_parse() -> None:
    parsed = parse_policy(
        "version: STSv1\r\nmode: testing\r\nmx: a.test\r\nmx: *.b.test\r\nmax_age: 60\r\n"
    )
    assert not isinstance(parsed, str)
    assert (parsed.mode, parsed.mx, parsed.max_age) == ("testing", ("a.test", "*.b.test"), 60)
    assert isinstance(parse_policy("<html>not found</html>"), str)


def test_tlsa_without_comparable_records_is_not_judged() -> None:
    """Trust-anchor usages (0, 2) and SHA-512 need facts the agent does not keep."""
    assert tlsa_matches([f"2 0 1 {CERT}", f"3 1 2 {'dd' * 64}"], seen_tls()) is None


def test_every_mail_dns_code_has_a_severity_and_advice() -> None:
    for code in MAIL_DNS_CODES:
        severity, advice = CODES[code]
        assert severity in ("critical", "warning", "info") and advice


CUT_SPF = "v=spf1 ip4:192.0.2.0/24 ip4:198.51.10"  # a record cut mid-term by the bound


@pytest.mark.parametrize(
    ("changes", "unjudged", "codes", "why"),
    [
        ({"spf": [CUT_SPF], "truncated": ["spf"]}, {"spf_invalid"}, set(), "cut syntax"),
        (
            {"spf": [CUT_SPF, CUT_SPF], "truncated": ["spf"]},
            set(),
            {"spf_invalid"},
            "two records are two, cut or not",
        ),
        ({"dmarc": ["v=DMARC1; p=rej"], "truncated": ["dmarc"]}, {"dmarc_invalid"}, set(), ""),
        ({"mx": ["a.example.test"], "truncated": ["mx"]}, {"mx_mismatch"}, set(), "host cut?"),
        ({"tls_rpt": ["v=TLSRPTv1;"], "truncated": ["tlsRpt"]}, {"tls_rpt_missing"}, set(), ""),
        (
            {"mta_sts_policy": "version: STSv1\nmo", "truncated": ["mtaStsPolicy"]},
            {"mta_sts_invalid", "mta_sts_mismatch"},
            set(),
            "a cut policy does not parse",
        ),
        ({"tlsa": [f"3 1 1 {'cc' * 32}"], "truncated": ["tlsa"]}, {"tlsa_mismatch"}, set(), ""),
        ({"tlsa": [f"3 1 1 {SPKI}"], "truncated": ["tlsa"]}, set(), set(), "a match is one"),
    ],
)
def test_a_truncated_list_is_never_missing_and_what_it_lacks_is_not_judged(
    changes: dict[str, Any], unjudged: set[str], codes: set[str], why: str
) -> None:
    """Pins the posture of a `mailDns` cut to its bound: a cut list still has records (no
    `*_missing`), and findings that depend on what was cut are left unjudged, not raised."""
    verdicts = mail_dns("smtp", HOST, good(**changes), seen_tls())
    assert holding(verdicts) == codes, why
    assert not unjudged & {code for code, _ in verdicts}, why
    assert not {c for c in holding(verdicts) if c.endswith("_missing")}


def _walked(domain: str, found: dict[str, str], failed: str = "") -> MailDns:
    """`domain`'s facts with no DMARC record of its own and the Tree Walk above it: `found`
    maps a name asked to its one record; a lookup of `failed` failed (and ended the walk)."""
    walk: list[DmarcLookup] = []
    for name in targets(domain)[1:]:
        if name == failed:
            walk.append(DmarcLookup(name=name, error="timed out"))
            break
        record = found.get(name)
        walk.append(DmarcLookup(name=name, records=[record] if record else []))
        if record is not None and stops(len(walk), record):
            break
    return good(domain=domain, dmarc=[], dmarc_walk=walk)


ORG_REJECT = {"example.test": "v=DMARC1; p=reject"}


@pytest.mark.parametrize(
    ("facts", "verdict"),
    [
        # a subdomain under its Organizational Domain's p=reject: a record applies
        (_walked("a.b.example.test", ORG_REJECT), False),
        (_walked("b.example.test", {"example.test": "v=DMARC1; p=none; sp=reject"}), False),
        # a PSD's record (psd=y) applies to an Organizational Domain without its own
        (_walked("example.test", {"test": "v=DMARC1; p=reject; psd=y"}), False),
        # nothing anywhere the walk asks
        (_walked("a.b.example.test", {}), True),
        # two records above (both discarded), none else: nothing applies
        (
            good(
                domain="b.example.test",
                dmarc=[],
                dmarc_walk=[
                    DmarcLookup(name="example.test", records=["v=DMARC1; p=reject"] * 2),
                    DmarcLookup(name="test", records=[]),
                ],
            ),
            True,
        ),
        # a lookup of the walk failed: not known
        (_walked("a.b.example.test", ORG_REJECT, failed="b.example.test"), None),
        # an older agent's facts (no walk): not known
        (good(domain="a.b.example.test", dmarc=[]), None),
    ],
)
def test_dmarc_is_missing_only_when_no_record_applies_by_the_tree_walk(
    facts: MailDns, verdict: bool | None
) -> None:
    """RFC 9989 4.10: the record that applies to a domain without its own is found by the Tree
    Walk, as readiness finds it; `dmarc_missing` (whose advice is p=none) is raised only when
    none applies, never under an Organizational Domain's p=reject."""
    verdicts = mail_dns("smtp", HOST, facts, seen_tls())
    key = ("dmarc_missing", "DE")
    if verdict is None:
        assert key not in verdicts
    else:
        assert key in verdicts and (verdicts[key] is not None) is verdict


_STRENGTH = {None: -1, "none": 0, "quarantine": 1, "reject": 2}


def _advised(advice: str) -> str | None:
    """The weakest DMARC policy an advice tells to publish, or None when it names none."""
    said = re.findall(r"\bp=(none|quarantine|reject)\b", advice)
    return min(said, key=_STRENGTH.__getitem__) if said else None


@pytest.mark.parametrize(
    "facts",
    [
        _walked("a.b.example.test", ORG_REJECT),
        _walked("b.example.test", {"example.test": "v=DMARC1; p=quarantine"}),
        _walked("example.test", {"test": "v=DMARC1; p=reject; psd=y"}),
        _walked("a.b.example.test", {}),
        good(dmarc=["v=DMARC1; p=reject; pct=150"]),
        good(dmarc=["v=DMARC1; p=quarantine", "v=DMARC1; p=reject"]),
    ],
)
def test_no_finding_advises_a_policy_weaker_than_the_record_that_applies(facts: MailDns) -> None:
    """Every finding raised over these zones, of mail DNS and readiness alike: the policy its
    advice tells to publish is never weaker than the one receivers already apply (by the Tree
    Walk: RFC 9989 4.10)."""
    walked = rules.applying(facts)
    applied = walked.policy if walked is not None else None
    own = DmarcLookup(name=facts.domain, records=facts.dmarc)
    ready = Readiness(
        domain=facts.domain,
        dmarc=Dmarc(walk=[own, *(facts.dmarc_walk or [])]),
        dkim=[DkimKey(selector="s1", record="v=DKIM1; p=AAAA")],  # the domain sends
    )
    raised = holding(mail_dns("smtp", HOST, facts, seen_tls()))
    raised |= holding(readiness_rules.readiness(ready, "DE"))
    for code in raised:
        advised = _advised(CODES[code][1])
        if advised is not None:
            assert _STRENGTH[advised] >= _STRENGTH[applied], (code, advised, applied)
