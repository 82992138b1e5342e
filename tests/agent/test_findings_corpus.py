"""The findings mailprobe raises over a corpus of zones, against an independent implementation:
every scenario of the RFC 7208 test suite (vendored in tests/data/rfc7208), served on loopback,
asked by the agent's mail DNS and readiness probes and judged by the controller's rules as one
round, against pyspf (the reference implementation, strict) evaluating a sender no term matches.

The fact compared is the one receivers act on: whether the domain's SPF is a permanent error
(permerror). mailprobe says so with one finding of its own per cause: `spf_invalid` (the
domain's record: two records, a term that does not parse), `spf_include_broken` (a record below
it), `spf_lookup_limit` (more than 10 DNS-querying terms, a loop, an `mx` of more than 10
names), `spf_void_lookups` (more than 2 void lookups). Left out: trees not read whole (a lookup
timed out, a term names the sender: its target is not known) and scenarios pyspf ends early for
another reason (a temperror). A difference is either fixed or listed in `EXPLAINED` with why, as
docs/alerts.md ("One rule per fact, compared with independent implementations") says it.

DKIM keys likewise against dkimpy verifying a message each key signed."""

import asyncio
import base64
import email
import subprocess
from collections.abc import AsyncIterator

import dkim
import dns.exception
import dns.resolver
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from agent.probers.delivery import auth_results
from agent.sidechecks.mail_dns import MailDnsProbe
from agent.sidechecks.readiness import ReadinessProbe, runner
from controller.posture.facts import Observation
from controller.sidechecks.findings import Verdicts
from controller.sidechecks.mail_dns import rules as mail_dns_rules
from controller.sidechecks.readiness import rules as readiness_rules
from shared.sidechecks.readiness import ReadinessAsk, Spf
from testkit.peers.dns import DnsPeer, Records
from tests.agent.test_readiness import SUITE, _all_zones, _pyspf, _round_trip

PERMERROR = frozenset({"spf_invalid", "spf_include_broken", "spf_lookup_limit", "spf_void_lookups"})
# Scenario → why mailprobe's finding differs from pyspf's result (none today).
EXPLAINED: dict[str, str] = {}


def _whole(s: Spf) -> bool:
    return s.record is not None and s.complete and not s.error and not s.macros


async def _judged() -> AsyncIterator[tuple[str, Verdicts, str]]:
    """Every scenario: its name, both side checks' verdicts of one round, pyspf's result."""
    saved = dns.resolver.default_resolver
    try:
        for section in yaml.safe_load_all(SUITE.read_text()):
            records, silent = _all_zones(section)
            async with DnsPeer(records, servfail=silent) as peer:
                local = dns.resolver.Resolver(configure=False)
                local.nameservers, local.port = ["127.0.0.1"], peer.port
                dns.resolver.default_resolver = local
                ready = ReadinessProbe(resolver=peer.address, canaries=())
                mail = MailDnsProbe(resolver=peer.address, allow_private=True, canaries=())
                for name, test in section["tests"].items():
                    mailfrom = str(test.get("mailfrom", ""))
                    helo = str(test.get("helo", ""))
                    domain = (mailfrom.split("@")[-1] if "@" in mailfrom else helo).lower()
                    if not domain or ".." in domain or domain.endswith("."):
                        continue
                    facts = await ready.probe(domain, (), 2.0)
                    if facts.spf is None or not _whole(facts.spf):
                        continue
                    seen = await mail.probe(domain, f"mx.{domain}", 25, 2.0)
                    if seen.spf is None:
                        continue
                    _, result = await asyncio.to_thread(_pyspf, domain, mailfrom, helo)
                    if result == "temperror":
                        continue
                    tls = Observation(country="DE")
                    verdicts = mail_dns_rules.mail_dns("imap", domain, seen, tls)
                    verdicts |= readiness_rules.readiness(facts, "DE")
                    yield name, verdicts, result
    finally:
        dns.resolver.default_resolver = saved


# pyspf 2.0.14 asks through dnspython's deprecated `dns.resolver.query`.
@pytest.mark.filterwarnings("ignore:please use dns.resolver.resolve:DeprecationWarning")
async def test_a_permanent_error_is_one_finding_exactly_when_pyspf_says_permerror() -> None:
    compared = 0
    differ: dict[str, str] = {}
    for_one_fact: dict[str, set[str]] = {}
    async for name, verdicts, result in _judged():
        raised = {c for (c, _), f in verdicts.items() if f is not None and c in PERMERROR}
        compared += 1
        if bool(raised) != (result == "permerror"):
            differ[name] = f"pyspf {result}, mailprobe {sorted(raised)}"
        if {"spf_invalid", "spf_include_broken"} <= raised:
            for_one_fact[name] = raised  # one record's syntax judged twice
    print(f"vs pyspf: {compared} scenarios compared; differ: {differ}")
    assert compared >= 100
    assert for_one_fact == {}
    assert set(differ) == set(EXPLAINED), differ


def _pem(bits: int) -> bytes:
    """A private RSA key of `bits` (OpenSSL's own generator: the library's refuses < 1024)."""
    out = subprocess.run(
        ["openssl", "genrsa", str(bits)], check=True, capture_output=True, timeout=60
    )
    return out.stdout


def _public(pem: bytes) -> str:
    key = serialization.load_pem_private_key(pem, password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _verified(signed: bytes, port: int) -> bool:
    """dkimpy's verdict on `signed`, its key asked of the loopback server on `port`."""
    local = dns.resolver.Resolver(configure=False)
    local.nameservers, local.port = ["127.0.0.1"], port

    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = local.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
        except dns.exception.DNSException:
            return None
        return b"".join(b"".join(r.strings) for r in answer)

    return bool(dkim.verify(signed, dnsfunc=txt))


# Selector → (key bits, the key record's tags beside p=, whether p= is empty).
KEYS: dict[str, tuple[int, str, bool]] = {
    "k2048": (2048, "k=rsa", False),
    "k1024": (1024, "k=rsa", False),
    "k768": (768, "k=rsa", False),
    "sha1only": (2048, "k=rsa; h=sha1", False),
    "revoked": (2048, "k=rsa", True),
    "testing": (2048, "k=rsa; t=y", False),
}
# Selector → why mailprobe differs from dkimpy: dkimpy 1.1.8 does not read a key record's `h=`,
# which RFC 6376 6.1.2 says a verifier must: "If the "h=" tag exists in the public-key record
# and the hash algorithm implied by the "a=" tag in the DKIM-Signature header field is not
# included in the contents of the "h=" tag, the Verifier MUST ignore the key record and return
# PERMFAIL (inappropriate hash algorithm)."
DKIM_EXPLAINED = {"sha1only": "dkimpy accepts, ['dkim_key_weak']"}
# What receivers refuse, in mailprobe's words: the finding and what its detail says.
REFUSED = {"dkim_revoked": "", "dkim_key_weak": "refuse"}


async def test_a_key_receivers_refuse_is_a_finding_exactly_when_dkimpy_refuses_it() -> None:
    """Each selector signs a message (dkimpy, rsa-sha256) with its key; dkimpy verifies it
    against the record served on loopback, and mailprobe's readiness round (the round trip's
    message signed with that selector) judges the key. A signature dkimpy refuses (a key under
    1024 bits, RFC 8301 3.2; `h=` without sha256; a revoked key) is a finding saying receivers
    refuse it; one it accepts is not, though a 1024-bit key is still `dkim_key_weak` (signers
    SHOULD use 2048, RFC 8301 3.2) and `t=y` `dkim_testing`, neither saying refused. Where
    dkimpy is not RFC 6376's verifier, the difference is `DKIM_EXPLAINED`."""
    pems = {bits: _pem(bits) for bits in {b for b, _, _ in KEYS.values()}}
    records: Records = {}
    for selector, (bits, tags, revoked) in KEYS.items():
        p = "" if revoked else _public(pems[bits])
        value = f"v=DKIM1; {tags}; p={p}"
        strings = [value[i : i + 255] for i in range(0, len(value), 255)]
        records[(f"{selector}._domainkey.example.test", "TXT")] = [
            " ".join(f'"{s}"' for s in strings)
        ]
    body = (
        b"From: probe@example.test\r\nTo: box@example.net\r\nSubject: mailprobe round trip\r\n"
        b"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\n\r\nbody\r\n"
    )
    differ: dict[str, str] = {}
    async with DnsPeer(records) as peer:
        probe = ReadinessProbe(resolver=peer.address, canaries=())
        for selector, (bits, _, _) in KEYS.items():
            signed = dkim.sign(body, selector.encode(), b"example.test", pems[bits]) + body
            accepted = await asyncio.to_thread(_verified, signed, peer.port)
            found = auth_results(email.message_from_bytes(signed))
            facts = await runner(probe)(ReadinessAsk(domain="example.test"), _round_trip(found))
            assert facts is not None
            verdicts = readiness_rules.readiness(facts, "DE")
            refused = [
                code
                for code, words in REFUSED.items()
                if (f := verdicts.get((code, "DE"))) is not None
                and selector in f.detail
                and words in f.detail
            ]
            if accepted == bool(refused):
                differ[selector] = f"dkimpy {'accepts' if accepted else 'refuses'}, {refused}"
    assert differ == DKIM_EXPLAINED
