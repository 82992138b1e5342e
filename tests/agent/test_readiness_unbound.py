"""The readiness probe against a real DNS server: Debian's unbound serving each case's zone
from a zone file (testkit/peers/unbound.py, `UnboundZone`), beside the loopback stand-in the
other readiness tests use (testkit/peers/dns.py). For every case (include trees of 9, 10 and 11
lookups, `exp=` and `redirect`, void lookups and macros, an include loop, a CNAME loop, 64 KB
of TXT, the DMARC Tree Walk with report authorizations, providers' DKIM keys) the facts and the
verdicts read through unbound are the stand-in's: the counting is judged against a real
server's answers, not only against our own."""

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from agent.sidechecks.readiness import ReadinessProbe
from controller.sidechecks.readiness import rules
from shared.sidechecks.readiness import Readiness
from testkit.peers.dns import DnsPeer, Records
from testkit.peers.unbound import UnboundZone, missing
from tests.agent.test_readiness import PUBLISHED, _chain, _txt


def _cases() -> dict[str, tuple[Records, str, tuple[str, ...]]]:
    keys = [
        line.split("\t")
        for line in Path(PUBLISHED).read_text().splitlines()
        if line and not line.startswith("#") and line.startswith("20230601.")
    ]
    gmail = {(f"{n.split('.', 1)[0]}._domainkey.example.test", "TXT"): [_txt(r)] for n, r in keys}
    return {
        **{f"chain{n}": (_chain(n), "example.test", ()) for n in (9, 10, 11)},
        "exp-redirect": (
            {
                ("example.test", "TXT"): [
                    _txt("v=spf1 ip4:192.0.2.0/24 exp=why.example.test redirect=r.test")
                ],
                ("why.example.test", "TXT"): [_txt("not allowed")],
                ("r.test", "TXT"): [_txt("v=spf1 include:i.test -all a a redirect=never.test")],
                ("i.test", "TXT"): [_txt("v=spf1 ip4:198.51.100.1 -all")],
            },
            "example.test",
            (),
        ),
        "void-macros": (
            {
                ("example.test", "TXT"): [
                    _txt(
                        "v=spf1 a:gone1.test mx:gone2.test exists:%{i}.rbl.test ptr"
                        " a:gone3.test ?all"
                    )
                ],
                ("nodata.test", "A"): ["192.0.2.9"],
            },
            "example.test",
            (),
        ),
        "loop": (
            {
                ("example.test", "TXT"): [_txt("v=spf1 include:a.test -all")],
                ("a.test", "TXT"): [_txt("v=spf1 include:b.test")],
                ("b.test", "TXT"): [_txt("v=spf1 include:a.test")],
            },
            "example.test",
            (),
        ),
        "cname-loop": (
            {("loop.test", "CNAME"): ["loop2.test."], ("loop2.test", "CNAME"): ["loop.test."]},
            "loop.test",
            (),
        ),
        "64k-txt": (
            {
                ("big.test", "TXT"): [_txt("v=spf1 -all")]
                + [_txt(f"{i:04d}" + "x" * 246) for i in range(240)]
            },
            "big.test",
            (),
        ),
        "dmarc-walk": (
            {
                ("example.test", "TXT"): [_txt("v=spf1 mx -all")],
                ("example.test", "MX"): ["10 mx.example.test."],
                ("mx.example.test", "A"): ["192.0.2.25"],
                ("_dmarc.mail.example.test", "TXT"): [_txt("v=DMARC1; p=reject")],
                ("_dmarc.example.test", "TXT"): [
                    _txt("v=DMARC1; p=none; pct=20; rua=mailto:a@ok.test,mailto:b@nope.test")
                ],
                ("example.test._report._dmarc.ok.test", "TXT"): [_txt("v=DMARC1")],
                **gmail,
            },
            "a.mail.example.test",
            (),
        ),
        "dkim": (
            {**gmail, ("example.test", "TXT"): [_txt("v=spf1 -all")]},
            "example.test",
            ("20230601", "none"),
        ),
    }


CASES = _cases()


def _comparable(f: Readiness) -> dict[str, object]:
    """The facts but what names the server's own words (why a lookup failed) and the query
    count (unbound chases a CNAME loop itself; the stand-in sends it as it is)."""
    out = msgspec.to_builtins(f)
    out.pop("queries")
    spf = out.get("spf")
    if spf:
        spf["error"] = bool(spf["error"])
    for w in (out.get("dmarc") or {}).get("walk", []):
        w["error"] = bool(w["error"])
    for k in out.get("dkim", []):
        k["error"] = bool(k["error"])
    out["error"] = bool(out["error"])
    return dict(out)


@pytest.mark.parametrize("case", sorted(CASES))
async def test_unbound_serving_the_zone_reads_as_the_stand_in(case: str) -> None:
    problem = missing()
    if problem is not None:
        pytest.fail(problem)
    records, domain, selectors = CASES[case]
    read: list[Readiness] = []
    for server in (DnsPeer(records, canaries=False), UnboundZone("test", records)):
        async with server:
            probe = ReadinessProbe(resolver=server.address, canaries=())
            read.append(await probe.probe(domain, selectors, 5.0))
    stand_in, unbound = read
    assert _comparable(unbound) == _comparable(stand_in)
    judged = [
        {k: (None if v is None else v.detail) for k, v in rules.readiness(f, "DE").items()}
        for f in read
    ]
    assert judged[0] == judged[1]
    print(f"{case}: {unbound.queries} queries through unbound, {stand_in.queries} stand-in")
    assert SEEN[case](unbound), unbound


SEEN: dict[
    str, Callable[[Readiness], object]
] = {  # what each case must have read (so that two empty reads never agree)
    "chain9": lambda f: f.spf is not None and f.spf.lookups == 9 and f.spf.complete,
    "chain10": lambda f: f.spf is not None and f.spf.lookups == 10 and f.spf.complete,
    "chain11": lambda f: f.spf is not None and f.spf.lookups == 11 and f.spf.complete,
    "exp-redirect": lambda f: f.spf is not None and f.spf.lookups == 2 and f.spf.all == "-all",
    "void-macros": lambda f: f.spf is not None and f.spf.void == 3 and f.spf.ptr,
    "loop": lambda f: f.spf is not None and f.spf.loop[-1] == "a.test",
    "cname-loop": lambda f: f.spf is not None and not f.spf.complete and f.spf.error,
    "64k-txt": lambda f: f.spf is not None and "over 8192 bytes" in f.spf.error,
    "dmarc-walk": lambda f: (
        f.dmarc is not None
        and f.dmarc.reports_for == "example.test"
        and [(r.host, r.authorized) for r in f.dmarc.reports]
        == [("ok.test", True), ("nope.test", False)]
    ),
    "dkim": lambda f: (
        [(k.selector, k.bits) for k in f.dkim] == [("20230601", 2048), ("none", None)]
    ),
}


async def test_a_wildcard_authorization_authorizes_every_domain() -> None:
    """RFC 9990: a report consumer willing to take anyone's reports publishes
    `*._report._dmarc.<its domain>`; a real server answers the name asked from that wildcard,
    so the destination is authorized."""
    problem = missing()
    if problem is not None:
        pytest.fail(problem)
    records: Records = {
        ("_dmarc.example.test", "TXT"): [
            _txt("v=DMARC1; p=reject; rua=mailto:a@any.test,mailto:b@none.test")
        ],
        ("*._report._dmarc.any.test", "TXT"): [_txt("v=DMARC1")],
    }
    async with UnboundZone("test", records) as server:
        facts = await ReadinessProbe(resolver=server.address, canaries=()).probe(
            "example.test", (), 5.0
        )
    assert facts.dmarc is not None
    assert [(r.host, r.authorized) for r in facts.dmarc.reports] == [
        ("any.test", True),
        ("none.test", False),
    ]
