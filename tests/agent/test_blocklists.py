"""The agent's blocklist lookups against real DNS servers on loopback (testkit/peers/dnsbl.py):
healthy lists, a dead list that lists everything, Spamhaus's error codes, a slow list, lists
that differ between two "countries" (two resolvers), and bad answers (a CNAME loop, a huge
TXT record, answers outside 127/8), read by the controller's rules as they would be."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.probers.tls import SslContexts
from agent.settings import AgentSettings
from agent.sidechecks.blocklists import BlocklistProbe, dqs_zone, query_name
from agent.tenant_bound import BOUND_BUSY, TenantBound
from controller.sidechecks.blocklists.rules import KNOWN, BlockList, health, read
from shared.clock import WALL, ManualClock
from shared.settings import load
from shared.sidechecks.blocklists import (
    WIRE,
    BlocklistAnswer,
    BlocklistAsk,
    BlocklistZone,
    Reputation,
)
from shared.sidechecks.blocklists_bound import TXT_CHARS_MAX
from testkit.peers.dnsbl import DnsblPeer, Zone, healthy, healthy_domains, label
from tests.agent.helpers import SmtpLikePeer, job_for, publish_job, results, settings_worker

HOST = "mx.example.com"
HOST_IP = "93.184.216.34"  # only ever a query name here: nothing is sent to it
HOST_IP6 = "2606:2800:220:1:248:1893:25c8:1946"
RECORDS = {
    (HOST, "A"): [HOST_IP, "10.0.0.5"],  # the private one is never told to a list
    (HOST, "AAAA"): [HOST_IP6],
    ("example.com", "MX"): [f"10 {HOST}."],
}
ZEN = BlocklistZone(zone="zen.spamhaus.org", kind="ip", dqs=True)
RBL = BlocklistZone(zone="rbl.example.net", kind="ip")
DEAD = BlocklistZone(zone="dead.example.net", kind="ip")
SLOW = BlocklistZone(zone="slow.example.net", kind="ip")
URI = BlocklistZone(zone="uri.example.net", kind="domain")
GENERIC = BlockList("rbl.example.net", "ip", "rbl")


def ask(*zones: BlocklistZone, **fields: object) -> BlocklistAsk:
    return BlocklistAsk(zones=list(zones), **fields)  # type: ignore[arg-type]


def answer(r: Reputation, zone: str, name: str) -> BlocklistAnswer:
    (found,) = [a for a in r.answers if a.zone == zone and a.name == name]
    return found


def test_query_names_follow_rfc5782() -> None:
    assert query_name("192.0.2.99", "ip") == "99.2.0.192"
    six = query_name("2001:db8:1:2:3:4:567:89ab", "ip")
    assert six == "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2"
    assert query_name("Example.COM.", "domain") == "example.com"
    assert query_name("192.0.2.1", "domain") is None  # an address is no domain
    assert query_name("example.com", "ip") is None
    assert dqs_zone("zen.spamhaus.org", "k3y") == "k3y.zen.dq.spamhaus.net"


async def test_the_host_and_its_mx_addresses_on_a_healthy_list() -> None:
    zones = {"rbl.example.net": healthy(**{label(HOST_IP): ["127.0.0.2"]})}
    async with DnsblPeer(zones, records=RECORDS) as peer:
        probe = BlocklistProbe(resolver=peer.address, clock=WALL)
        got = await probe.probe(
            ask(RBL, host=True, mx_domain="example.com", ips=["127.0.0.2", "127.0.0.1"]),
            HOST,
            5,
        )
    assert got.names == {
        "127.0.0.2": "listed",
        "127.0.0.1": "listed",
        HOST_IP: "host",
        HOST_IP6: "host",
    }
    listed = answer(got, "rbl.example.net", HOST_IP)
    assert listed.a == ["127.0.0.2"] and listed.txt and "lookup" in listed.txt
    assert read(GENERIC, listed.a).state == "listed"
    assert answer(got, "rbl.example.net", HOST_IP6).a == []  # NXDOMAIN: not listed
    tests = [read(GENERIC, answer(got, "rbl.example.net", t).a) for t in ("127.0.0.2", "127.0.0.1")]
    assert health(GENERIC, *tests).state == "healthy"
    assert ("5.0.0.10.rbl.example.net", "A") not in peer.asked


async def test_a_host_that_is_an_address_is_itself_asked_about_with_no_a_query() -> None:
    """A monitor whose hostname is an IP literal (v4, v6, bracketed): that address is what its
    mail depends on; no A/AAAA query is sent for the literal."""
    zones = {"rbl.example.net": healthy(**{label(HOST_IP): ["127.0.0.2"]})}
    async with DnsblPeer(zones) as peer:
        probe = BlocklistProbe(resolver=peer.address, clock=WALL)
        four = await probe.probe(ask(RBL, host=True), HOST_IP, 5)
        six = await probe.probe(ask(RBL, host=True), f"[{HOST_IP6}]", 5)
        private = await probe.probe(ask(RBL, host=True), "10.0.0.5", 5)
    assert four.names == {HOST_IP: "host"} and four.errors == {}
    assert answer(four, "rbl.example.net", HOST_IP).a == ["127.0.0.2"]
    assert six.names == {HOST_IP6: "host"}
    assert private.names == {}  # a private address is never told to a list
    assert not [q for q in peer.asked if q[1] in ("A", "AAAA") and "rbl" not in q[0]]


async def test_a_dead_list_that_lists_everything_is_unhealthy_and_lists_nobody() -> None:
    zones = {"dead.example.net": Zone(everything=["127.0.0.2"])}
    async with DnsblPeer(zones, records=RECORDS) as peer:
        got = await BlocklistProbe(resolver=peer.address, clock=WALL).probe(
            ask(DEAD, host=True, ips=["127.0.0.2", "127.0.0.1"]), HOST, 5
        )
    dead = BlockList("dead.example.net", "ip", "dead")
    tests = [read(dead, answer(got, dead.zone, t).a) for t in ("127.0.0.2", "127.0.0.1")]
    verdict = health(dead, *tests)
    assert verdict.state == "unhealthy" and "lists everything" in verdict.reason


async def test_spamhaus_error_codes_are_errors_never_listings() -> None:
    for code, says in (
        ("127.255.255.254", "public or open resolver"),
        ("127.255.255.255", "excessive"),
        ("127.255.255.252", "typing error"),
    ):
        zones = {"zen.spamhaus.org": Zone(everything=[code])}
        async with DnsblPeer(zones, records=RECORDS) as peer:
            got = await BlocklistProbe(resolver=peer.address, clock=WALL).probe(
                ask(ZEN, host=True, ips=["127.0.0.2", "127.0.0.1"]), HOST, 5
            )
        zen = KNOWN["zen.spamhaus.org"]
        v = read(zen, answer(got, zen.zone, HOST_IP).a)
        assert v.state == "error" and says in v.reason
        tests = [read(zen, answer(got, zen.zone, t).a) for t in ("127.0.0.2", "127.0.0.1")]
        assert health(zen, *tests).state == "unhealthy"


async def test_dbl_answering_an_ip_query_with_its_error_is_no_listing() -> None:
    zones = {"dbl.spamhaus.org": Zone(everything=["127.0.1.255"])}
    async with DnsblPeer(zones) as peer:
        got = await BlocklistProbe(resolver=peer.address, clock=WALL).probe(
            ask(BlocklistZone(zone="dbl.spamhaus.org", kind="domain"), domains=["example.com"]),
            HOST,
            5,
        )
    v = read(KNOWN["dbl.spamhaus.org"], answer(got, "dbl.spamhaus.org", "example.com").a)
    assert v.state == "error" and "IP queries not allowed" in v.reason


async def test_a_slow_list_times_out_alone() -> None:
    """The probe ends at its budget (1.5 s): the slow list would answer after the test's own
    timeout, so a probe that waited for it fails the test instead of returning."""
    zones = {"slow.example.net": healthy(), "rbl.example.net": healthy()}
    async with DnsblPeer(zones, records=RECORDS, slow={"slow.example.net": 120}) as peer:
        got = await BlocklistProbe(resolver=peer.address, clock=WALL).probe(
            ask(SLOW, RBL, ips=["127.0.0.2"]), HOST, 1.5
        )
    slow = answer(got, "slow.example.net", "127.0.0.2")
    assert slow.a is None and "timed out" in slow.error
    assert read(GENERIC, slow.a, slow.error).state == "unknown"
    assert answer(got, "rbl.example.net", "127.0.0.2").a == ["127.0.0.2"]


async def test_two_countries_see_two_versions_of_a_list() -> None:
    listed = {"rbl.example.net": healthy(**{label(HOST_IP): ["127.0.0.2"]})}
    clean = {"rbl.example.net": healthy()}
    async with DnsblPeer(listed, records=RECORDS) as de, DnsblPeer(clean, records=RECORDS) as us:
        seen = {
            cc: await BlocklistProbe(resolver=peer.address, clock=WALL).probe(
                ask(RBL, host=True), HOST, 5
            )
            for cc, peer in (("DE", de), ("US", us))
        }
    assert answer(seen["DE"], "rbl.example.net", HOST_IP).a == ["127.0.0.2"]
    assert answer(seen["US"], "rbl.example.net", HOST_IP).a == []


async def test_bad_answers_are_bounded_errors_or_unknown_never_a_crash() -> None:
    zones = {
        "rbl.example.net": Zone(
            listed={
                label("192.0.2.7"): ["127.0.0.2"],
                label("192.0.2.8"): ["93.184.216.34"],  # outside 127/8
            },
            txt={label("192.0.2.7"): "x" * 4000},  # over UDP's size: retried over TCP
            cname={label("192.0.2.9"): "loop-a", "loop-a": "loop-b", "loop-b": "loop-a"},
        )
    }
    async with DnsblPeer(zones) as peer:
        got = await BlocklistProbe(resolver=peer.address, clock=WALL).probe(
            ask(RBL, ips=["192.0.2.7", "192.0.2.8", "192.0.2.9"]), HOST, 5
        )
    huge = answer(got, "rbl.example.net", "192.0.2.7")
    assert huge.a == ["127.0.0.2"] and huge.txt == "x" * TXT_CHARS_MAX
    outside = answer(got, "rbl.example.net", "192.0.2.8")
    assert read(GENERIC, outside.a).state == "unknown"
    loop = answer(got, "rbl.example.net", "192.0.2.9")
    assert read(GENERIC, loop.a, loop.error).state == "unknown"
    assert loop.error
    msgspec.json.encode(got)  # it travels


async def test_domains_on_domain_lists_only_and_skipped_names_not_asked() -> None:
    zones = {"uri.example.net": healthy_domains({"example.com": ["127.0.0.2"]})}
    zones["rbl.example.net"] = healthy()
    async with DnsblPeer(zones, records=RECORDS) as peer:
        got = await BlocklistProbe(resolver=peer.address, clock=WALL).probe(
            ask(URI, RBL, host=True, domains=["Example.com", "test"], skip=[HOST_IP]), HOST, 5
        )
    assert answer(got, "uri.example.net", "example.com").a == ["127.0.0.2"]
    assert {(a.zone, a.name) for a in got.answers} == {
        ("uri.example.net", "example.com"),
        ("uri.example.net", "test"),
        ("rbl.example.net", HOST_IP6),
    }
    assert HOST_IP in got.names  # still named: the controller reads its cached answer
    assert not any(name.startswith(label(HOST_IP)) for name, _ in peer.asked)


async def test_a_list_asked_about_a_name_is_asked_its_test_entries_even_when_skipped() -> None:
    """The test entries travel beside the round's other answers on that list (so they vouch
    for them); a list asked about nothing (every name skipped) is asked nothing."""
    rbl = BlocklistZone(zone="rbl.example.net", kind="ip", tests=["127.0.0.2", "127.0.0.1"])
    tests = ["127.0.0.2", "127.0.0.1"]
    zones = {"rbl.example.net": healthy()}
    async with DnsblPeer(zones, records=RECORDS) as peer:
        probe = BlocklistProbe(resolver=peer.address, clock=WALL)
        got = await probe.probe(ask(rbl, host=True, ips=tests, skip=tests), HOST, 5)
        everything_fresh = await probe.probe(
            ask(rbl, host=True, ips=tests, skip=[*tests, HOST_IP, HOST_IP6]), HOST, 5
        )
    assert {a.name for a in got.answers} == {*tests, HOST_IP, HOST_IP6}
    assert answer(got, "rbl.example.net", "127.0.0.2").a == ["127.0.0.2"]
    assert everything_fresh.answers == []


async def test_a_wave_of_rounds_shares_one_ask_of_a_lists_test_entries() -> None:
    """Twenty rounds at once, each about its own address: each result carries the test
    entries' answers, asked of the list once (agent.blocklist_tests.TTL_S)."""
    rbl = BlocklistZone(zone="rbl.example.net", kind="ip", tests=["127.0.0.2", "127.0.0.1"])
    ips = [f"93.184.216.{n}" for n in range(100, 120)]
    async with DnsblPeer({"rbl.example.net": healthy()}) as peer:
        probe = BlocklistProbe(resolver=peer.address, clock=WALL)
        rounds = await asyncio.gather(
            *(probe.probe(ask(rbl, ips=[ip], skip=rbl.tests), HOST, 5) for ip in ips)
        )
    for ip, got in zip(ips, rounds, strict=True):
        assert {a.name: a.a for a in got.answers} == {
            "127.0.0.2": ["127.0.0.2"],
            "127.0.0.1": [],
            ip: [],
        }
    assert peer.asked.count(("2.0.0.127.rbl.example.net", "A")) == 1
    assert peer.asked.count(("1.0.0.127.rbl.example.net", "A")) == 1


class Clocked(DnsblPeer):
    """Records when (the loop's clock) each query arrived."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.times: list[float] = []

    def answer(self, wire: bytes, tcp: bool = False) -> bytes | None:
        self.times.append(asyncio.get_running_loop().time())
        return super().answer(wire, tcp)


async def test_the_names_lookups_keep_to_the_rounds_budget() -> None:
    """A mail domain whose MX hosts' DNS never answers (a member's own zone): the hosts'
    address lookups share the round's budget, so no query goes out after it (one at a time,
    each with the whole budget, they went on for 11 budgets and the worker cut the round's
    facts off whole)."""
    hosts = [f"mx{n}.silent.example" for n in range(5)]
    records = {("mail.example", "MX"): [f"{n} {h}." for n, h in enumerate(hosts)]}
    budget = 1.0
    async with Clocked({}, records=records) as peer:
        peer.silent = ("silent.example",)
        probe = BlocklistProbe(resolver=peer.address, clock=WALL)
        started = asyncio.get_running_loop().time()
        got = await probe.probe(ask(RBL, host=False, mx_domain="mail.example"), HOST, budget)
    late = [t - started for t in peer.times if t - started > 3 * budget]
    assert late == [], f"{len(late)} queries after the budget, the last at {max(late):.1f} s"
    assert got.errors["mx"].endswith("timed out"), got.errors


async def test_a_dqs_key_is_used_and_never_shown() -> None:
    key = "s3cr3tdqskey"
    zones = {f"{key}.zen.dq.spamhaus.net": healthy(**{label(HOST_IP): ["127.0.0.4"]})}
    async with DnsblPeer(zones, records=RECORDS, slow={f"{key}.zen.dq.spamhaus.net": 0}) as peer:
        got = await BlocklistProbe(resolver=peer.address, dqs_key=key, clock=WALL).probe(
            ask(ZEN, host=True), HOST, 5
        )
    found = answer(got, "zen.spamhaus.org", HOST_IP)
    assert found.a == ["127.0.0.4"]
    assert read(KNOWN["zen.spamhaus.org"], found.a).reason.startswith("XBL")
    assert key not in msgspec.json.encode(got).decode()


async def test_an_unanswering_resolver_is_unknown_for_every_list() -> None:
    async with DnsblPeer({}, records=RECORDS) as peer:
        peer.silent = ("example.net",)
        got = await BlocklistProbe(resolver=peer.address, clock=WALL).probe(
            ask(RBL, ips=["127.0.0.2"]), HOST, 1
        )
    only = answer(got, "rbl.example.net", "127.0.0.2")
    assert only.a is None and only.error == "timed out"


async def test_a_worker_asks_the_lists_only_for_jobs_that_carry_blocklists(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """Through NATS, the probe built from the agent's settings (AGENT_BLOCKLIST_RESOLVER,
    AGENT_SPAMHAUS_DQS_KEY): a job with `blocklists` comes back with `reputation` (its DQS
    zone asked through the key, the key nowhere in the result), a job without asks nothing."""
    key = "w0rkerdqskey"
    zones = {f"{key}.zen.dq.spamhaus.net": healthy(), "rbl.example.net": healthy()}
    async with SmtpLikePeer() as smtp, DnsblPeer(zones) as peer:
        with_lists = job_for(
            country,
            smtp.port,
            side_checks={"blocklists": ask(ZEN, RBL, ips=["127.0.0.2", "127.0.0.1"])},
        )
        without = job_for(country, smtp.port)
        for job in (with_lists, without):
            await publish_job(js, job)
        env = {
            "AGENT_BLOCKLIST_RESOLVER": peer.address,
            "AGENT_SPAMHAUS_DQS_KEY": key,
            "AGENT_ALLOW_PRIVATE_TARGETS": "true",
        }
        settings = load(AgentSettings, env, agent_country=country)
        w = settings_worker(
            nc,
            settings,
            ssl_contexts,
        )
        await w.run(burst=True)
    found = {r.job_id: r for r in await results(js, country)}
    got = WIRE.facts_of(found[with_lists.job_id].side_checks)
    assert got is not None
    assert answer(got, "zen.spamhaus.org", "127.0.0.2").a == ["127.0.0.2"]
    assert answer(got, "rbl.example.net", "127.0.0.1").a == []
    assert found[without.job_id].side_checks == {}
    assert len([n for n, t in peer.asked if t == "A"]) == 4
    assert all(not n.startswith("2.0.0.127.zen.spamhaus") for n, _ in peer.asked)


async def test_one_organizations_share_of_the_dns_probes_is_bounded() -> None:
    """One organization's round stuck on a mail domain whose DNS never answers holds its only
    probe: its next round answers `unknown` (not asked) within its own budget, while another
    organization's round is answered at once."""
    zones = {"rbl.example.net": healthy()}
    async with DnsblPeer(zones, records=RECORDS) as peer:
        peer.silent = ("never-answers.test",)
        bound = TenantBound(1)
        probe = BlocklistProbe(resolver=peer.address, bound=bound, clock=WALL)
        stuck = asyncio.create_task(
            probe.probe(ask(RBL, mx_domain="never-answers.test"), HOST, 3, "member")
        )
        await asyncio.sleep(0)  # its first step takes the slot (free) and sends the MX query
        assert bound.running("member") == 1
        again = await probe.probe(ask(RBL, ips=["127.0.0.2"]), HOST, 0.2, "member")
        other = await probe.probe(ask(RBL, ips=["127.0.0.2"]), HOST, 3, "other")
        stuck.cancel()
    assert again.errors == {"resolver": BOUND_BUSY} and again.answers == []
    assert answer(other, "rbl.example.net", "127.0.0.2").a == ["127.0.0.2"]


async def test_a_name_answered_is_not_asked_again_for_the_recent_seconds_given() -> None:
    """`AGENT_BLOCKLIST_RECENT_SECONDS` (the probe's `recent_s`): within it a list is not asked
    again about a name it answered; past it, it is."""
    zones = {"rbl.example.net": healthy(**{label(HOST_IP): ["127.0.0.2"]})}
    settings = load(AgentSettings, {"AGENT_BLOCKLIST_RECENT_SECONDS": "5"}, agent_country="DE")
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    query = (f"{label(HOST_IP)}.rbl.example.net", "A")
    async with DnsblPeer(zones) as peer:
        probe = BlocklistProbe(
            resolver=peer.address,
            clock=clock,
            recent_s=settings.side_checks.agent_blocklist_recent_seconds,
        )
        await probe.probe(ask(RBL, host=True), HOST_IP, 5)
        clock.advance(4.9)
        await probe.probe(ask(RBL, host=True), HOST_IP, 5)
        held = peer.asked.count(query)
        clock.advance(0.2)
        await probe.probe(ask(RBL, host=True), HOST_IP, 5)
    assert held == 1
    assert peer.asked.count(query) == 2
