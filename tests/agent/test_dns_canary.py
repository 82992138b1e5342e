"""The agent's resolver canaries against real DNS servers on loopback (issue 65): a truthful
resolver, one answering NXDOMAIN for everything, one answering records for everything, a dead
one and a slow one, and two "countries" whose resolvers differ; what the agent sends is read
by the controller's rule (controller.oracles.rules.resolver_health) as it would be. A wave of
rounds shares one ask."""

import asyncio

import dns.message
import dns.rrset

from agent.settings import SideCheckSettings, TargetSettings
from agent.sidechecks import SIDE_CHECKS, Round
from agent.sidechecks.mail_dns import MailDnsProbe
from agent.sidechecks.reverse_dns import ReverseDnsProbe
from controller.oracles.rules import resolver_health
from shared.clock import WALL
from shared.sidechecks import blocklists, mail_dns, readiness, reverse_dns
from shared.sidechecks.blocklists import BlocklistZone
from testkit.peers.dns import DnsPeer
from testkit.peers.jobs import make_job, up_result

DOMAIN = "customer.example.com"
RECORDS = {
    (DOMAIN, "TXT"): ['"v=spf1 -all"'],
    ("1.2.0.192.in-addr.arpa", "PTR"): ["x.example.com."],
}


class Wildcard(DnsPeer):
    """A hijacking resolver: an A record (192.0.2.1) for every name, existing or not."""

    def _response(self, wire: bytes) -> dns.message.Message | None:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        q = query.question[0]
        self.asked.append((q.name.to_text(omit_final_dot=True), "A"))
        response.answer.append(dns.rrset.from_text(q.name, 60, "IN", "A", "192.0.2.1"))
        return response


class Slow(DnsPeer):
    """A truthful resolver that answers everything after `delay` seconds."""

    delay = 1.0

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        asyncio.get_running_loop().call_later(self.delay, super().datagram_received, data, addr)


async def mail_dns_health(peer: DnsPeer, budget: float = 2.0) -> tuple[str, str]:
    seen = await MailDnsProbe(resolver=peer.address).probe(DOMAIN, "mx." + DOMAIN, 25, budget)
    h = resolver_health(seen.canaries)
    return h.state, h.reason


async def test_a_truthful_resolver_is_healthy() -> None:
    async with DnsPeer(RECORDS) as peer:
        assert await mail_dns_health(peer) == ("healthy", "")


async def test_a_resolver_answering_nxdomain_for_everything_is_unhealthy() -> None:
    async with DnsPeer({}, canaries=False) as peer:
        state, reason = await mail_dns_health(peer)
    assert state == "unhealthy" and "a.root-servers.net A, which must exist" in reason


async def test_a_resolver_answering_records_for_everything_is_unhealthy() -> None:
    async with Wildcard({}) as peer:
        state, reason = await mail_dns_health(peer)
    assert state == "unhealthy" and "mailprobe-canary.invalid A, which must not exist" in reason


async def test_a_dead_resolver_is_unknown_never_unhealthy() -> None:
    async with DnsPeer({}, silent=frozenset({"net", "invalid", "com"})) as peer:
        state, reason = await mail_dns_health(peer, budget=0.5)
    assert state == "unknown" and "got no answer" in reason


async def test_a_resolver_slower_than_the_rounds_budget_is_unknown() -> None:
    async with Slow(RECORDS) as peer:
        state, reason = await mail_dns_health(peer, budget=0.3)
    assert state == "unknown" and "not answered within the round's budget" in reason


async def test_two_countries_resolvers_are_judged_apart_and_reverse_dns_asks_them_too() -> None:
    async with DnsPeer(RECORDS) as de, DnsPeer({}, canaries=False) as us:
        probes = {
            cc: ReverseDnsProbe(resolver=p.address, allow_private=True)
            for cc, p in (("DE", de), ("US", us))
        }
        seen = {cc: await p.probe(["192.0.2.1"], 2.0) for cc, p in probes.items()}
    assert resolver_health(seen["DE"].canaries).state == "healthy"
    assert resolver_health(seen["US"].canaries).state == "unhealthy"
    assert seen["US"].addresses[0].names == []  # what a lying resolver says...
    # ...is read by the controller only with its canaries: unknown, not "PTR missing".


async def test_a_wave_of_rounds_shares_one_ask_of_the_canaries() -> None:
    async with DnsPeer(RECORDS) as peer:
        probe = MailDnsProbe(resolver=peer.address)
        await asyncio.gather(*(probe.probe(DOMAIN, "mx." + DOMAIN, 25, 2.0) for _ in range(20)))
    assert peer.asked.count(("a.root-servers.net", "A")) == 1
    assert peer.asked.count((DOMAIN, "TXT")) == 20


async def test_every_dns_side_check_built_from_settings_asks_the_operators_canaries() -> None:
    """`AGENT_DNS_CANARIES` names the canaries of mail DNS, reverse DNS and readiness alike (a
    resolver of the operator's own that cannot reach the root servers, say): built from the
    agent's settings, each asks those and not the defaults, and "" asks none."""
    own = "ns1.lab.example A, !gone.lab.example A"
    records = {**RECORDS, ("ns1.lab.example", "A"): ["192.0.2.53"]}
    job = make_job("roundtrip", 587)
    result = up_result(job, address="93.184.216.34")  # the address: a query name only
    at = Round(job=job, result=result, port=25, resolver=None)
    targets = TargetSettings(agent_allow_private_targets=True)
    asks = {
        mail_dns.WIRE.name: mail_dns.WIRE.ask(domain=DOMAIN),
        reverse_dns.WIRE.name: reverse_dns.WIRE.ask(),
        readiness.WIRE.name: readiness.WIRE.ask(domain=DOMAIN),
    }
    for setting, wanted in ((own, {"ns1.lab.example", "gone.lab.example"}), ("", set())):
        async with DnsPeer(records, canaries=False) as peer:
            settings = SideCheckSettings(
                agent_dns_resolver=peer.address, agent_dns_canaries=setting
            )
            for name, asked in asks.items():
                run = SIDE_CHECKS[name].build(settings, targets, WALL)
                facts = await run(asked, at)
                assert facts is not None, name
                got = {c.name for c in facts.canaries or []}
                assert got == wanted, (name, setting, got)
                if wanted:
                    assert resolver_health(facts.canaries).state == "healthy", name


async def test_the_blocklists_say_which_resolver_they_were_asked_through() -> None:
    """Built from the agent's settings, the blocklist side check says whether its lists were
    asked through the resolver the canaries vouch for (`dns`: no AGENT_BLOCKLIST_RESOLVER of
    its own, or the same one) or through a resolver of its own (`own`)."""
    job = make_job("smtp", 25)
    at = Round(job=job, result=up_result(job), port=25, resolver=None)
    targets = TargetSettings(agent_allow_private_targets=True)
    asked = blocklists.WIRE.ask(zones=[BlocklistZone(zone="rbl.example.net")], host=False)
    async with DnsPeer(RECORDS) as dns, DnsPeer(RECORDS) as lists:
        for own, through in ((None, "dns"), (dns.address, "dns"), (lists.address, "own")):
            settings = SideCheckSettings(
                agent_dns_resolver=dns.address, agent_blocklist_resolver=own
            )
            facts = await SIDE_CHECKS["blocklists"].build(settings, targets, WALL)(asked, at)
            assert facts is not None and facts.resolver == through, own
