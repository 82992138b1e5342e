"""DANE judged on real DNSSEC: each country's agent asks its own Debian unbound on loopback
(what `AGENT_DNS_RESOLVER` names), which validates a zone signed here (KSK, ZSK, RRSIGs, NSEC)
against that zone's trust anchor, fetched from the test suite's authoritative peer. So the AD
bit behind `mailDns.tlsaDnssec` comes from validation, not from a peer that sets it: a signed
TLSA record that matches is quiet, one that does not is `tlsa_mismatch`, and one whose
signature is broken is SERVFAIL at the resolver and never a finding."""

from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import httpx
import pytest

from agent.probers.tls import SslContexts, build_ssl_contexts
from agent.sidechecks.mail_dns import MailDnsProbe
from shared.dns_canary import Canary
from testkit.peers import unbound
from testkit.peers.dns import Records
from testkit.peers.dnssec import SignedDnsPeer, signed_zone
from testkit.peers.smtp import SmtpPeer
from tests.alerting.conftest import Rig
from tests.alerting.test_mail_dns import CA, DOMAIN, MONITORED, round_, served, watched
from tests.alerting.test_posture import open_codes, posture

pytestmark = pytest.mark.skipif(unbound.missing() is not None, reason=str(unbound.missing()))


@pytest.fixture(scope="module")
def contexts() -> SslContexts:
    return build_ssl_contexts(cadata=CA.cert_pem.bytes().decode())


def healthy(tlsa_name: str, tlsa: str) -> Records:
    """Mail DNS with nothing to find but, perhaps, the TLSA record `tlsa` at `tlsa_name`."""
    return {
        (DOMAIN, "MX"): [f"10 {MONITORED}."],
        (DOMAIN, "TXT"): ['"v=spf1 mx -all"'],
        (f"_dmarc.{DOMAIN}", "TXT"): ['"v=DMARC1; p=reject"'],
        (f"_smtp._tls.{DOMAIN}", "TXT"): ['"v=TLSRPTv1; rua=mailto:tls@customer.test"'],
        (MONITORED, "A"): ["127.0.0.1"],
        (tlsa_name, "TLSA"): [tlsa],
    }


async def validated(
    stack: AsyncExitStack, records: Records, bogus: frozenset[tuple[str, str]] = frozenset()
) -> tuple[MailDnsProbe, SignedDnsPeer]:
    """A probe asking its own unbound, which validates `records` signed as the zone DOMAIN
    (served by the returned peer) until `stack` closes."""
    zone, anchor = signed_zone(DOMAIN, records, bogus)
    peer = await stack.enter_async_context(SignedDnsPeer(zone))
    resolver = await stack.enter_async_context(unbound.Unbound(DOMAIN, peer.port, anchor))
    # This unbound answers the signed zone only (it refuses "."): the canaries are names of it
    # (AGENT_DNS_CANARIES names a resolver's own where the defaults cannot be reached).
    canaries = (Canary(MONITORED, "A", True), Canary(f"absent.{DOMAIN}", "A", False))
    probe = MailDnsProbe(resolver=resolver.address, allow_private=True, canaries=canaries)
    return probe, peer


async def stored(api: httpx.AsyncClient, rig: Rig, monitor: asyncpg.Record) -> dict[str, Any]:
    """Each country's `mailDns` of the monitor's latest round, as the results API shows it."""
    page = await api.get(
        f"/api/smtp-monitors/{monitor['public_id']}/results", headers=rig.tenant.auth("readonly")
    )
    assert page.status_code == 200, page.text
    latest: dict[str, Any] = {}
    for item in page.json()["items"]:
        latest.setdefault(item["country"], item["mailDns"])
    return latest


async def test_signed_tlsa_matching_is_quiet_and_mismatching_is_found(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """Both countries' TLSA answers are DNSSEC-validated by a real resolver (AD, so
    `tlsaDnssec`); DE's record is the served key's, US's another key's: only US raises
    `tlsa_mismatch`."""
    monitor = await watched(rig)
    starttls, spki = served()
    async with SmtpPeer(starttls=starttls) as smtp, AsyncExitStack() as stack:
        name = f"_{smtp.port}._tcp.{MONITORED}"
        de, de_peer = await validated(stack, healthy(name, f"3 1 1 {spki}"))
        us, _ = await validated(stack, healthy(name, f"3 1 1 {'ee' * 32}"))
        await round_(rig, monitor, 0, smtp.port, contexts, {"DE": de, "US": us}, MONITORED)
    assert open_codes(await posture(api, rig, monitor)) == {("tlsa_mismatch", "US")}
    seen = await stored(api, rig, monitor)
    assert seen["DE"]["tlsaDnssec"] is True and seen["US"]["tlsaDnssec"] is True
    assert seen["US"]["tlsa"] == [f"3 1 1 {'ee' * 32}"]
    # The resolver fetched the zone's keys to validate: the AD bit is its own.
    assert (DOMAIN, "DNSKEY") in de_peer.asked


async def test_tlsa_with_a_broken_signature_is_never_a_finding(
    rig: Rig, api: httpx.AsyncClient, contexts: SslContexts
) -> None:
    """A mismatching TLSA record whose RRSIG is broken: the validating resolver answers
    SERVFAIL, the agent reports the lookup failed (no records, an error), and no country
    raises `tlsa_mismatch` (nor anything else: the rest of the zone validates)."""
    monitor = await watched(rig)
    starttls, _ = served()
    async with SmtpPeer(starttls=starttls) as smtp, AsyncExitStack() as stack:
        name = f"_{smtp.port}._tcp.{MONITORED}"
        forged = healthy(name, f"3 1 1 {'ee' * 32}")
        resolver, _ = await validated(stack, forged, frozenset({(name, "TLSA")}))
        probes = {"DE": resolver, "US": resolver}
        await round_(rig, monitor, 0, smtp.port, contexts, probes, MONITORED)
    assert open_codes(await posture(api, rig, monitor)) == set()
    for mail_dns in (await stored(api, rig, monitor)).values():
        assert mail_dns["tlsa"] is None and mail_dns["tlsaDnssec"] is False
        assert mail_dns["errors"] == {"tlsa": "no resolver answered (SERVFAIL or refused)"}
        assert mail_dns["mx"] == [MONITORED]  # validated and answered
