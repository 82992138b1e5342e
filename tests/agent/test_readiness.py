"""The agent's readiness probe against a real DNS server on loopback (testkit/peers/dns.py, which
answers as a recursive resolver): SPF include trees of 9, 10 and 11 lookups, loops, void
lookups, `exp=`, `redirect`, macros; the RFC 7208 test suite's processing-limit zones (the YAML
suite pyspf ships, vendored in tests/data/rfc7208 with its licence) against the suite's own
verdicts; RFC 9989's Tree Walk example; DKIM keys of real sizes; and bad DNS (CNAME loops, 64 KB
of TXT, a tree of 1,000 includes, a resolver that lies) as a clear unknown within the round's
bounds."""

import asyncio
import base64
import email
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dkim
import dns.exception
import dns.rdata
import dns.resolver
import msgspec
import pytest
import spf
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from agent.probers.delivery import auth_results
from agent.sidechecks.base import Round
from agent.sidechecks.readiness import (
    BUSY,
    PER_TENANT_MAX,
    ReadinessProbe,
    runner,
)
from controller.sidechecks.readiness import rules
from shared.dns_canary import Canary
from shared.messages import AuthResults
from shared.sidechecks.dmarc_tree import targets
from shared.sidechecks.readiness import (
    NAME_MAX,
    NAMES_MAX,
    NODES_MAX,
    QUERIES_MAX,
    RECORD_MAX,
    REPORT_AUTH_MAX,
    SELECTORS_MAX,
    TEXT_MAX,
    Change,
    DkimKey,
    Dmarc,
    Kept,
    Readiness,
    ReadinessAsk,
    ReportAuth,
    Spf,
    SpfNode,
    bounded,
)
from testkit.peers.dns import DnsPeer, Records
from testkit.peers.jobs import make_job, up_result

SUITE = Path(__file__).parents[1] / "data" / "rfc7208" / "rfc7208-tests.yml"


def _txt(text: str) -> str:
    """A TXT record's presentation text: strings of at most 255 characters."""
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, max(len(text), 1), 255))


async def _probe(records: Records, domain: str, selectors: tuple[str, ...] = ()) -> Readiness:
    async with DnsPeer(records) as peer:
        return await ReadinessProbe(resolver=peer.address, canaries=()).probe(
            domain, selectors, 5.0
        )


def _chain(lookups: int) -> Records:
    """example.test's SPF: `a`, then includes nested three deep, spending `lookups` in all."""
    records: Records = {
        ("example.test", "A"): ["192.0.2.1"],
        ("mx.example.test", "A"): ["192.0.2.2"],
    }
    records[("example.test", "MX")] = ["10 mx.example.test."]
    left = lookups - 1 - 3  # the a term and three includes
    per = [left // 3 + (1 if i < left % 3 else 0) for i in range(3)]
    records[("example.test", "TXT")] = [_txt("v=spf1 a include:one.vendor.test -all")]
    names = ["one.vendor.test", "two.vendor.test", "three.vendor.test"]
    for i, name in enumerate(names):
        terms = ["mx:example.test"] * per[i]
        if i + 1 < len(names):
            terms.append(f"include:{names[i + 1]}")
        records[(name, "TXT")] = [_txt(f"v=spf1 {' '.join(terms)} ~all")]
    return records


@pytest.mark.parametrize("lookups", [9, 10, 11])
async def test_an_include_tree_is_counted_to_the_lookup(lookups: int) -> None:
    """Trees of 9, 10 and 11 DNS-querying terms count exactly that; only 11 is a finding, and
    its path names the chain of includes that spends them."""
    facts = await _probe(_chain(lookups), "example.test")
    assert facts.spf is not None and facts.spf.complete, facts.spf
    assert facts.spf.lookups == lookups
    verdicts = rules.readiness(facts, "DE")
    finding = verdicts[("spf_lookup_limit", "DE")]
    assert (finding is not None) == (lookups > 10)
    if finding is not None:
        assert "11 DNS lookups" in finding.detail
        assert "include:three.vendor.test" in finding.detail, finding.detail


async def test_exp_and_ip_terms_cost_nothing_redirect_costs_one_and_all_ends_it() -> None:
    """`exp=`, `ip4`, `ip6` and `all` are not counted (RFC 7208 4.6.4); `redirect` is, and is
    followed; terms after `all`, and a `redirect` beside it, are never evaluated."""
    records: Records = {
        ("example.test", "TXT"): [
            _txt("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 exp=why.example.test redirect=r.test")
        ],
        ("why.example.test", "TXT"): [_txt("not allowed")],
        ("r.test", "TXT"): [_txt("v=spf1 include:i.test -all a a a redirect=never.test")],
        ("i.test", "TXT"): [_txt("v=spf1 ip4:198.51.100.1 -all")],
    }
    facts = await _probe(records, "example.test")
    assert facts.spf is not None
    assert facts.spf.lookups == 2  # redirect=r.test, include:i.test
    assert facts.spf.all == "-all"
    assert [n.domain for n in facts.spf.nodes] == ["example.test", "r.test", "i.test"]
    assert facts.spf.complete and not facts.spf.error


async def test_void_lookups_and_macros() -> None:
    """Three names that do not exist are three void lookups (a finding; two are not); a term
    whose target names the sender (`%{i}`) is counted but not looked up, and `ptr` is
    flagged, never asked."""
    records: Records = {
        ("example.test", "TXT"): [
            _txt("v=spf1 a:gone1.test mx:gone2.test exists:%{i}.rbl.test ptr a:gone3.test ?all")
        ],
    }
    async with DnsPeer(records) as peer:
        facts = await ReadinessProbe(resolver=peer.address, canaries=()).probe(
            "example.test", (), 5.0
        )
        asked = {name for name, _ in peer.asked}
    assert facts.spf is not None
    assert facts.spf.lookups == 5
    assert facts.spf.void == 3 and facts.spf.void_names == [
        "gone1.test",
        "gone2.test",
        "gone3.test",
    ]
    assert facts.spf.macros == ["exists:%{i}.rbl.test"]
    assert not any("rbl.test" in name for name in asked)
    assert facts.spf.ptr and not any(name.endswith(".arpa") for name in asked)
    verdicts = rules.readiness(facts, "DE")
    assert verdicts[("spf_void_lookups", "DE")] is not None
    assert verdicts[("spf_ptr", "DE")] is not None
    assert verdicts[("spf_too_permissive", "DE")] is not None


def _mx(names: int) -> Records:
    """example.test's SPF is one `mx` term; its MX has `names` names."""
    return {
        ("example.test", "TXT"): [_txt("v=spf1 mx -all")],
        ("example.test", "MX"): [f"10 mx{i}.example.test." for i in range(names)],
    }


def _voids(names: int) -> Records:
    """example.test's SPF names `names` domains that do not exist."""
    terms = " ".join(f"a:gone{i}.test" for i in range(names))
    return {("example.test", "TXT"): [_txt(f"v=spf1 {terms} ip4:192.0.2.1 -all")]}


@pytest.mark.parametrize(
    ("records", "code", "detail"),
    [
        # RFC 7208 4.6.4: at most 10 MX names per `mx` term, at most 2 void lookups
        (_mx(10), "spf_lookup_limit", None),
        (_mx(11), "spf_lookup_limit", "more than 10 MX names for mx:example.test"),
        (_voids(2), "spf_void_lookups", None),
        (_voids(3), "spf_void_lookups", "3 void lookups (limit 2): gone0.test, gone1.test"),
    ],
)
async def test_each_limit_on_the_wire_exactly_on_it_and_one_past(
    records: Records, code: str, detail: str | None
) -> None:
    facts = await _probe(records, "example.test")
    assert facts.spf is not None and facts.spf.complete and not facts.spf.error, facts.spf
    finding = rules.readiness(facts, "DE")[(code, "DE")]
    assert (finding is None) is (detail is None)
    if finding is not None and detail is not None:
        assert detail in finding.detail, finding.detail


@pytest.mark.parametrize("size", [255, 700, 4000])
async def test_a_long_record_is_read_whole_across_its_strings(size: int) -> None:
    """A record past 512 bytes (RFC 7208 3.4 advises against it; it is no error) and one of
    thousands of 2-byte strings (3.3: joined without spaces) arrive whole, over TCP once UDP
    truncates, and count what they hold."""
    terms: list[str] = []
    i = 0
    while len(" ".join(["v=spf1", *terms, "include:x.test -all"])) < size:
        terms.append(f"ip4:198.51.{i // 250}.{i % 250}")
        i += 1
    record = " ".join(["v=spf1", *terms, "include:x.test -all"])
    width = 2 if size > 1000 else 255
    strings = " ".join(f'"{record[j : j + width]}"' for j in range(0, len(record), width))
    records: Records = {
        ("example.test", "TXT"): [strings],
        ("x.test", "TXT"): [_txt("v=spf1 -all")],
    }
    facts = await _probe(records, "example.test")
    assert facts.spf is not None and facts.spf.complete and not facts.spf.broken, facts.spf
    assert facts.spf.record == record[:RECORD_MAX] and facts.spf.lookups == 1
    assert [n.domain for n in facts.spf.nodes] == ["example.test", "x.test"]
    assert not [k for k, f in rules.readiness(facts, "DE").items() if f is not None]


@pytest.mark.parametrize("kind", ["a", "exists"])
async def test_a_name_with_aaaa_alone_is_void_for_a_and_exists(kind: str) -> None:
    """RFC 7208 5.7: `exists` looks up an A record whatever the sender; 5.3: `a` looks up the
    connection's address type, and the walk's sender (no term matches it) is IPv4, as in
    pyspf's evaluation. So a name with AAAA records alone is a void lookup for both; three
    are a permanent error (for every IPv4 sender, for `a`)."""
    terms = " ".join(f"{kind}:v6only{i}.test" for i in range(3))
    records: Records = {("example.test", "TXT"): [_txt(f"v=spf1 {terms} -all")]}
    for i in range(3):
        records[(f"v6only{i}.test", "AAAA")] = ["2001:db8::1"]
    async with DnsPeer(records) as peer:
        facts = await ReadinessProbe(resolver=peer.address, canaries=()).probe(
            "example.test", (), 5.0
        )
        asked = [rdtype for name, rdtype in peer.asked if name.startswith("v6only")]
    assert facts.spf is not None and facts.spf.complete
    assert facts.spf.void == 3 and asked == ["A", "A", "A"], (facts.spf, asked)
    finding = rules.readiness(facts, "DE")[("spf_void_lookups", "DE")]
    assert finding is not None and "v6only0.test" in finding.detail


async def test_an_include_loop_is_over_the_limit_and_says_the_loop() -> None:
    records: Records = {
        ("example.test", "TXT"): [_txt("v=spf1 include:a.test -all")],
        ("a.test", "TXT"): [_txt("v=spf1 include:b.test")],
        ("b.test", "TXT"): [_txt("v=spf1 include:a.test")],
    }
    facts = await _probe(records, "example.test")
    assert facts.spf is not None and facts.spf.loop == [
        "example.test",
        "a.test",
        "b.test",
        "a.test",
    ]
    finding = rules.readiness(facts, "DE")[("spf_lookup_limit", "DE")]
    assert finding is not None and "include loop" in finding.detail


async def test_a_tree_of_a_thousand_includes_is_bounded() -> None:
    """A chain of 1,000 includes: the walk stops within its bounds (records and queries), says
    why, and since it has already counted more than 10 it is a finding all the same."""
    records: Records = {("example.test", "TXT"): [_txt("v=spf1 include:n0.test -all")]}
    for i in range(1000):
        records[(f"n{i}.test", "TXT")] = [_txt(f"v=spf1 include:n{i + 1}.test")]
    facts = await _probe(records, "example.test")
    assert facts.spf is not None and not facts.spf.complete
    assert "more than" in facts.spf.error
    assert facts.queries <= QUERIES_MAX
    print(f"1,000 includes: {facts.queries} queries, {facts.spf.lookups} lookups counted")
    finding = rules.readiness(facts, "DE")[("spf_lookup_limit", "DE")]
    assert finding is not None and "at least" in finding.detail


async def test_an_include_tree_fanning_out_to_10000_names_is_bounded() -> None:
    """400 includes of 25 includes each (10,000 names, every record under TXT_MAX): the walk
    stops within its bounds (records, queries) and says why; what it counted is already past
    10, so the finding holds; what is kept of it is bounded."""
    fan = [f"f{i}.test" for i in range(400)]
    records: Records = {
        ("example.test", "TXT"): [_txt(f"v=spf1 {' '.join(f'include:{n}' for n in fan)} -all")]
    }
    for i, name in enumerate(fan):
        leaves = " ".join(f"include:l{i}-{j}.test" for j in range(25))
        records[(name, "TXT")] = [_txt(f"v=spf1 {leaves} -all")]
    async with DnsPeer(records) as peer:
        facts = await ReadinessProbe(resolver=peer.address, canaries=()).probe(
            "example.test", (), 5.0
        )
        asked = len(peer.asked)
    assert facts.spf is not None and not facts.spf.complete and "more than" in facts.spf.error
    assert facts.queries <= QUERIES_MAX and asked <= QUERIES_MAX
    assert len(facts.spf.nodes) <= NODES_MAX
    size = len(msgspec.json.encode(facts))
    print(f"10,000-name fan-out: {asked} queries, {facts.spf.lookups} lookups, {size} bytes")
    assert size < 80_000
    finding = rules.readiness(facts, "DE")[("spf_lookup_limit", "DE")]
    assert finding is not None and "at least" in finding.detail


async def test_a_cname_loop_and_64_kb_of_txt_are_unknown_with_why() -> None:
    records: Records = {
        ("loop.test", "CNAME"): ["loop2.test."],
        ("loop2.test", "CNAME"): ["loop.test."],
        ("big.test", "TXT"): [_txt("v=spf1 -all")]
        + [_txt(f"{i:04d}" + "x" * 246) for i in range(240)],
    }
    looped = await _probe(records, "loop.test")
    assert looped.spf is not None and not looped.spf.complete
    assert looped.spf.error, looped.spf
    assert ("spf_lookup_limit", "DE") not in rules.readiness(looped, "DE")
    big = await _probe(records, "big.test")
    assert big.spf is not None and "over 8192 bytes" in big.spf.error
    assert rules.readiness(big, "DE").get(("spf_lookup_limit", "DE")) is None


async def test_a_resolver_that_fails_its_canaries_is_believed_in_nothing() -> None:
    """A resolver that answers NXDOMAIN for everything: the canary that must exist fails, and
    the round raises nothing (no finding about the domain), however bad its answers look."""
    canaries = (Canary("a.root-servers.net", "A", True), Canary("x.invalid", "A", False))
    records: Records = {}
    async with DnsPeer(records, canaries=False) as peer:
        facts = await ReadinessProbe(resolver=peer.address, canaries=canaries).probe(
            "example.test", (), 5.0
        )
    assert facts.canaries is not None and facts.canaries[0].found is False
    assert rules.readiness(facts, "DE") == {}


def test_the_rfc_9989_tree_walk_example() -> None:
    """RFC 9989 4.10's example: eight queries for a.b.c.d.e.f.g.h.i.j.mail.example.com (a
    name of 8 labels or more is cut to its last 7 after the first query)."""
    assert targets("a.b.c.d.e.f.g.h.i.j.mail.example.com") == [
        "a.b.c.d.e.f.g.h.i.j.mail.example.com",
        "g.h.i.j.mail.example.com",
        "h.i.j.mail.example.com",
        "i.j.mail.example.com",
        "j.mail.example.com",
        "mail.example.com",
        "example.com",
        "com",
    ]
    eight = targets("a.b.c.d.e.mail.example.com")  # 8 labels: one query per label
    assert eight[:3] == [
        "a.b.c.d.e.mail.example.com",
        "b.c.d.e.mail.example.com",
        "c.d.e.mail.example.com",
    ]
    assert len(eight) == 8 and eight[-1] == "com"
    assert targets("a.mail.example.com") == [
        "a.mail.example.com",
        "mail.example.com",
        "example.com",
        "com",
    ]


async def test_dmarc_walk_and_report_authorization_on_the_wire() -> None:
    """A subdomain without a record takes its Organizational Domain's (sp=); an external
    report destination without `_report._dmarc` authorization (asked for the domain whose
    record applies, RFC 9990 section 3) is a finding, an authorized one is not."""
    records: Records = {
        ("example.test", "TXT"): [_txt("v=spf1 mx -all")],
        ("example.test", "MX"): ["10 mx.example.test."],
        ("_dmarc.example.test", "TXT"): [
            _txt("v=DMARC1; p=reject; sp=none; pct=20; rua=mailto:a@ok.test,mailto:b@nope.test")
        ],
        ("mail.example.test", "TXT"): [_txt("v=spf1 include:example.test -all")],
        ("example.test._report._dmarc.ok.test", "TXT"): [_txt("v=DMARC1")],
    }
    facts = await _probe(records, "mail.example.test")
    assert facts.dmarc is not None
    assert [w.name for w in facts.dmarc.walk] == ["mail.example.test", "example.test", "test"]
    auths = {r.host: r.authorized for r in facts.dmarc.reports}
    assert auths == {"ok.test": True, "nope.test": False}
    v = rules.readiness(facts, "DE")
    none = v[("dmarc_policy_none", "DE")]
    assert none is not None and "sp" not in none.detail and "p=none" in none.detail
    rua = v[("dmarc_external_rua_unauthorized", "DE")]
    assert rua is not None and "nope.test" in rua.detail and "ok.test" not in rua.detail
    obsolete = v[("dmarc_obsolete_tags", "DE")]
    assert obsolete is not None and "pct=20" in obsolete.detail


async def test_the_destinations_checked_are_every_one_of_the_record_that_applies() -> None:
    """RFC 9989 4.10.2's first example: a.mail.example.test has no record, mail.example.test
    and example.test have one, so example.test's applies and it is the Organizational Domain.
    Every `rua` and `ruf` destination of that record outside it is asked for its
    authorization at `example.test._report._dmarc.<host>` (RFC 9990, "Verifying External
    Destinations"), one query per host; mail.example.test's record (the first found) and
    destinations inside the Organizational Domain are not. An authorization whose `rua`
    moves the reports to another host authorizes nothing."""
    records: Records = {
        ("_dmarc.mail.example.test", "TXT"): [_txt("v=DMARC1; p=reject; rua=mailto:x@first.test")],
        ("_dmarc.example.test", "TXT"): [
            _txt(
                "v=DMARC1; p=none; rua=mailto:a@ok.test,mailto:b@nope.test!10m,"
                "mailto:d@reports.example.test; ruf=mailto:c@ok.test,mailto:e@moved.test"
            )
        ],
        ("example.test._report._dmarc.ok.test", "TXT"): [_txt("v=DMARC1")],
        ("example.test._report._dmarc.moved.test", "TXT"): [
            _txt("v=DMARC1; rua=mailto:other@elsewhere.test")
        ],
    }
    async with DnsPeer(records) as peer:
        facts = await ReadinessProbe(resolver=peer.address, canaries=()).probe(
            "a.mail.example.test", (), 5.0
        )
        asked = [n for n, t in peer.asked if "._report._dmarc." in n]
    assert facts.dmarc is not None and facts.dmarc.reports_for == "example.test"
    got = [(r.uri, r.authorized) for r in facts.dmarc.reports]
    assert got == [
        ("mailto:a@ok.test", True),
        ("mailto:b@nope.test!10m", False),
        ("mailto:c@ok.test", True),
        ("mailto:e@moved.test", False),
    ]
    assert sorted(asked) == [
        "example.test._report._dmarc.moved.test",
        "example.test._report._dmarc.nope.test",
        "example.test._report._dmarc.ok.test",
    ]
    v = rules.readiness(facts, "DE")
    found = v[("dmarc_external_rua_unauthorized", "DE")]
    assert found is not None
    assert found.detail == (
        "mailto:b@nope.test!10m: no v=DMARC1 record at example.test._report._dmarc.nope.test; "
        "mailto:e@moved.test: example.test._report._dmarc.moved.test overrides rua with "
        "another host (mailto:other@elsewhere.test)"
    )


async def test_psd_n_ends_the_walk_and_its_record_applies() -> None:
    """A `psd=n` record ends the walk (RFC 9989 4.10 step 6): nothing above it is asked,
    and its destinations are the ones checked; a name past DNS limits authorizes nothing."""
    far = ".".join(c * 60 for c in "rstu") + ".test"  # a host of 249 characters
    records: Records = {
        ("_dmarc.mail.example.test", "TXT"): [
            _txt(f"v=DMARC1; p=quarantine; psd=n; rua=mailto:a@{far}")
        ],
        ("_dmarc.example.test", "TXT"): [_txt("v=DMARC1; p=none; rua=mailto:b@nope.test")],
    }
    async with DnsPeer(records) as peer:
        facts = await ReadinessProbe(resolver=peer.address, canaries=()).probe(
            "mail.example.test", (), 5.0
        )
        asked = [n for n, t in peer.asked if t == "TXT"]
    assert facts.dmarc is not None
    assert [w.name for w in facts.dmarc.walk] == ["mail.example.test"]
    assert "_dmarc.example.test" not in asked
    assert facts.dmarc.reports_for == "mail.example.test"
    (auth,) = facts.dmarc.reports
    assert auth.authorized is False and "past DNS name limits" in auth.why
    assert not [n for n in asked if "._report._dmarc." in n]


async def test_the_order_of_a_names_answers_is_no_change() -> None:
    """Two SPF records (a permanent error) or two key records at a selector, answered in
    either order, read as the same record: drift compares them, and an answer's order is
    the resolver's, not the domain's."""
    spf_pair = [_txt("v=spf1 -all"), _txt("v=spf1 mx -all")]
    key_pair = [_txt("v=DKIM1; p="), _txt("v=DKIM1; k=ed25519; p=" + "A" * 43 + "=")]
    read = []
    for order in (1, -1):
        records: Records = {
            ("example.test", "TXT"): spf_pair[::order],
            ("s1._domainkey.example.test", "TXT"): key_pair[::order],
        }
        read.append(rules.readings(await _probe(records, "example.test", ("s1",))))
    assert read[0] == read[1]
    assert read[0]["spf"] == "v=spf1 -all" and read[0]["dkim:s1"].startswith("v=DKIM1; k=ed25519")


def _key(public: Any) -> str:
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


async def test_dkim_keys_of_real_sizes() -> None:
    """Keys as providers publish them (Google: k=rsa, 2048-bit SPKI split over strings;
    an old 1024-bit key; Ed25519 per RFC 8463 as the raw 32 bytes; a revoked p=; t=y)."""
    rsa2048 = _key(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    rsa1024 = _key(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())
    raw = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    records: Records = {
        ("google._domainkey.example.test", "TXT"): [_txt(f"v=DKIM1; k=rsa; p={rsa2048}")],
        ("s1._domainkey.example.test", "TXT"): [_txt(f"v=DKIM1; t=y; p={rsa1024}")],
        ("ed._domainkey.example.test", "TXT"): [
            _txt(f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}")
        ],
        ("old._domainkey.example.test", "TXT"): [_txt("v=DKIM1; p=")],
    }
    facts = await _probe(records, "example.test", ("google", "s1", "ed", "old", "none"))
    keys = {k.selector: k for k in facts.dkim}
    assert keys["google"].bits == 2048 and len(keys["google"].sha256) == 64
    assert keys["s1"].bits == 1024 and keys["s1"].testing
    assert keys["ed"].bits == 256 and keys["ed"].key_type == "ed25519"
    assert keys["old"].revoked and keys["none"].record is None
    v = rules.readiness(facts, "DE")
    weak = v[("dkim_key_weak", "DE")]
    assert weak is not None and "s1._domainkey" in weak.detail and "google" not in weak.detail
    assert v[("dkim_testing", "DE")] is not None


@pytest.mark.parametrize(
    ("bits", "detail"),
    [
        (1023, "s._domainkey.example.test: RSA 1023 bits (refused by receivers)"),
        (1024, "s._domainkey.example.test: RSA 1024 bits"),
        (2047, "s._domainkey.example.test: RSA 2047 bits"),
        (2048, None),
    ],
)
async def test_rsa_key_sizes_exactly_on_each_limit_and_one_below(
    bits: int, detail: str | None
) -> None:
    """RFC 8301 3.2: verifiers MUST NOT accept keys under 1024 bits, signers SHOULD use at
    least 2048. A public key of exactly `bits` (its modulus with the top bit set)."""
    modulus = (1 << (bits - 1)) | 1 | (0x5A5A5A5A << (bits // 2))
    key = _key(rsa.RSAPublicNumbers(65537, modulus).public_key())
    records: Records = {("s._domainkey.example.test", "TXT"): [_txt(f"v=DKIM1; k=rsa; p={key}")]}
    facts = await _probe(records, "example.test", ("s",))
    assert [k.bits for k in facts.dkim] == [bits]
    weak = rules.readiness(facts, "DE")[("dkim_key_weak", "DE")]
    assert (weak.detail if weak is not None else None) == detail


async def test_a_2048_bit_key_that_allows_sha1_alone_is_weak_on_the_wire() -> None:
    """A 2048-bit key whose `h=sha1` (its record split over strings) allows only the hash
    receivers refuse (RFC 8301 3.1): `dkim_key_weak`; the same key without `h=` is not."""
    key = _key(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    records: Records = {
        ("sha1._domainkey.example.test", "TXT"): [_txt(f"v=DKIM1; k=rsa; h=sha1; p={key}")],
        ("any._domainkey.example.test", "TXT"): [_txt(f"v=DKIM1; k=rsa; p={key}")],
    }
    both = await _probe(records, "example.test", ("sha1", "any"))
    assert [k.bits for k in both.dkim] == [2048, 2048]
    weak = rules.readiness(both, "DE")[("dkim_key_weak", "DE")]
    assert weak is not None
    assert weak.detail == (
        "sha1._domainkey.example.test: h=sha1 allows no SHA-256 (receivers refuse rsa-sha1)"
    )
    alone = await _probe(records, "example.test", ("any",))
    assert rules.readiness(alone, "DE")[("dkim_key_weak", "DE")] is None


PUBLISHED = Path(__file__).parents[1] / "data" / "dkim" / "published_keys.tsv"


async def test_dkim_records_real_providers_publish() -> None:
    """Key records as Gmail, iCloud, Neo, Foxmail and a Google Workspace domain publish them
    (tests/data/dkim/published_keys.tsv), served under their own names and split into
    255-character strings as the DNS carries them: the key sizes are the ones they publish,
    the 1024-bit ones are `dkim_key_weak`, the 2048-bit ones are not."""
    rows = [
        line.split("\t")
        for line in PUBLISHED.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    records: Records = {(name, "TXT"): [_txt(record)] for name, record in rows}
    sizes = {}
    async with DnsPeer(records) as peer:
        probe = ReadinessProbe(resolver=peer.address, canaries=())
        for name, record in rows:
            selector, domain = name.split("._domainkey.")
            facts = await probe.probe(domain, (selector,), 5.0)
            (key,) = facts.dkim
            assert key.record == record and key.key_type == "rsa" and not key.error, key
            sizes[name] = key.bits
            weak = rules.readiness(facts, "DE")[("dkim_key_weak", "DE")]
            assert (weak is not None) is (key.bits == 1024), (name, weak)
    assert sizes == {
        "20230601._domainkey.gmail.com": 2048,
        "1a1hai._domainkey.icloud.com": 2048,
        "selector1._domainkey.neo.link": 2048,
        "s201512._domainkey.foxmail.com": 1024,
        "google._domainkey.vandenhooff.name": 1024,
    }


# The processing-limit tests whose verdict does not hang on where the sender's address
# matches: the suite's permerror is ours `spf_lookup_limit` or `spf_void_lookups`, its other
# results are neither. (`include-at-limit` is the one the suite passes because evaluation stops
# at `ip4:1.2.3.4` before its 11th term; we count what a sender no term matches spends: 11.)
ADDRESS_DEPENDENT = {"include-at-limit": 11}


async def test_the_rfc_7208_suite_processing_limits() -> None:
    sections = list(yaml.safe_load_all(SUITE.read_text()))
    limits = next(s for s in sections if s["description"] == "Processing limits")
    records, _ = _all_zones(limits)
    agreed, told = 0, []
    async with DnsPeer(records) as peer:
        probe = ReadinessProbe(resolver=peer.address, canaries=())
        for name, test in limits["tests"].items():
            domain = test["mailfrom"].split("@")[1]
            facts = await probe.probe(domain, (), 5.0)
            v = rules.readiness(facts, "DE")
            over = any(v.get((code, "DE")) for code in ("spf_lookup_limit", "spf_void_lookups"))
            expected = test["result"]
            assert facts.spf is not None
            if name in ADDRESS_DEPENDENT:
                assert facts.spf.lookups == ADDRESS_DEPENDENT[name]
                told.append(f"{name}: suite {expected}, we count {facts.spf.lookups}")
                continue
            assert over == (expected == "permerror"), (name, test, facts.spf)
            agreed += 1
    print(f"RFC 7208 processing limits: {agreed} of {len(limits['tests'])} agree; {told}")
    assert agreed == len(limits["tests"]) - len(ADDRESS_DEPENDENT)


def _signed(domain: str, selector: str) -> bytes:
    """A message signed by dkimpy, as a signing MTA (OpenDKIM's place) hands it on."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    message = (
        f"From: probe@{domain}\r\nTo: box@example.net\r\nSubject: mailprobe round trip\r\n"
        "Date: Fri, 27 Nov 2026 08:00:00 +0000\r\n\r\nbody\r\n"
    ).encode()
    signature: bytes = dkim.sign(message, selector.encode(), domain.encode(), pem)
    return signature + message


def _round_trip(found: AuthResults | None) -> Round:
    """A round trip's round whose received message had `found` as its authentication."""
    job = make_job("roundtrip", 587)
    result = up_result(job, "roundtrip", auth_results=found)
    return Round(job=job, result=result, port=587, resolver=None)


async def test_a_round_trips_signature_names_the_selector_whose_revoked_key_is_found() -> None:
    """The received message's DKIM-Signature (a real one, by dkimpy) names its selector; the
    round reads that selector's key beside those asked, and a revoked key the message was
    signed with is `dkim_revoked`."""
    message = email.message_from_bytes(_signed("example.test", "mar2026"))
    found = auth_results(message)
    assert found is not None
    assert [(s.domain, s.selector) for s in found.signatures] == [("example.test", "mar2026")]
    at = _round_trip(found)
    records: Records = {("mar2026._domainkey.example.test", "TXT"): [_txt("v=DKIM1; k=rsa; p=")]}
    async with DnsPeer(records) as peer:
        probe = ReadinessProbe(resolver=peer.address, canaries=())
        run = runner(probe)
        facts = await run(
            ReadinessAsk(domain="example.test", selectors=["google"]),
            at,
        )
    assert facts is not None
    keys = {k.selector: k for k in facts.dkim}
    assert keys["mar2026"].signing and keys["mar2026"].revoked
    assert not keys["google"].signing
    finding = rules.readiness(facts, "DE")[("dkim_revoked", "DE")]
    assert finding is not None
    assert finding.detail == "signed with mar2026._domainkey.example.test: revoked (p= empty)"


@pytest.mark.parametrize(
    "tail",
    [
        ";;",  # an empty tag-spec
        "; k=rsa",  # a tag given twice
        "; junk",  # a tag-spec without `=`
    ],
)
async def test_a_signing_key_record_that_does_not_parse_is_never_called_revoked(tail: str) -> None:
    """A key record with a `p=` holding a real key, but not a valid tag-list (RFC 6376 3.2):
    the round says so (`error`); `dkim_revoked` ("p= empty", which it is not) is not judged,
    and the key is not weak."""
    message = email.message_from_bytes(_signed("example.test", "mar2026"))
    found = auth_results(message)
    assert found is not None
    key = _key(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    records: Records = {
        ("mar2026._domainkey.example.test", "TXT"): [_txt(f"v=DKIM1; k=rsa; p={key}{tail}")]
    }
    async with DnsPeer(records) as peer:
        run = runner(ReadinessProbe(resolver=peer.address, canaries=()))
        facts = await run(ReadinessAsk(domain="example.test"), _round_trip(found))
    assert facts is not None
    [read] = facts.dkim
    assert read.signing and not read.revoked and read.record is not None
    assert "does not parse" in read.error
    v = rules.readiness(facts, "DE")
    assert ("dkim_revoked", "DE") not in v and v.get(("dkim_key_weak", "DE")) is None, v


async def test_signing_listed_and_common_selectors_are_read_in_that_order_within_the_cap() -> None:
    """The round reads the selector its message was signed with first, then those the ask
    lists (the monitor's own, then the common ones: controller/sidechecks/readiness `ask`),
    each once whatever its case, what is no selector skipped, at most SELECTORS_MAX."""
    message = email.message_from_bytes(_signed("example.test", "Mar2026"))
    found = auth_results(message)
    at = _round_trip(found)
    listed = ["listed1", "MAR2026", "bad name", *[f"c{n}" for n in range(SELECTORS_MAX + 2)]]
    records: Records = {("listed1._domainkey.example.test", "TXT"): [_txt("v=DKIM1; p=")]}
    async with DnsPeer(records) as peer:
        run = runner(ReadinessProbe(resolver=peer.address, canaries=()))
        facts = await run(
            ReadinessAsk(domain="example.test", selectors=listed),
            at,
        )
    assert facts is not None
    read = [k.selector for k in facts.dkim]
    assert read == ["mar2026", "listed1", *[f"c{n}" for n in range(SELECTORS_MAX - 2)]]
    assert [k.selector for k in facts.dkim if k.signing] == ["mar2026"]
    assert next(k for k in facts.dkim if k.selector == "listed1").revoked


async def test_a_zone_that_never_answers_is_unknown_and_holds_only_its_own_organization() -> None:
    """One organization's domain whose DNS never answers: its rounds end unknown ("timed
    out") within their budget, at most PER_TENANT_MAX of them at once, and another
    organization's round on the same agent is answered meanwhile."""
    records: Records = {("good.test", "TXT"): [_txt("v=spf1 -all")]}
    async with DnsPeer(records, silent=frozenset({"dead.test"})) as peer:
        probe = ReadinessProbe(resolver=peer.address, canaries=())
        stuck = [
            asyncio.create_task(probe.probe("dead.test", (), 1.0, tenant="org-a"))
            for _ in range(PER_TENANT_MAX + 2)
        ]
        other = await probe.probe("good.test", (), 5.0, tenant="org-b")
        assert other.spf is not None and other.spf.record == "v=spf1 -all"
        assert not any(t.done() for t in stuck)  # org-b was not held behind them
        done = await asyncio.gather(*stuck)
    for facts in done:
        assert facts.spf is None or not facts.spf.complete
        assert facts.spf.error if facts.spf else facts.error, facts
        assert rules.readiness(facts, "DE").get(("spf_lookup_limit", "DE")) is None
    waited = [f for f in done if f.spf is None]
    assert len(waited) == 2  # past the organization's share: nothing asked at all
    assert {f.error for f in waited} == {BUSY} and {f.queries for f in waited} == {0}
    ran = [f for f in done if f.spf is not None]
    assert ran and all("timed out" in (f.spf.error if f.spf else "") for f in ran), ran


def test_what_an_agent_sends_is_bounded_and_kept_is_the_controllers() -> None:
    """A stranger's facts: lists and texts cut to their bounds, and a `kept` (drift, key age)
    it made up dropped: only the controller's keeper fills it."""
    hostile = Readiness(
        domain="x" * 1000,
        spf=Spf(
            record="v=spf1 " + "a " * 5000,
            nodes=[SpfNode(domain=f"n{i}.test") for i in range(10_000)],
            void_names=["v.test"] * 1000,
        ),
        dkim=[DkimKey(selector=f"s{i}") for i in range(100)],
        dmarc=Dmarc(
            reports=[ReportAuth(uri="mailto:a@b.test", host="b.test", why="w" * 5000)] * 50,
            reports_for="r" * 1000,
            unchecked=10**18,
        ),
        kept=Kept(changes=[Change(what="spf", before="forged", after="forged too")]),
    )
    cut = bounded(hostile)
    assert cut.kept is None
    assert cut.dmarc is not None and len(cut.dmarc.reports) == REPORT_AUTH_MAX
    assert len(cut.dmarc.reports[0].why) == TEXT_MAX and len(cut.dmarc.reports_for) == NAME_MAX
    assert cut.dmarc.unchecked == 1000
    assert cut.spf is not None and len(cut.spf.nodes) == NODES_MAX
    assert len(cut.spf.record or "") == RECORD_MAX and len(cut.spf.void_names) == NAMES_MAX
    assert len(cut.dkim) == SELECTORS_MAX and len(cut.domain) == NAME_MAX


def _escaped(text: str) -> str:
    """One TXT string in presentation form: quotes and backslashes escaped, other bytes
    outside printable ASCII as \\DDD."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _all_zones(section: dict[str, Any]) -> tuple[Records, frozenset[str]]:
    """A suite section's whole zonedata (its TXT strings kept apart, escaped) and the names
    that time out in the suite; records that are not valid presentation text are left out."""
    records: Records = {}
    silent: set[str] = set()
    for name, entries in section.get("zonedata", {}).items():
        if any(len(label) > 63 for label in name.split(".")) or not name:
            continue
        has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
        for entry in entries:
            if entry == "TIMEOUT":
                silent.add(name.lower())
                continue
            for rtype, value in entry.items():
                if value == "TIMEOUT":
                    silent.add(name.lower())
                    continue
                if rtype == "SPF":
                    if has_txt:
                        continue
                    rtype = "TXT"
                if rtype == "TXT":
                    strings = value if isinstance(value, list) else [value]
                    text = " ".join(_escaped(str(s)) for s in strings)
                elif rtype == "MX":
                    text = f"{value[0]} {value[1]}."
                elif rtype in ("PTR", "CNAME"):
                    text = value if str(value).endswith(".") else f"{value}."
                else:
                    text = str(value)
                try:
                    dns.rdata.from_text("IN", rtype, text)
                except (dns.exception.DNSException, ValueError):
                    continue
                records.setdefault((name, rtype), []).append(text)
    return records, frozenset(silent)


def _pyspf(q_domain: str, mailfrom: str, helo: str) -> tuple[int, str]:
    """pyspf's own evaluation (the reference implementation, strict) for a sender no term
    matches: (the lookups it counted, its result or error)."""
    query = spf.query(i="192.0.2.0", s=mailfrom or f"postmaster@{helo}", h=helo, timeout=2)
    try:
        result, _, _ = query.check()
    except (spf.PermError, spf.TempError):
        result = "temperror"
    return query.lookups, result


# Where pyspf's count is not RFC 7208's: it counts a `redirect=` as it parses the record, even
# one that an `all` makes it ignore (6.1), which is never looked up (the suite's comment: "it
# is never used because of the all mechanism").
PYSPF_DIFFERS = {"redirect-after-mechanisms1": "v=spf1 redirect=t5.example.com ~all"}


async def _suite_walks() -> AsyncIterator[tuple[str, Spf, int, str]]:
    """Every scenario of the RFC 7208 suite, served on loopback: its name, the SPF we walked,
    and the lookups pyspf (the reference implementation, strict) counted and its result for a
    sender no term matches."""
    saved = dns.resolver.default_resolver
    try:
        for section in yaml.safe_load_all(SUITE.read_text()):
            records, silent = _all_zones(section)
            async with DnsPeer(records, servfail=silent) as peer:
                local = dns.resolver.Resolver(configure=False)
                local.nameservers, local.port = ["127.0.0.1"], peer.port
                dns.resolver.default_resolver = local
                probe = ReadinessProbe(resolver=peer.address, canaries=())
                for name, test in section["tests"].items():
                    mailfrom = str(test.get("mailfrom", ""))
                    helo = str(test.get("helo", ""))
                    domain = (mailfrom.split("@")[-1] if "@" in mailfrom else helo).lower()
                    if not domain or ".." in domain or domain.endswith("."):
                        continue
                    facts = await probe.probe(domain, (), 2.0)
                    if facts.spf is None:
                        continue
                    counted, result = await asyncio.to_thread(_pyspf, domain, mailfrom, helo)
                    yield name, facts.spf, counted, result
    finally:
        dns.resolver.default_resolver = saved


def _whole(s: Spf) -> bool:
    """The tree was read whole, with no error, and no term names the sender."""
    return s.record is not None and s.complete and not s.error and not s.macros


def _permanent(s: Spf) -> bool:
    return bool(s.broken or s.loop or s.lookups > 10 or s.void > 2 or s.mx_over)


# pyspf 2.0.14 asks through dnspython's deprecated `dns.resolver.query`.
@pytest.mark.filterwarnings("ignore:please use dns.resolver.resolve:DeprecationWarning")
async def test_the_whole_suite_agrees_with_pyspf() -> None:
    """Every scenario of the RFC 7208 suite, served on loopback, walked once, against pyspf
    (the reference implementation, not ours) evaluating a sender that no term matches, which
    evaluates every term:

    - the lookups counted. pyspf stops at the 11th (a permanent error), so counts are
      compared up to 11; scenarios it ends early for another reason (a syntax error, a void
      lookup past the limit, a timeout) or whose include we cannot follow (the target names
      the sender) are left out.
    - of trees read whole whose terms do not name the sender: a permanent error (a term or
      modifier that does not parse anywhere in a record, 4.6, even after `all`; `redirect`
      or `exp` twice, 6; the lookup, void or MX limits; a loop) exactly when pyspf returns
      permerror;
    - of those that are none: `spf_too_permissive` exactly when pyspf's result is pass or
      neutral (`+all`, `?all`, no `all`: 4.7, or a term of CIDR length 0)."""
    agreed = counts = permanent = permissive = 0
    differ: dict[str, list[str]] = {"count": [], "permanent": [], "permissive": []}
    async for name, s, counted, result in _suite_walks():
        # a permanent or temporary error within 10 lookups ended pyspf early for another reason
        early = result in ("permerror", "temperror") and counted <= 10
        if s.complete and not s.broken and not s.error and not early:
            counts += 1
            ours = 11 if s.loop else min(s.lookups, 11)  # a loop never ends
            agreed += ours == min(counted, 11)
            if ours != min(counted, 11):
                differ["count"].append(name)
                print(f"{name}: pyspf counted {counted} ({result}), we {s.lookups}")
        if not _whole(s):
            continue
        permanent += 1
        if _permanent(s) != (result == "permerror"):
            differ["permanent"].append(name)
            print(f"{name}: pyspf {result}, we {s.broken!r} ({s.record})")
        if _permanent(s):
            continue
        permissive += 1
        facts = Readiness(domain="example.test", spf=s)
        wide = rules.readiness(facts, "DE")[("spf_too_permissive", "DE")] is not None
        if wide != (result in ("pass", "neutral")):
            differ["permissive"].append(name)
            print(f"{name}: pyspf {result}, we {s.all!r} ({s.record})")
    print(
        f"vs pyspf: lookup counts {agreed} of {counts} agree; permanent errors {permanent}"
        f" compared, too permissive {permissive} compared; differ: {differ}"
    )
    assert min(counts, permanent, permissive) >= 100
    assert differ == {"count": list(PYSPF_DIFFERS), "permanent": [], "permissive": []}


async def test_a_term_that_matches_every_sender_is_too_permissive() -> None:
    """`ip4:0.0.0.0/0`, `ip6:::/0`, and `a/0` or `mx/0` of a name that resolves match every
    sender of their family, as `+all` does; `-ip4:0.0.0.0/0` and a CIDR of 1 do not."""
    cases = {
        "v=spf1 ip4:192.0.2.1 ip4:0.0.0.0/0 -all": ["ip4:0.0.0.0/0"],
        "v=spf1 ?ip6:::/0 -all": ["?ip6:::/0"],
        "v=spf1 a/0 -all": ["a/0"],
        "v=spf1 mx:example.test/0 -all": ["mx:example.test/0"],
        "v=spf1 a:gone.test/0 ip4:0.0.0.0/1 -ip4:0.0.0.0/0 ~all": [],
    }
    for record, wide in cases.items():
        records: Records = {
            ("example.test", "TXT"): [_txt(record)],
            ("example.test", "A"): ["192.0.2.1"],
            ("example.test", "MX"): ["10 example.test."],
        }
        facts = await _probe(records, "example.test")
        assert facts.spf is not None and facts.spf.complete, facts.spf
        finding = rules.readiness(facts, "DE")[("spf_too_permissive", "DE")]
        assert (finding is not None) is bool(wide), record
        if finding is not None:
            assert finding.detail == (
                f"the SPF of example.test matches every sender with {', '.join(wide)}"
            )


async def test_the_p_macro_never_makes_the_parser_look_names_up() -> None:
    """`%{p}` expands through a PTR lookup in pyspf; the walk's parser never asks DNS (it
    would be synchronous, through the system's resolver, holding the event loop): the term is
    counted as a sender-dependent one and nothing is asked for it."""
    records: Records = {
        ("example.test", "TXT"): [_txt("v=spf1 a:%{p}.example.test exists:%{p} -all")]
    }
    async with DnsPeer(records) as peer:
        facts = await ReadinessProbe(resolver=peer.address, canaries=()).probe(
            "example.test", (), 5.0
        )
        asked = [name for name, _ in peer.asked]
    assert facts.spf is not None and facts.spf.complete and not facts.spf.error
    assert facts.spf.lookups == 2
    assert facts.spf.macros == ["a:%{p}.example.test", "exists:%{p}"]
    assert not any("unknown" in name or name.endswith(".arpa") for name in asked), asked
