"""Readiness rules as tables: RFC 9989's Organizational Domain examples (section 4.10.2) and
`psd`, the policy that applies, the SPF path, what is unknown, and the Basic-auth cliff by host
name, MX names and greeting."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.sidechecks.readiness import password_logins, rules
from shared.dns_canary import DnsCanary
from shared.messages import (
    ImapPopConfig,
    RoundTripConfig,
    RoundTripReceive,
    RoundTripSend,
    SmtpAuth,
    SmtpConfig,
)
from shared.secret import Secret
from shared.sidechecks.dmarc_tree import tree_walk
from shared.sidechecks.readiness import (
    Change,
    DkimKey,
    Dmarc,
    DmarcLookup,
    Kept,
    Readiness,
    ReportAuth,
    Spf,
    SpfNode,
)

A = "a.mail.example.com"
WALK = ["a.mail.example.com", "mail.example.com", "example.com", "com"]


def _walk(found: dict[str, str], failed: str = "") -> list[DmarcLookup]:
    out = []
    for name in WALK:
        if name == failed:
            out.append(DmarcLookup(name=name, error="timed out"))
            break
        out.append(DmarcLookup(name=name, records=[found[name]] if name in found else []))
    return out


@pytest.mark.parametrize(
    ("found", "org", "policy_at", "policy"),
    [
        # RFC 9989 4.10.2, first example: records at mail.example.com and example.com
        (
            {"mail.example.com": "v=DMARC1; p=reject", "example.com": "v=DMARC1; p=none"},
            "example.com",
            None,
            None,
        ),
        # second example: only _dmarc.com, with psd=y: the Organizational Domain is example.com
        ({"com": "v=DMARC1; p=reject; psd=y"}, "example.com", "com", "reject"),
        # psd=n stops the walk there
        (
            {
                "mail.example.com": "v=DMARC1; p=quarantine; psd=n",
                "example.com": "v=DMARC1; p=none",
            },
            "mail.example.com",
            "mail.example.com",
            "quarantine",
        ),
        # the domain's own record applies, with p=
        (
            {A: "v=DMARC1; p=none; sp=reject", "example.com": "v=DMARC1; p=reject"},
            "example.com",
            A,
            "none",
        ),
        # no record anywhere: the domain is its own Organizational Domain, no policy
        ({}, A, None, None),
        # an organizational record applies to a subdomain by its sp=
        ({"example.com": "v=DMARC1; p=reject; sp=none"}, "example.com", "example.com", "none"),
        # no valid p= but a rua reads as p=none (RFC 9989 4.10.1)
        ({A: "v=DMARC1; rua=mailto:r@example.com"}, A, A, "none"),
    ],
)
def test_tree_walk(
    found: dict[str, str], org: str, policy_at: str | None, policy: str | None
) -> None:
    walked = tree_walk(A, _walk(found))
    assert walked is not None
    assert walked.organizational == org
    if policy_at is not None or not found:
        assert walked.policy_at == policy_at
        assert walked.policy == policy


def test_tree_walk_first_example_takes_the_subdomain_record() -> None:
    """In the first example the subdomain has no record: mail.example.com is not where its
    policy is read (that is the Organizational Domain's, example.com, by sp= or p=)."""
    found = {"mail.example.com": "v=DMARC1; p=reject", "example.com": "v=DMARC1; p=none"}
    walked = tree_walk(A, _walk(found))
    assert walked is not None and walked.policy_at == "example.com" and walked.policy == "none"


def test_a_failed_lookup_leaves_the_walk_unknown_unless_psd_decided_before_it() -> None:
    assert tree_walk(A, _walk({}, failed="example.com")) is None
    decided = _walk({"mail.example.com": "v=DMARC1; p=reject; psd=n"}, failed="example.com")
    walked = tree_walk(A, decided)
    assert walked is not None and walked.organizational == "mail.example.com"


def _spf(**kw: object) -> Readiness:
    return Readiness(domain="example.com", spf=Spf(record="v=spf1 include:x -all", **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spf", "code", "holds"),
    [
        (_spf(lookups=10), "spf_lookup_limit", False),
        (_spf(lookups=11), "spf_lookup_limit", True),
        (_spf(lookups=3, complete=False, error="timed out"), "spf_lookup_limit", None),
        (_spf(lookups=12, complete=False, error="timed out"), "spf_lookup_limit", True),
        (_spf(mx_over=["example.com"]), "spf_lookup_limit", True),
        (_spf(void=2), "spf_void_lookups", False),
        (_spf(void=3), "spf_void_lookups", True),
        (_spf(all="?all"), "spf_too_permissive", True),
        (_spf(all="+all"), "spf_too_permissive", True),
        (_spf(all="~all"), "spf_too_permissive", False),
        # no `all` and no redirect: neutral for every sender no term matches, as `?all` (RFC
        # 7208 4.7); unknown when the tree was not read whole or is a permanent error
        (_spf(all=""), "spf_too_permissive", True),
        (_spf(all="", complete=False, error="timed out"), "spf_too_permissive", None),
        (_spf(all="", broken="example.com has 2 SPF records"), "spf_too_permissive", False),
        (_spf(ptr=True), "spf_ptr", True),
        (_spf(broken="include:x has no SPF record"), "spf_include_broken", True),
    ],
)
def test_spf_verdicts(spf: Readiness, code: str, holds: bool | None) -> None:
    v = rules.readiness(spf, "DE")
    if holds is None:
        assert (code, "DE") not in v
    else:
        assert (v[(code, "DE")] is not None) == holds


def test_the_path_follows_the_heaviest_include() -> None:
    spf = Spf(
        record="v=spf1 a include:light include:heavy -all",
        lookups=12,
        nodes=[
            SpfNode(domain="example.com", lookups=3),
            SpfNode(domain="light.test", via="include", parent=0, lookups=2),
            SpfNode(domain="heavy.test", via="include", parent=0, lookups=1),
            SpfNode(domain="deep.test", via="redirect", parent=2, lookups=6),
        ],
    )
    assert rules.spf_path(spf) == (
        "example.com (12) → include:heavy.test (7) → redirect:deep.test (6)"
    )


def test_a_resolver_that_fails_its_canaries_judges_nothing() -> None:
    bad = [DnsCanary(name="a.root-servers.net", type="A", exists=True, found=False)]
    unanswered = [DnsCanary(name="a.root-servers.net", type="A", exists=True, error="timed out")]
    for canaries in (bad, unanswered):
        facts = _spf(lookups=40)
        facts.canaries = canaries
        assert rules.readiness(facts, "DE") == {}
    good = [DnsCanary(name="a.root-servers.net", type="A", exists=True, found=True)]
    facts = _spf(lookups=40)
    facts.canaries = good
    assert rules.readiness(facts, "DE")[("spf_lookup_limit", "DE")] is not None


@pytest.mark.parametrize(
    ("host", "mx", "banner", "who"),
    [
        ("smtp.office365.com", None, None, "microsoft"),
        ("outlook.office365.com", None, None, "microsoft"),
        (
            "mail.example.com",
            None,
            "220 AM0PR01CA0001.outlook.office365.com Microsoft ESMTP MAIL Service ready",
            "microsoft",
        ),
        ("mail.example.com", ["example-com.mail.protection.outlook.com"], None, "microsoft"),
        # Exchange Online's DNSSEC MX namespace, where new accepted domains are provisioned
        ("mail.example.com", ["example-com.o-v1.mx.microsoft"], None, "microsoft"),
        ("mail.example.com", ["mx.microsoft.evil.test"], None, None),
        ("smtp.gmail.com", None, None, "google"),
        ("mail.example.com", None, "220 smtp.gmail.com ESMTP a1-20020a05 - gsmtp", "google"),
        ("mail.example.com", None, "* OK Gimap ready for requests from 192.0.2.1", "google"),
        ("mail.example.com", ["aspmx.l.google.com", "alt1.aspmx.l.google.com"], None, "google"),
        ("mail.example.com", ["mx.example.com"], "220 mail.example.com ESMTP Postfix", None),
        ("notoffice365.com.evil.test", None, None, None),
        # Exchange Server on premises greets as Exchange Online does (the product's default
        # banners); only a greeting naming Microsoft's own host is Microsoft 365's
        (
            "mail.contoso.test",
            None,
            "220 mail.contoso.test Microsoft ESMTP MAIL Service ready at Tue, 1 Dec 2026 10:00:00"
            " +0000",
            None,
        ),
        ("mail.contoso.test", None, "* OK The Microsoft Exchange IMAP4 service is ready.", None),
        ("mail.contoso.test", None, "+OK The Microsoft Exchange POP3 service is ready.", None),
        (
            "mail.contoso.test",
            ["contoso-test.mail.protection.outlook.com"],
            "220 ex01.contoso.test Microsoft ESMTP MAIL Service ready",
            None,
        ),
        (
            "mail.example.com",
            None,
            "220 PH7P220CA0001.NAMP220.PROD.OUTLOOK.COM Microsoft ESMTP MAIL Service ready",
            "microsoft",
        ),
        ("mail.example.com", None, "220 outlook.office365.com.evil.test ESMTP", None),
        # Exchange's IMAP and POP greetings name their server in base64 of UTF-16LE
        (
            "mail.example.com",
            None,
            "* OK The Microsoft Exchange IMAP4 service is ready."
            " [UwBDADEAUABSADgAMABDAEEAMAAwADUAOAAuAGwAYQBtAHAAcgBkADgAMAAuAHAAcgBvAGQALgBvAHUAdABs"
            "AG8AbwBrAC4AYwBvAG0A]",
            "microsoft",
        ),
        (
            "mail.example.com",
            None,
            "* OK The Microsoft Exchange IMAP4 service is ready."
            " [TQBOADIAUABSADAAMQBDAEEAMAAwADAANwA=]",
            None,
        ),
        (
            "mail.contoso.test",
            None,
            "+OK The Microsoft Exchange POP3 service is ready."
            " [RQBYADAAMQAuAGMAbwBuAHQAbwBzAG8ALgBsAG8AYwBhAGwA]",
            None,
        ),
        # an on-premises relay of a domain whose MX is Microsoft's: its own greeting decides
        (
            "relay.example.com",
            ["example-com.mail.protection.outlook.com"],
            "220 relay.example.com ESMTP Postfix",
            None,
        ),
    ],
)
def test_providers(host: str, mx: list[str] | None, banner: str | None, who: str | None) -> None:
    assert rules.provider(host, mx, banner) == who


def test_basic_auth_only_for_password_logins() -> None:
    password = SmtpConfig(auth=SmtpAuth(user="u", password=Secret("p")))
    oauth = SmtpConfig(auth=SmtpAuth(user="u", mechanism="XOAUTH2"))
    logins = password_logins(password, "smtp.office365.com")
    finding = rules.basic_auth(logins, None, None, "DE")[("basic_auth_retiring", "DE")]
    assert finding is not None and "December 2026" in finding.detail
    # MC786329 as updated on 27 January 2026: off by default for existing tenants at the end of
    # December 2026, administrators may turn it back on, and the final removal date is to be
    # announced in the second half of 2027 (not a removal in 2027)
    assert "turn it back on" in finding.detail
    assert "removal date Microsoft will announce in the second half of 2027" in finding.detail
    assert "removal to come in 2027" not in finding.detail
    assert rules.basic_auth(password_logins(oauth, "smtp.office365.com"), None, None, "DE") == {
        ("basic_auth_retiring", "DE"): None
    }
    trip = RoundTripConfig(
        send=RoundTripSend(auth=SmtpAuth(user="u", mechanism="XOAUTH2")),
        receive=RoundTripReceive(hostname="imap.gmail.com", user="u", password=Secret("p")),
    )
    finding = rules.basic_auth(password_logins(trip, "smtp.example.com"), None, None, "DE")[
        ("basic_auth_retiring", "DE")
    ]
    assert finding is not None and "IMAP with a password to imap.gmail.com" in finding.detail
    imap = ImapPopConfig(user="u", password=Secret("p"))
    assert password_logins(imap, "imap.gmail.com") == [("IMAP", "imap.gmail.com")]


T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("stored", "read", "changes", "since"),
    [
        ({}, {"spf": "v=spf1 -all"}, [], {"spf": T1}),  # first read: no change
        ({"spf": ("v=spf1 -all", T0)}, {"spf": "v=spf1 -all"}, [], {"spf": T0}),
        (
            {"spf": ("v=spf1 -all", T0)},
            {"spf": "v=spf1 include:new.test -all"},
            [
                Change(
                    what="spf",
                    before="v=spf1 -all",
                    after="v=spf1 include:new.test -all",
                    since=T0.isoformat(),
                )
            ],
            {"spf": T1},
        ),
        (  # a record removed is a change to ""
            {"dmarc": ("v=DMARC1; p=reject", T0)},
            {"dmarc": ""},
            [Change(what="dmarc", before="v=DMARC1; p=reject", after="", since=T0.isoformat())],
            {"dmarc": T1},
        ),
    ],
)
def test_moves(
    stored: dict[str, tuple[str, datetime]],
    read: dict[str, str],
    changes: list[Change],
    since: dict[str, datetime],
) -> None:
    assert rules.moves(stored, read, T1) == (changes, since)


def test_readings_leave_out_what_was_not_read() -> None:
    facts = Readiness(
        domain="example.com",
        spf=Spf(error="timed out", complete=False),
        dmarc=Dmarc(walk=[DmarcLookup(name="example.com", error="timed out")]),
        dkim=[DkimKey(selector="a", error="timed out"), DkimKey(selector="b")],
    )
    assert rules.readings(facts) == {"dkim:b": ""}
    facts.canaries = [DnsCanary(name="x.test", type="A", exists=True, found=False)]
    assert rules.readings(facts) == {}


def test_drift_and_key_age_verdicts() -> None:
    facts = Readiness(
        domain="example.com",
        dkim=[DkimKey(selector="s1", record="v=DKIM1; p=AAAA")],
        kept=Kept(
            changes=[Change(what="dkim:s1", before="v=DKIM1; p=BBBB", after="v=DKIM1; p=AAAA")],
            key_since={"s1": T0.isoformat()},
        ),
    )
    v = rules.readiness(facts, "DE", T0 + timedelta(days=366))
    changed = v[("dkim_key_changed", "DE")]
    assert changed is not None and changed.detail == (
        "s1._domainkey.example.com: «v=DKIM1; p=BBBB» → «v=DKIM1; p=AAAA»"
    )
    assert v[("dkim_key_old", "DE")] is not None
    assert rules.readiness(facts, "DE", T0 + timedelta(days=364))[("dkim_key_old", "DE")] is None
    facts.kept = None  # stored before anything was kept: neither is judged
    assert ("dkim_key_changed", "DE") not in rules.readiness(facts, "DE", T0)


def _rua(
    reports: list[ReportAuth], reports_for: str = "example.com", unchecked: int = 0
) -> Readiness:
    """a.mail.example.com's walk: the Organizational Domain's record applies."""
    found = {"example.com": "v=DMARC1; p=reject; rua=mailto:r@vendor.net"}
    dmarc = Dmarc(walk=_walk(found), reports=reports, reports_for=reports_for, unchecked=unchecked)
    return Readiness(domain=A, dmarc=dmarc)


NO = ReportAuth(uri="mailto:r@vendor.net", host="vendor.net", authorized=False)
YES = ReportAuth(uri="mailto:s@ok.net", host="ok.net", authorized=True)
FAILED = ReportAuth(uri="mailto:t@slow.net", host="slow.net", error="timed out")
MOVED = ReportAuth(
    uri="mailto:u@moved.net",
    host="moved.net",
    authorized=False,
    why="example.com._report._dmarc.moved.net overrides rua with another host (mailto:x@y.net)",
)


@pytest.mark.parametrize(
    ("facts", "holds", "detail"),
    [
        (_rua([NO, YES]), True, "mailto:r@vendor.net: no example.com._report._dmarc.vendor.net"),
        (_rua([YES]), False, ""),
        (_rua([]), False, ""),  # no external destination
        (_rua([MOVED]), True, f"mailto:u@moved.net: {MOVED.why}"),
        # a failed lookup: raised for the others, never cleared
        (_rua([NO, FAILED]), True, "mailto:r@vendor.net: no example.com._report._dmarc.vendor.net"),
        (_rua([YES, FAILED]), None, None),
        # past the destinations checked: raised for those, never cleared
        (_rua([YES], unchecked=2), None, None),
        (
            _rua([NO], unchecked=1),
            True,
            "mailto:r@vendor.net: no example.com._report._dmarc.vendor.net;"
            " 1 more external destinations not checked",
        ),
        # destinations of another record than the one that applies (an older agent's, which
        # asked those of the first record found): nothing known
        (_rua([NO], reports_for=""), None, None),
        (_rua([NO], reports_for="mail.example.com"), None, None),
    ],
)
def test_external_destinations_of_the_record_that_applies(
    facts: Readiness, holds: bool | None, detail: str | None
) -> None:
    v = rules.readiness(facts, "DE")
    key = ("dmarc_external_rua_unauthorized", "DE")
    if holds is None:
        assert key not in v
        return
    found = v[key]
    assert (found is not None) is holds
    if found is not None:
        assert found.detail == detail


MS_MX = ["example-com.mail.protection.outlook.com"]
POSTFIX = "220 relay.example.com ESMTP Postfix"


@pytest.mark.parametrize(
    ("logins", "mx", "banner", "holds"),
    [
        # an on-premises relay of a domain whose mail Microsoft hosts: its greeting decides,
        # and a round that read no greeting (the relay was down) decides nothing
        ([("SMTP AUTH", "relay.example.com")], MS_MX, POSTFIX, False),
        ([("SMTP AUTH", "relay.example.com")], MS_MX, None, None),
        ([("SMTP AUTH", "smtp.office365.com")], None, None, True),  # its name tells
        # a round trip's mailbox, whose greeting the round does not carry: the domain's MX
        ([("SMTP AUTH", "relay.example.com"), ("IMAP", "imap.example.com")], MS_MX, POSTFIX, True),
        ([("SMTP AUTH", "relay.example.com"), ("IMAP", "imap.example.com")], [], POSTFIX, False),
        # without the MX (the domain not asked: its budget spent, or a resolver not believed)
        # the mailbox's host is unknown, and a finding the MX raised stays
        ([("SMTP AUTH", "relay.example.com"), ("IMAP", "imap.example.com")], None, POSTFIX, None),
        # one of them known to be Microsoft's is raised whatever the other
        ([("SMTP AUTH", "relay.example.com"), ("IMAP", "imap.gmail.com")], None, None, True),
    ],
)
def test_basic_auth_is_stable_across_a_servers_outages(
    logins: list[tuple[str, str]], mx: list[str] | None, banner: str | None, holds: bool | None
) -> None:
    v = rules.basic_auth(logins, mx, banner, "DE")
    key = ("basic_auth_retiring", "DE")
    if holds is None:
        assert v == {}
    else:
        assert (v[key] is not None) is holds


def test_the_dmarc_read_for_drift_is_the_record_that_applies() -> None:
    """A subdomain without a record of its own: its Organizational Domain's record is the one
    that applies, so relaxing that one is drift for the subdomain's monitor; a walk cut short
    reads nothing; no record anywhere reads as none."""
    org = "v=DMARC1; p=reject"
    facts = Readiness(domain=A, dmarc=Dmarc(walk=_walk({"example.com": org})))
    assert rules.readings(facts) == {"dmarc": org}
    facts.dmarc = Dmarc(walk=_walk({"example.com": org}, failed="mail.example.com"))
    assert rules.readings(facts) == {}
    facts.dmarc = Dmarc(walk=_walk({}))
    assert rules.readings(facts) == {"dmarc": ""}


SENDS = Spf(record="v=spf1 ip4:192.0.2.1 -all")


@pytest.mark.parametrize(
    ("found", "policy", "none", "weaker"),
    [
        # np absent: subdomains that do not exist get sp, else p (RFC 9989 4.7)
        ({"example.com": "v=DMARC1; p=reject"}, "reject", False, ""),
        (
            {"example.com": "v=DMARC1; p=reject; np=none"},
            "reject",
            False,
            "_dmarc.example.com: np=none for subdomains that do not exist, reject for the others",
        ),
        (
            {"example.com": "v=DMARC1; p=reject; sp=quarantine; np=none"},
            "quarantine",
            False,
            "_dmarc.example.com: np=none for subdomains that do not exist, quarantine for the"
            " others",
        ),
        ({"example.com": "v=DMARC1; p=reject; sp=none; np=quarantine"}, "none", True, ""),
        ({"example.com": "v=DMARC1; p=none; np=reject"}, "none", True, ""),  # np stricter
        ({"example.com": "v=DMARC1; p=reject; np=reject"}, "reject", False, ""),
        # np not a policy: the record reads as p=none with a rua, else as none at all (4.10.1)
        (
            {"example.com": "v=DMARC1; p=reject; np=block; rua=mailto:r@example.com"},
            "none",
            True,
            "",
        ),
        ({"example.com": "v=DMARC1; p=reject; np=block"}, None, True, ""),
        ({"example.com": "v=DMARC1; p=reject; sp=never"}, None, True, ""),
        # the domain's own record sets its policy; np is the Organizational Domain's
        (
            {A: "v=DMARC1; p=reject", "example.com": "v=DMARC1; p=reject; np=none"},
            "reject",
            False,
            "_dmarc.example.com: np=none for subdomains that do not exist, reject for the others",
        ),
        # no record at the Organizational Domain: the PSD's (psd=y) np
        (
            {"com": "v=DMARC1; p=quarantine; psd=y; np=none"},
            "quarantine",
            False,
            "_dmarc.com: np=none for subdomains that do not exist, quarantine for the others",
        ),
        # t=y (RFC 9989 4.7): receivers apply one level below the policy asked, so a
        # quarantine under test is none, a reject under test is quarantine
        ({"example.com": "v=DMARC1; p=quarantine; t=y"}, "quarantine", True, ""),
        ({"example.com": "v=DMARC1; p=reject; sp=quarantine; t=y"}, "quarantine", True, ""),
        ({"example.com": "v=DMARC1; p=reject; t=y"}, "reject", False, ""),
        ({"example.com": "v=DMARC1; p=quarantine; t=n"}, "quarantine", False, ""),
        ({}, None, None, None),  # no record: the mail DNS side check tells it
    ],
)
def test_dmarcbis_np_and_policies_that_do_not_parse(
    found: dict[str, str], policy: str | None, none: bool | None, weaker: str | None
) -> None:
    """RFC 9989's `np` (4.7) for the Organizational Domain's subdomains that do not exist,
    judged against `sp`/`p`, and a `p`, `sp` or `np` that is not a policy (4.10.1)."""
    walked = tree_walk(A, _walk(found))
    assert walked is not None and walked.policy == policy
    v = rules.readiness(Readiness(domain=A, spf=SENDS, dmarc=Dmarc(walk=_walk(found))), "DE", T0)
    if none is None:
        assert ("dmarc_policy_none", "DE") not in v and ("dmarc_np_weaker", "DE") not in v
        return
    assert (v[("dmarc_policy_none", "DE")] is not None) is none
    found_np = v[("dmarc_np_weaker", "DE")]
    assert (found_np.detail if found_np is not None else "") == weaker


def test_a_policy_under_test_says_what_receivers_apply() -> None:
    """`t=y` beside `p=quarantine`: the finding says the policy asked and the one applied."""
    found = {"example.com": "v=DMARC1; p=quarantine; t=y"}
    v = rules.readiness(Readiness(domain=A, spf=SENDS, dmarc=Dmarc(walk=_walk(found))), "DE", T0)
    finding = v[("dmarc_policy_none", "DE")]
    assert finding is not None
    assert finding.detail == (
        f"the policy that applies to {A} is p=quarantine with t=y (a policy under test:"
        " receivers apply none), from _dmarc.example.com (Organizational Domain example.com)"
    )


@pytest.mark.parametrize(
    ("record", "detail"),
    [
        ("v=DKIM1; k=rsa; p=AAAA", None),
        ("v=DKIM1; k=rsa; h=sha256; p=AAAA", None),
        ("v=DKIM1; k=rsa; h=sha1:sha256; p=AAAA", None),
        # RFC 8301 3.1: rsa-sha1 MUST NOT be used for verifying; a key that allows SHA-1
        # alone (RFC 6376 3.6.1 `h=`) verifies no signature receivers accept
        (
            "v=DKIM1; k=rsa; h=sha1; p=AAAA",
            "s1._domainkey.example.com: h=sha1 allows no SHA-256 (receivers refuse rsa-sha1)",
        ),
        (
            "v=DKIM1; k=rsa; h = SHA1 ; p=AAAA",
            "s1._domainkey.example.com: h=SHA1 allows no SHA-256 (receivers refuse rsa-sha1)",
        ),
    ],
)
def test_a_key_that_allows_sha1_alone_is_weak(record: str, detail: str | None) -> None:
    key = DkimKey(selector="s1", record=record, key_type="rsa", bits=2048, sha256="x")
    v = rules.readiness(Readiness(domain="example.com", dkim=[key]), "DE")
    finding = v[("dkim_key_weak", "DE")]
    assert (finding.detail if finding is not None else None) == detail


@pytest.mark.parametrize(
    "record",
    [
        "v=DMARC1; p=reject;; pct=50; rua=mailto:d@example.com",
        "v=DMARC1; p=reject; junk; pct=50",
        "v=DMARC1; p=reject; pct=50; =x",
    ],
)
def test_a_dmarc_syntax_error_past_v_is_ignored_not_the_record(record: str) -> None:
    """RFC 9989 4.7: syntax errors in the rest of a record are discarded or ignored, and
    unknown tags ignored: `p=reject` still applies (no `dmarc_policy_none`), `pct` is still
    named."""
    walk = _walk({"example.com": record})
    walked = tree_walk(A, walk)
    assert walked is not None and walked.policy == "reject"
    v = rules.readiness(Readiness(domain=A, spf=SENDS, dmarc=Dmarc(walk=walk)), "DE", T0)
    assert v[("dmarc_policy_none", "DE")] is None
    obsolete = v[("dmarc_obsolete_tags", "DE")]
    assert obsolete is not None and "pct=50" in obsolete.detail


def test_a_google_password_login_is_not_said_to_start_failing() -> None:
    """A password login that works against Google is an app password (account passwords are
    refused to mail apps already), which still works: the finding says so and says nothing
    will start failing there; Microsoft's SMTP AUTH is the one with a date."""
    google = rules.basic_auth([("IMAP", "imap.gmail.com")], None, None, "DE")
    finding = google[("basic_auth_retiring", "DE")]
    assert finding is not None and "app password" in finding.detail
    _, advice = rules.CODES["basic_auth_retiring"]
    assert "Google" in advice and "app password" in advice
    assert "will start failing" not in advice.split("Google", 1)[1].split(".")[0]
    microsoft = rules.basic_auth([("SMTP AUTH", "smtp.office365.com")], None, None, "DE")
    found = microsoft[("basic_auth_retiring", "DE")]
    assert found is not None and "end of December 2026" in found.detail
