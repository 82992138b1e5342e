"""The agent's mail DNS probe against a loopback DNS server and MTA-STS policy host."""

import ssl
import tempfile

import msgspec
import pytest
import trustme
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.probers.tls import SslContexts
from agent.settings import AgentSettings
from agent.sidechecks.mail_dns import MailDnsProbe
from shared.settings import SettingsError, load
from shared.sidechecks.mail_dns import WIRE, MailDnsAsk
from testkit.peers.dns import DnsPeer, PolicyHost
from testkit.trust import trusting
from tests.agent.helpers import SmtpLikePeer, job_for, publish_job, results, settings_worker

DOMAIN = "example.test"
POLICY = "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n"
TLSA = "3 1 1 " + "ab" * 32


def _records(**extra: list[str]) -> dict[tuple[str, str], list[str]]:
    records = {
        (DOMAIN, "MX"): ["20 backup.example.test.", "10 MX.example.test."],
        (DOMAIN, "TXT"): ['"v=spf1 mx -all"', '"google-site-verification=x"', '"v=spf10 x"'],
        (f"_dmarc.{DOMAIN}", "TXT"): ['"v=DMARC1; p=reject"'],
        (f"_mta-sts.{DOMAIN}", "TXT"): ['"v=STSv1; id=2024" "0101"'],
        (f"_smtp._tls.{DOMAIN}", "TXT"): ['"v=TLSRPTv1; rua=mailto:tls@example.test"'],
        (f"mta-sts.{DOMAIN}", "A"): ["127.0.0.1"],
        ("_25._tcp.mx.example.test", "TLSA"): [TLSA],
    }
    for key, value in extra.items():
        name, _, rdtype = key.rpartition("_")
        records[(name.replace("__", ".") or DOMAIN, rdtype)] = value
    return records


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _probe(ca: trustme.CA, dns_peer: DnsPeer, policy_port: int) -> MailDnsProbe:
    context = trusting(ca)
    return MailDnsProbe(
        resolver=dns_peer.address,
        policy_context=context,
        policy_port=policy_port,
        allow_private=True,
    )


async def test_probe_reads_each_record_kind_and_the_https_policy(ca: trustme.CA) -> None:
    """MX by preference (lower case, no dot), only the TXT records of each kind (not `v=spf10`),
    a TXT record's strings joined, TLSA of the monitored service, and the policy fetched from
    https://mta-sts.<domain>/.well-known/mta-sts.txt with the policy host's name."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(f"mta-sts.{DOMAIN}").configure_cert(server)
    async with DnsPeer(_records(), ad=True) as peer, PolicyHost(server, POLICY) as host:
        seen = await _probe(ca, peer, host.port).probe(DOMAIN, "mx.example.test", 25, 5.0)
    assert seen.mx == ["mx.example.test", "backup.example.test"]
    assert seen.spf == ["v=spf1 mx -all"]
    assert seen.dmarc == ["v=DMARC1; p=reject"]
    assert seen.mta_sts == ["v=STSv1; id=20240101"]
    assert seen.tls_rpt == ["v=TLSRPTv1; rua=mailto:tls@example.test"]
    assert seen.tlsa == [TLSA] and seen.tlsa_dnssec is True
    assert seen.mta_sts_policy == POLICY
    assert seen.errors == {}
    assert host.requests == [("GET /.well-known/mta-sts.txt HTTP/1.0", f"mta-sts.{DOMAIN}")]


async def test_missing_records_are_empty_and_failed_lookups_are_null_with_why(
    ca: trustme.CA,
) -> None:
    """NXDOMAIN / no record: [] (the domain has none); SERVFAIL: null and `errors` says so, so
    a resolver outage never reads as a missing record. Without the AD bit the TLSA records are
    there but not DNSSEC-validated. No `_mta-sts` TXT: no policy fetched."""
    records = _records()
    del records[(f"_mta-sts.{DOMAIN}", "TXT")]
    del records[(DOMAIN, "TXT")]
    records[(DOMAIN, "A")] = ["127.0.0.1"]  # the name exists, without TXT
    async with DnsPeer(records, servfail=frozenset({f"_dmarc.{DOMAIN}"})) as peer:
        seen = await _probe(ca, peer, 1).probe(DOMAIN, "mx.example.test", 25, 5.0)
    assert seen.spf == [] and seen.mta_sts == [] and seen.mta_sts_policy is None
    assert seen.dmarc is None and "dmarc" in seen.errors
    assert seen.tlsa == [TLSA] and seen.tlsa_dnssec is False
    assert (f"mta-sts.{DOMAIN}", "A") not in peer.asked


async def test_policy_host_with_an_untrusted_certificate_or_404_gives_no_policy(
    ca: trustme.CA,
) -> None:
    """RFC 8461 3.3: the policy counts only over HTTPS with a valid certificate and a 200."""
    other = trustme.CA()
    bad = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other.issue_cert(f"mta-sts.{DOMAIN}").configure_cert(bad)
    good = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(f"mta-sts.{DOMAIN}").configure_cert(good)
    async with DnsPeer(_records()) as peer:
        async with PolicyHost(bad, POLICY) as host:
            untrusted = await _probe(ca, peer, host.port).probe(DOMAIN, "mx.example.test", 25, 5)
        async with PolicyHost(good, "no", status=404) as host:
            missing = await _probe(ca, peer, host.port).probe(DOMAIN, "mx.example.test", 25, 5)
    assert untrusted.mta_sts_policy is None
    assert "certificate" in untrusted.errors["mtaStsPolicy"]
    assert missing.mta_sts_policy is None
    assert "HTTP 404" in missing.errors["mtaStsPolicy"]


async def test_policy_host_on_a_private_address_is_not_fetched(ca: trustme.CA) -> None:
    """An agent that refuses private targets does not fetch a policy from one either: a mail
    domain is not a way into the agent's own network."""
    public = {  # a public-looking domain: .test would not be looked up at all
        (n.replace(DOMAIN, "example.org"), t): [v.replace(DOMAIN, "example.org") for v in vs]
        for (n, t), vs in _records().items()
    }
    async with DnsPeer(public) as peer:
        probe = MailDnsProbe(resolver=peer.address, policy_port=1)
        seen = await probe.probe("example.org", "mx.example.org", 25, 5.0)
    assert seen.mta_sts == ["v=STSv1; id=20240101"]
    assert seen.mta_sts_policy is None
    assert "private" in seen.errors["mtaStsPolicy"]


@pytest.mark.parametrize(
    ("domain", "host"), [("corp.internal", "mx.example.com"), ("example.com", "mx.lan")]
)
async def test_internal_names_are_not_looked_up(domain: str, host: str) -> None:
    """A mail domain (or monitored host) under an internal or special-use name is answered by
    the agent's own network: not asked, unless private targets are allowed."""
    async with DnsPeer(_records()) as peer:
        seen = await MailDnsProbe(resolver=peer.address).probe(domain, host, 25, 5.0)
    assert peer.asked == []
    assert seen.mx is None and "internal" in seen.errors["resolver"]


async def test_a_worker_probes_the_mail_dns_only_of_jobs_that_name_a_mail_domain(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts, ca: trustme.CA
) -> None:
    """Through NATS, with the probe built from the agent's settings (AGENT_DNS_RESOLVER,
    AGENT_MTA_STS_CA_FILE, AGENT_MTA_STS_PORT): a job with `mailDomain` comes back with
    `mailDns` (the policy fetched too, the default resolver canaries answered right), a job
    without one asks the DNS nothing."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(f"mta-sts.{DOMAIN}").configure_cert(server)
    async with (
        SmtpLikePeer() as smtp,
        DnsPeer(_records()) as peer,
        PolicyHost(server, POLICY) as host,
    ):
        ask = {WIRE.name: MailDnsAsk(domain=DOMAIN)}
        with_dns = job_for(country, smtp.port, side_checks=ask, hostname="localhost")
        without = job_for(country, smtp.port)
        for job in (with_dns, without):
            await publish_job(js, job)
        with tempfile.NamedTemporaryFile("wb", suffix=".pem") as ca_file:
            ca_file.write(ca.cert_pem.bytes())
            ca_file.flush()
            env = {
                "AGENT_DNS_RESOLVER": peer.address,
                "AGENT_MTA_STS_CA_FILE": ca_file.name,
                "AGENT_MTA_STS_PORT": str(host.port),
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
    probed = WIRE.facts_of(found[with_dns.job_id].side_checks)
    assert found[with_dns.job_id].status == "up"
    assert probed is not None and probed.mx == ["mx.example.test", "backup.example.test"]
    assert probed.mta_sts_policy == POLICY
    assert [(c.name, c.found) for c in probed.canaries or []] == [
        ("a.root-servers.net", True),
        ("mailprobe-canary.invalid", False),
    ]
    assert found[without.job_id].side_checks == {}
    assert len(host.requests) == 1
    assert sorted(peer.asked) == sorted(  # one probe, of the job that asked for it
        [
            (DOMAIN, "MX"),
            (DOMAIN, "TXT"),
            (f"_dmarc.{DOMAIN}", "TXT"),
            (f"_mta-sts.{DOMAIN}", "TXT"),
            (f"_smtp._tls.{DOMAIN}", "TXT"),
            (f"_{smtp.port}._tcp.localhost", "TLSA"),
            (f"mta-sts.{DOMAIN}", "A"),
            (f"mta-sts.{DOMAIN}", "AAAA"),
            ("a.root-servers.net", "A"),
            ("mailprobe-canary.invalid", "A"),
        ]
    )


def test_agent_dns_resolver_setting_is_host_or_host_port() -> None:
    for good in ("127.0.0.1", "127.0.0.1:5353", "[::1]:53", "resolver.internal"):
        load(AgentSettings, {"AGENT_DNS_RESOLVER": good}, agent_country="DE")
    with pytest.raises(SettingsError, match="AGENT_DNS_RESOLVER"):
        load(AgentSettings, {"AGENT_DNS_RESOLVER": "udp://1.1.1.1"}, agent_country="DE")
    with pytest.raises(SettingsError, match="AGENT_MTA_STS_CA_FILE"):
        load(AgentSettings, {"AGENT_MTA_STS_CA_FILE": "/nonexistent.pem"}, agent_country="DE")


async def test_oversized_records_are_bounded_and_flagged(ca: trustme.CA) -> None:
    """Pins the bound: 14 SPF TXT records of 4,000 characters and 14 TLSA records of 2,000-byte
    certificates (the 280 KB `mailDns` of issue 22) come back within 16 KiB encoded, each list
    cut but not emptied, and the cut lists named in `truncated`."""
    chunk = " ".join(f'"{"a" * 250}"' for _ in range(16))
    spf = [f'"v=spf1 ip4:192.0.2.{i} " {chunk}' for i in range(14)]
    tlsa = [f"3 0 0 {f'{i:02x}' * 2000}" for i in range(14)]
    records = _records(TXT=spf)
    records[("_25._tcp.mx.example.test", "TLSA")] = tlsa
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(f"mta-sts.{DOMAIN}").configure_cert(server)
    async with DnsPeer(records, ad=True) as peer, PolicyHost(server, POLICY) as host:
        seen = await _probe(ca, peer, host.port).probe(DOMAIN, "mx.example.test", 25, 5.0)
    assert seen.errors == {}
    assert len(msgspec.json.encode(seen)) <= 16 * 1024
    assert seen.spf and seen.tlsa and seen.spf[0].startswith("v=spf1 ip4:192.0.2.0 ")
    assert {"spf", "tlsa"} <= set(seen.truncated)
    assert seen.dmarc == ["v=DMARC1; p=reject"] and "dmarc" not in seen.truncated
