"""The agent's reverse DNS probe against a real loopback DNS server: PTR names, forward
confirmation, and bad answers (SERVFAIL, silence, CNAME loops, huge answers) as a clear
unknown, never a crash."""

import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.probers.tls import SslContexts
from agent.settings import AgentSettings
from agent.sidechecks import reverse_dns
from agent.sidechecks.reverse_dns import ReverseDnsProbe
from shared.settings import load
from shared.sidechecks.reverse_dns import PTR_NAMES_MAX, WIRE, ReverseDnsAsk
from testkit.peers.dns import DnsPeer
from tests.agent.helpers import SmtpLikePeer, job_for, publish_job, results, settings_worker

ARPA = "1.0.0.127.in-addr.arpa"
ARPA2 = "2.0.0.127.in-addr.arpa"
V6_ARPA = "1." + "0." * 31 + "ip6.arpa"
ASK = {WIRE.name: ReverseDnsAsk()}


def _probe(peer: DnsPeer) -> ReverseDnsProbe:
    return ReverseDnsProbe(resolver=peer.address, allow_private=True)


async def test_a_ptr_whose_name_resolves_back_is_confirmed() -> None:
    """PTR names lower case without the final dot; a name whose A records hold the address is
    confirmed, one pointing elsewhere is not; IPv6 is confirmed by AAAA."""
    records = {
        (ARPA, "PTR"): ["Mail.Example.org.", "other.example.org."],
        ("mail.example.org", "A"): ["192.0.2.1", "127.0.0.1"],
        ("other.example.org", "A"): ["192.0.2.9"],
        (V6_ARPA, "PTR"): ["mail.example.org."],
        ("mail.example.org", "AAAA"): ["::1"],
    }
    async with DnsPeer(records) as peer:
        seen = await _probe(peer).probe(["127.0.0.1", "::1"], 5.0)
    first, second = seen.addresses
    assert (first.address, first.names) == ("127.0.0.1", ["mail.example.org", "other.example.org"])
    assert first.confirmed == ["mail.example.org"] and first.error == ""
    assert (second.address, second.names, second.confirmed) == (
        "::1",
        ["mail.example.org"],
        ["mail.example.org"],
    )
    assert seen.truncated is False


async def test_no_ptr_is_empty_and_a_name_that_does_not_resolve_back_is_unconfirmed() -> None:
    records = {
        (ARPA2, "PTR"): ["elsewhere.example.org."],
        ("elsewhere.example.org", "A"): ["192.0.2.7"],
        ("unrelated.example.org", "A"): ["192.0.2.8"],
    }
    async with DnsPeer(records) as peer:
        seen = await _probe(peer).probe(["127.0.0.1", "127.0.0.2"], 5.0)
    missing, elsewhere = seen.addresses
    assert missing.names == [] and missing.confirmed is None and missing.error == ""
    assert elsewhere.names == ["elsewhere.example.org"] and elsewhere.confirmed == []


@pytest.mark.parametrize(
    ("records", "servfail", "silent", "why"),
    [
        ({}, frozenset({ARPA}), frozenset(), "SERVFAIL"),
        ({}, frozenset(), frozenset({"in-addr.arpa"}), "timed out"),
        # RFC 2317 delegations are CNAMEs; a loop of them never ends in a PTR
        (
            {(ARPA, "CNAME"): ["1.sub.example.org."], ("1.sub.example.org", "CNAME"): [f"{ARPA}."]},
            frozenset(),
            frozenset(),
            "CNAME",
        ),
    ],
    ids=["servfail", "silent", "cname-loop"],
)
async def test_a_failed_ptr_lookup_is_unknown_with_why(
    records: dict[tuple[str, str], list[str]],
    servfail: frozenset[str],
    silent: frozenset[str],
    why: str,
) -> None:
    """Null names (not []: a failure never reads as a missing PTR), why in `error` (a silent
    server: `timed out`). How long the budget takes is bench/'s to measure, not a test's."""
    async with DnsPeer(records, servfail=servfail, silent=silent) as peer:
        seen = await _probe(peer).probe(["127.0.0.1"], 1.0)
    (check,) = seen.addresses
    assert check.names is None and check.confirmed is None
    assert why in check.error


async def test_a_forward_lookup_that_fails_leaves_confirmation_unknown() -> None:
    records = {(ARPA, "PTR"): ["mail.slow.example."]}
    async with DnsPeer(records, silent=frozenset({"slow.example"})) as peer:
        seen = await _probe(peer).probe(["127.0.0.1"], 1.0)
    (check,) = seen.addresses
    assert check.names == ["mail.slow.example"] and check.confirmed is None
    assert "forward lookup" in check.error


async def test_a_huge_answer_is_cut_to_the_bound_and_flagged() -> None:
    """300 PTR records (too big for UDP: the resolver retries over TCP) come back as the first
    few names, `truncated` set, and the result stays small."""
    names = [f"host-{i:03d}.{'x' * 40}.example.org." for i in range(300)]
    records = {(ARPA, "PTR"): names}
    async with DnsPeer(records) as peer:
        seen = await _probe(peer).probe(
            ["127.0.0.1"] * 3 + [f"127.0.0.{i}" for i in range(2, 9)], 5
        )
    assert seen.truncated is True
    assert len(seen.addresses) == 4  # PTR_ADDRESSES_MAX, repeats dropped first
    first = seen.addresses[0]
    assert first.names is not None and len(first.names) == PTR_NAMES_MAX
    assert first.confirmed == [] and first.error == ""
    assert len(msgspec.json.encode(seen)) < 2048


async def test_private_addresses_are_not_looked_up() -> None:
    """Receivers never see a private or loopback address: its PTR is unknown, never missing."""
    async with DnsPeer({(ARPA, "PTR"): ["mail.example.org."]}) as peer:
        seen = await ReverseDnsProbe(resolver=peer.address).probe(["127.0.0.1", "10.1.2.3"], 5)
    assert peer.asked == []
    assert all(c.names is None and "private" in c.error for c in seen.addresses)


async def test_a_worker_looks_up_reverse_dns_only_on_jobs_that_ask(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """Through NATS: a job with `reverseDns` comes back with the connected address's PTR
    facts, one without asks nothing. (The probe is the test's, allowed loopback: an agent's own
    never looks up a private address, `test_an_agents_own_probe_skips_private_addresses`.)"""
    records = {(ARPA, "PTR"): ["peer.test."], ("peer.test", "A"): ["127.0.0.1"]}
    async with SmtpLikePeer() as smtp, DnsPeer(records) as peer:
        asked = job_for(country, smtp.port, side_checks=ASK, hostname="127.0.0.1")
        plain = job_for(country, smtp.port, hostname="127.0.0.1")
        for job in (asked, plain):
            await publish_job(js, job)
        env = {"AGENT_DNS_RESOLVER": peer.address, "AGENT_ALLOW_PRIVATE_TARGETS": "true"}
        settings = load(AgentSettings, env, agent_country=country)
        w = settings_worker(
            nc,
            settings,
            ssl_contexts,
            side_checks={"reverse_dns": reverse_dns.runner(_probe(peer))},
        )
        await w.run(burst=True)
    found = {r.job_id: r for r in await results(js, country)}
    seen = WIRE.facts_of(found[asked.job_id].side_checks)
    assert found[asked.job_id].status == "up" and found[asked.job_id].banner == "peer.test ESMTP"
    assert seen is not None
    assert [(c.address, c.names, c.confirmed) for c in seen.addresses] == [
        ("127.0.0.1", ["peer.test"], ["peer.test"])
    ]
    assert found[plain.job_id].side_checks == {}
    assert [(c.name, c.found) for c in seen.canaries or []] == [
        ("a.root-servers.net", True),
        ("mailprobe-canary.invalid", False),
    ]
    canaries = [("a.root-servers.net", "A"), ("mailprobe-canary.invalid", "A")]
    assert sorted(peer.asked) == sorted([(ARPA, "PTR"), ("peer.test", "A"), *canaries])


async def test_an_agents_own_probe_skips_private_addresses(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """Built from the settings, with AGENT_ALLOW_PRIVATE_TARGETS set (`make run`, the tests):
    the check runs against loopback, its reverse DNS is unknown and nothing is asked."""
    async with SmtpLikePeer() as smtp, DnsPeer({(ARPA, "PTR"): ["peer.test."]}) as peer:
        job = job_for(country, smtp.port, side_checks=ASK, hostname="127.0.0.1")
        await publish_job(js, job)
        env = {"AGENT_DNS_RESOLVER": peer.address, "AGENT_ALLOW_PRIVATE_TARGETS": "true"}
        settings = load(AgentSettings, env, agent_country=country)
        w = settings_worker(
            nc,
            settings,
            ssl_contexts,
        )
        await w.run(burst=True)
    (result,) = [r for r in await results(js, country) if r.job_id == job.job_id]
    seen = WIRE.facts_of(result.side_checks)
    assert result.status == "up" and seen is not None
    assert [(c.address, c.names) for c in seen.addresses] == [("127.0.0.1", None)]
    assert peer.asked == []
