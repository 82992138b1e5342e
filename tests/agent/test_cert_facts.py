"""Certificate facts are computed once per certificate (issue 24): what a check reports from the
cache is what computing them afresh gives, and a server that changes its certificate gets the
new certificate's facts on its next check."""

import hashlib
import ssl
from datetime import timedelta
from typing import cast

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from agent.probers import tls
from agent.probers.certs import (
    KEY_DER_MAX,
    NAME_TEXT_MAX,
    SAN_MAX,
    SANS_MAX,
    CertCache,
    CertFacts,
    cert_facts,
)
from agent.probers.run import run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from shared.clock import WALL
from shared.messages import CheckResult, SmtpConfig, TlsInfo, TlsOptions
from shared.timefmt import utcnow
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer

CA = trustme.CA()
RSA_CA = trustme.CA(key_type=trustme.KeyType.RSA)


def _der(leaf: trustme.LeafCert) -> bytes:
    pem = leaf.cert_chain_pems[0].bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def _server(leaf: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    return ctx


def _fields(facts: CertFacts) -> dict[str, object]:
    return {k: getattr(facts, k) for k in CertFacts.__slots__ if k not in ("cert", "names")}


CERTS = {
    "ec": CA.issue_cert("localhost", "mail.example", common_name="localhost"),
    "rsa": RSA_CA.issue_cert(
        "mail.example", common_name="mail.example", key_type=trustme.KeyType.RSA
    ),
    "ip and wildcard": CA.issue_cert("*.example.org", "127.0.0.1", "::1"),
    "many names": CA.issue_cert(*(f"n{i}.example" for i in range(SANS_MAX + 20))),
    "larger than a key": CA.issue_cert(*(f"name-{i:04d}.example.org" for i in range(300))),
}


def test_a_certificate_is_its_own_key_up_to_key_der_max_and_its_digest_beyond() -> None:
    """The cache never keeps a key longer than KEY_DER_MAX, however large the certificates."""
    cache = CertCache()
    sizes = {name: len(_der(leaf)) for name, leaf in CERTS.items()}
    assert sizes["ec"] <= KEY_DER_MAX < sizes["larger than a key"]
    for leaf in CERTS.values():
        der = _der(leaf)
        assert cache.facts(der) is cache.facts(bytes(der))  # found again from equal bytes
    keys = list(cache._facts)
    assert max(len(k) for k in keys) <= KEY_DER_MAX
    assert _der(CERTS["larger than a key"]) not in keys


@pytest.mark.parametrize("name", CERTS)
def test_cached_facts_equal_facts_computed_afresh_and_the_certificate_itself(name: str) -> None:
    der = _der(CERTS[name])
    cache = CertCache()
    first, again = cache.facts(der), cache.facts(der)
    assert again is first  # the second check computed nothing
    assert _fields(first) == _fields(cert_facts(der))
    # and what cryptography says of the certificate, read here on its own
    cert = x509.load_der_x509_certificate(der)
    assert first.sha256 == hashlib.sha256(der).hexdigest()
    assert first.issuer == cert.issuer.rfc4514_string()
    assert first.not_after == cert.not_valid_after_utc
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert first.spki_sha256 == hashlib.sha256(spki).hexdigest()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    listed = [*san.get_values_for_type(x509.DNSName)]
    listed += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    assert list(first.sans) == listed[:SANS_MAX]
    assert first.key_type == ("RSA" if name == "rsa" else "EC")


def test_name_matches_are_kept_per_name_and_equal_the_uncached_answer() -> None:
    der = _der(CERTS["ip and wildcard"])
    facts = CertCache().facts(der)
    for host, expected in [
        ("mx.example.org", True),
        ("example.org", False),
        ("a.b.example.org", False),
        ("127.0.0.1", True),
        ("::1", True),
        ("10.0.0.1", False),
    ]:
        assert facts.names_host(host) is expected, host
        assert facts.names_host(host) is expected  # the kept answer
        assert facts.names[host] is expected


def test_the_cache_is_bounded_and_a_certificate_met_again_gets_equal_facts() -> None:
    cache = CertCache(maxsize=2)
    ders = [_der(leaf) for leaf in CERTS.values()]
    first = cache.facts(ders[0])
    for der in ders[1:]:
        cache.facts(der)
    assert len(cache) == 2
    again = cache.facts(ders[0])  # evicted, so computed again
    assert again is not first and _fields(again) == _fields(first)


def test_a_certificate_that_does_not_parse_is_not_kept() -> None:
    cache = CertCache()
    with pytest.raises(ValueError):
        cache.facts(b"\x30\x03\x02\x01\x00")
    assert len(cache) == 0


@pytest.fixture(scope="module")
def contexts() -> SslContexts:
    return build_ssl_contexts(cadata=CA.cert_pem.bytes().decode())


async def _check(port: int, contexts: SslContexts, verify: bool = True) -> CheckResult:
    config = SmtpConfig(tls_options=TlsOptions(reject_unauthorized=verify))
    job = make_job("smtp", port, config, hostname="localhost")
    return await run_check(job, "agent-t", True, contexts, clock=WALL)


def _expected(leaf: trustme.LeafCert, verified: bool, name_matched: bool) -> TlsInfo:
    der = _der(leaf)
    fresh = cert_facts(der)
    return TlsInfo(
        mode="starttls",
        cert_subject=fresh.subject,
        cert_not_after=fresh.not_after_iso,
        cert_days_left=(fresh.not_after - utcnow()).days,
        cert_sha256=hashlib.sha256(der).hexdigest(),
        cert_issuer=fresh.issuer,
        cert_sans=list(fresh.sans),
        cert_key_type=fresh.key_type,
        cert_key_bits=fresh.key_bits,
        cert_signature=fresh.signature,
        chain_verified=True if verified else None,
        name_matched=name_matched,
        cert_spki_sha256=fresh.spki_sha256,
    )


def _without_session(info: TlsInfo | None) -> TlsInfo:
    assert info is not None
    info.version = info.cipher = None
    return info


@pytest.mark.parametrize("verify", [True, False])
async def test_checks_report_the_served_certificate_and_new_facts_when_it_changes(
    contexts: SslContexts, verify: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls, "CERTS", CertCache())  # this test's own: the first check computes
    now = utcnow()
    old = CA.issue_cert("localhost", common_name="localhost", not_after=now + timedelta(days=20))
    new = CA.issue_cert("localhost", "mail.example", common_name="localhost")
    async with SmtpPeer(starttls=_server(old)) as peer:
        first = await _check(peer.port, contexts, verify)
        second = await _check(peer.port, contexts, verify)
    assert first.status == second.status == "up", (first.message, second.message)
    assert len(tls.CERTS) == 1
    expected = _expected(old, verify, True)
    assert _without_session(first.tls) == expected
    assert _without_session(second.tls) == expected
    # The same server, a new certificate for the same name.
    async with SmtpPeer(starttls=_server(new)) as peer:
        changed = await _check(peer.port, contexts, verify)
    assert changed.status == "up", changed.message
    assert len(tls.CERTS) == 2
    assert _without_session(changed.tls) == _expected(new, verify, True)
    changed_tls = cast(TlsInfo, changed.tls)  # not None: _without_session asserted it
    assert changed_tls.cert_sans == ["localhost", "mail.example"]
    assert changed_tls.cert_sha256 != expected.cert_sha256


async def test_an_unverified_check_matches_its_own_hostname_on_a_cached_certificate(
    contexts: SslContexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls, "CERTS", CertCache())
    leaf = CA.issue_cert("mail.example", common_name="mail.example")
    async with SmtpPeer(starttls=_server(leaf)) as peer:
        other = await _check(peer.port, contexts, verify=False)
        config = SmtpConfig(
            tls_options=TlsOptions(reject_unauthorized=False, servername="mail.example")
        )
        job = make_job("smtp", peer.port, config, hostname="localhost")
        named = await run_check(job, "agent-t", True, contexts, clock=WALL)
    assert len(tls.CERTS) == 1
    assert other.tls is not None and other.tls.name_matched is False
    assert named.tls is not None and named.tls.name_matched is True
    assert other.tls.cert_sha256 == named.tls.cert_sha256


def _sprawling_cert() -> bytes:
    """A self-signed certificate of ~90 KB: a subject and issuer of 600 attributes (no common
    name, so the whole subject is its name) and 12 names of 5,000 characters each."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit-{i:03d}" + "u" * 50)
            for i in range(600)
        ]
    )
    sans = [x509.DNSName(f"n{i}." + "d" * 5000 + ".example") for i in range(12)]
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def test_a_certificates_names_are_bounded_however_long_the_server_made_them() -> None:
    """Subject and issuer at most NAME_TEXT_MAX characters, each SAN at most SAN_MAX: a result
    carries at most ~28 KB of a certificate's names, whatever the ~100 KB OpenSSL takes."""
    der = _sprawling_cert()
    facts = cert_facts(der)
    assert len(der) > 60_000
    assert len(facts.subject) <= NAME_TEXT_MAX and len(facts.issuer) <= NAME_TEXT_MAX
    assert facts.subject.startswith("OU=unit-")
    assert len(facts.sans) == 12 and all(len(san) <= SAN_MAX for san in facts.sans)
