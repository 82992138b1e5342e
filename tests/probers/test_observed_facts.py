"""What a result tells of the server besides up/down: what it advertised (SMTP EHLO, IMAP
CAPABILITY, POP3 CAPA), before and after a STARTTLS upgrade, and the certificate it served, with
the chain and the name as separate facts, also when the handshake refused the certificate."""

import hashlib
import ssl

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.clock import WALL
from shared.messages import (
    CheckResult,
    ImapPopConfig,
    MonitorType,
    SmtpAuth,
    SmtpConfig,
    TlsOptions,
)
from shared.secret import Secret
from testkit.peers.imap import ImapPeer
from testkit.peers.jobs import make_job
from testkit.peers.pop3 import Pop3Peer
from testkit.peers.smtp import SmtpPeer
from testkit.peers.tls import outdated

GOOD = SmtpAuth(user="alice", password=Secret("s3cret"))


class Served:
    """A server certificate and what the result should say of it."""

    def __init__(self, ca: trustme.CA, *names: str) -> None:
        leaf = ca.issue_cert(*names, common_name=names[0])
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(self.context)
        der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(
            Encoding.DER
        )
        self.sha256 = hashlib.sha256(der).hexdigest()


async def smtp(port: int, contexts: SslContexts, *, verify: bool = True) -> CheckResult:
    config = SmtpConfig(auth=GOOD, tls_options=TlsOptions(reject_unauthorized=verify))
    job = make_job("smtp", port, config, hostname="localhost")
    return await run_check(job, "agent-t", True, contexts, clock=WALL)


async def test_smtp_starttls_result_carries_capabilities_and_certificate_facts(
    ca: trustme.CA, ssl_contexts: SslContexts
) -> None:
    served = Served(ca, "localhost", "mail.example")
    async with SmtpPeer(starttls=served.context) as peer:
        result = await smtp(peer.port, ssl_contexts)
    assert result.status == "up", result.message
    assert result.capabilities_before_tls is not None
    assert "STARTTLS" in result.capabilities_before_tls
    assert result.capabilities is not None and "STARTTLS" not in result.capabilities
    assert any(c.startswith("AUTH ") and "PLAIN" in c for c in result.capabilities)
    tls = result.tls
    assert tls is not None
    assert tls.cert_sha256 == served.sha256
    assert tls.cert_sans == ["localhost", "mail.example"]
    assert tls.cert_issuer is not None and "trustme" in tls.cert_issuer.lower()
    assert (tls.cert_key_type, tls.cert_key_bits) in {("EC", 256), ("EC", 384), ("RSA", 2048)}
    assert tls.cert_signature is not None and "sha256" in tls.cert_signature.lower()
    assert (tls.chain_verified, tls.name_matched) == (True, True)


async def test_plain_smtp_without_starttls_has_capabilities_and_none_before_tls(
    ssl_contexts: SslContexts,
) -> None:
    async with SmtpPeer(auth_in_clear=True) as peer:
        result = await smtp(peer.port, ssl_contexts)
    assert result.capabilities is not None and "STARTTLS" not in result.capabilities
    assert result.capabilities_before_tls is None
    assert result.tls is None


@pytest.mark.parametrize(
    ("names", "trusted", "chain", "name"),
    [
        (("localhost",), False, False, True),
        (("other.example",), True, True, False),
        (("other.example",), False, False, False),
    ],
    ids=["untrusted", "wrong-name", "untrusted-and-wrong-name"],
)
async def test_a_refused_certificate_is_still_described_with_chain_and_name_apart(
    ca: trustme.CA,
    ssl_contexts: SslContexts,
    names: tuple[str, ...],
    trusted: bool,
    chain: bool,
    name: bool,
) -> None:
    """The verified handshake fails (`tls`); a second, unverified look reads the certificate
    without credentials, so the server never hears AUTH, and the result says which of chain and
    name failed."""
    served = Served(ca if trusted else trustme.CA(), *names)
    async with SmtpPeer(starttls=served.context) as peer:
        result = await smtp(peer.port, ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "tls"), result.message
    assert result.tls is not None and result.tls.cert_sha256 == served.sha256
    assert (result.tls.chain_verified, result.tls.name_matched) == (chain, name)
    assert peer.auths == []


async def test_unverified_monitor_learns_the_name_but_not_the_chain(
    ssl_contexts: SslContexts,
) -> None:
    served = Served(trustme.CA(), "other.example")
    async with SmtpPeer(starttls=served.context) as peer:
        result = await smtp(peer.port, ssl_contexts, verify=False)
    assert result.status == "up", result.message
    assert result.tls is not None
    assert (result.tls.chain_verified, result.tls.name_matched) == (None, False)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_imap_and_pop3_capabilities_before_and_after_the_upgrade(
    protocol: MonitorType, ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    upgrade = "STARTTLS" if protocol == "imap" else "STLS"
    config = ImapPopConfig(protocol="imap" if protocol == "imap" else "pop3")
    peer = ImapPeer(starttls=server_tls) if protocol == "imap" else Pop3Peer(starttls=server_tls)
    async with peer:
        job = make_job(protocol, peer.port, config, hostname="localhost")
        result = await run_check(job, "agent-t", True, ssl_contexts, clock=WALL)
    assert result.status == "up", result.message
    assert result.capabilities_before_tls is not None
    assert upgrade in result.capabilities_before_tls
    assert result.capabilities is not None and upgrade not in result.capabilities
    assert result.tls is not None and result.tls.mode == "starttls"


@pytest.mark.parametrize(
    ("tls10", "ciphers", "version", "cipher"),
    [
        (True, None, "TLSv1", None),
        (False, "ECDHE-ECDSA-NULL-SHA", "TLSv1.2", "ECDHE-ECDSA-NULL-SHA"),
    ],
    ids=["tls1.0-only", "null-cipher-only"],
)
async def test_a_server_stuck_with_old_tls_or_weak_ciphers_is_described(
    ca: trustme.CA,
    ssl_contexts: SslContexts,
    tls10: bool,
    ciphers: str | None,
    version: str,
    cipher: str | None,
) -> None:
    """The agent itself never speaks them (the check fails, `tls`); a second look that allows
    them, without credentials, says what the server is stuck with: whether a trusted chain
    vouches for its certificate too (verified first; a third look without when not)."""
    async with SmtpPeer(starttls=outdated(ca, tls10=tls10, ciphers=ciphers)) as peer:
        result = await smtp(peer.port, ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "tls"), result.message
    assert result.tls is not None and result.tls.version == version
    assert cipher is None or result.tls.cipher == cipher
    assert (result.tls.chain_verified, result.tls.name_matched) == (True, True)
    assert peer.auths == []
    untrusted = outdated(trustme.CA(), tls10=tls10, ciphers=ciphers)
    async with SmtpPeer(starttls=untrusted) as peer:
        result = await smtp(peer.port, ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "tls"), result.message
    assert result.tls is not None and result.tls.version == version
    assert (result.tls.chain_verified, result.tls.name_matched) == (None, True)
    assert peer.auths == []
