"""`tlsOptions.ca` and `tlsOptions.servername`: a server whose certificate comes from a private CA
(one the test makes, trusted by nobody else) is verified with that CA, on every kind and both ways
of reaching TLS, against real loopback servers."""

import ssl

import pytest
import trustme

from agent.probers.run import run_check
from agent.probers.tls import SslContexts, ca_context
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
from testkit.peers.base import LoopbackServer
from testkit.peers.imap import ImapPeer
from testkit.peers.jobs import make_job
from testkit.peers.pop3 import Pop3Peer
from testkit.peers.smtp import SmtpPeer

INTERNAL = "mail.corp.internal"


@pytest.fixture(scope="module")
def private_ca() -> trustme.CA:
    return trustme.CA(organization_name="Corp private CA")


@pytest.fixture(scope="module")
def private_pem(private_ca: trustme.CA) -> str:
    return private_ca.cert_pem.bytes().decode()


def _serving(ca: trustme.CA, name: str) -> tuple[ssl.SSLContext, str]:
    """A server context with a certificate for `name` from `ca`, and that certificate's PEM."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert = ca.issue_cert(name, common_name=name)
    cert.configure_cert(ctx)
    return ctx, cert.cert_chain_pems[0].bytes().decode()


@pytest.fixture(scope="module")
def private_tls(private_ca: trustme.CA) -> ssl.SSLContext:
    return _serving(private_ca, "localhost")[0]


def _peer(kind: str, tls: ssl.SSLContext) -> LoopbackServer | SmtpPeer:
    if kind == "smtps":
        return SmtpPeer(implicit_tls=tls)
    if kind == "smtp+starttls":
        return SmtpPeer(starttls=tls)
    protocol, _, how = kind.partition("+")
    server_tls = tls if how == "tls" else None
    starttls = tls if how == "starttls" else None
    if protocol == "imap":
        return ImapPeer(ssl_context=server_tls, starttls=starttls)
    return Pop3Peer(ssl_context=server_tls, starttls=starttls)


async def _check(
    kind: str, port: int, contexts: SslContexts, options: TlsOptions, hostname: str = "localhost"
) -> CheckResult:
    config: SmtpConfig | ImapPopConfig
    monitor_type: MonitorType
    if kind.startswith("smtp"):
        monitor_type = "smtp"
        config = SmtpConfig(secure=kind == "smtps", require_tls=True, tls_options=options)
    else:
        monitor_type = "imap" if kind.startswith("imap") else "pop3"
        config = ImapPopConfig(
            protocol=monitor_type, tls=kind.endswith("+tls"), tls_options=options
        )
    job = make_job(monitor_type, port, config, hostname=hostname)
    return await run_check(job, "agent-t", True, contexts, clock=WALL)


KINDS = ["smtps", "smtp+starttls", "imap+tls", "imap+starttls", "pop3+tls", "pop3+starttls"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_private_ca_verifies_with_ca_and_fails_without_or_with_another(
    kind: str,
    ssl_contexts: SslContexts,
    private_tls: ssl.SSLContext,
    private_pem: str,
    ca: trustme.CA,
) -> None:
    """With the CA the check is up and TLS is verified; without it (the agent's trust store)
    and with another CA (the one the agent trusts for everything else) it is a `tls` failure:
    a named CA replaces the trust store, it does not add to it."""
    other_pem = ca.cert_pem.bytes().decode()
    async with _peer(kind, private_tls) as peer:
        with_ca = await _check(kind, peer.port, ssl_contexts, TlsOptions(ca=private_pem))
        without = await _check(kind, peer.port, ssl_contexts, TlsOptions())
        wrong = await _check(kind, peer.port, ssl_contexts, TlsOptions(ca=other_pem))
    assert (with_ca.status, with_ca.error_kind) == ("up", None), with_ca.message
    assert with_ca.tls is not None and with_ca.tls.cert_subject == "localhost"
    for failed in (without, wrong):
        assert (failed.status, failed.error_kind) == ("down", "tls"), failed.message
        assert "certificate verification failed" in failed.message


async def test_a_named_ca_replaces_the_agents_trust_store(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext, private_pem: str
) -> None:
    """A server the agent trusts by default is refused when the monitor names another CA (node's
    `ca` semantics): naming a CA pins the server to it."""
    async with SmtpPeer(implicit_tls=server_tls) as peer:
        default = await _check("smtps", peer.port, ssl_contexts, TlsOptions())
        pinned_elsewhere = await _check(
            "smtps", peer.port, ssl_contexts, TlsOptions(ca=private_pem)
        )
    assert default.status == "up", default.message
    assert pinned_elsewhere.error_kind == "tls", pinned_elsewhere.message


async def test_a_pinned_server_certificate_is_a_trust_anchor(
    ssl_contexts: SslContexts, private_ca: trustme.CA
) -> None:
    """`ca` may hold the server's own certificate (not its CA): a pin."""
    tls, leaf_pem = _serving(private_ca, "localhost")
    async with SmtpPeer(implicit_tls=tls) as peer:
        result = await _check("smtps", peer.port, ssl_contexts, TlsOptions(ca=leaf_pem))
    assert result.status == "up", result.message


@pytest.mark.parametrize("kind", ["smtp+starttls", "imap+tls", "pop3+starttls"])
async def test_servername_is_sent_and_checked_instead_of_the_hostname(
    kind: str, ssl_contexts: SslContexts, private_ca: trustme.CA, private_pem: str
) -> None:
    """The agent connects to 127.0.0.1 and checks the certificate against `servername`: up with
    it, a hostname mismatch without it, and a mismatch with a servername the certificate lacks."""
    tls = _serving(private_ca, INTERNAL)[0]
    named = TlsOptions(ca=private_pem, servername=INTERNAL)
    async with _peer(kind, tls) as peer:
        ok = await _check(kind, peer.port, ssl_contexts, named, hostname="127.0.0.1")
        by_ip = await _check(
            kind, peer.port, ssl_contexts, TlsOptions(ca=private_pem), hostname="127.0.0.1"
        )
        other = await _check(
            kind,
            peer.port,
            ssl_contexts,
            TlsOptions(ca=private_pem, servername="mail.example"),
            hostname="127.0.0.1",
        )
    assert ok.status == "up", ok.message
    assert ok.address == "127.0.0.1"
    for failed in (by_ip, other):
        assert failed.error_kind == "tls", failed.message
        assert "mismatch" in failed.message or "match" in failed.message


async def test_a_ca_that_is_not_pem_is_a_tls_failure_and_nothing_is_sent(
    ssl_contexts: SslContexts, private_tls: ssl.SSLContext
) -> None:
    """The API refuses such a CA; an agent given one anyway (an older controller, a bug) reports
    `tls` before it connects, and the credentials stay home."""
    bad = TlsOptions(ca="-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    config = SmtpConfig(auth=SmtpAuth(user="alice", password=Secret("s3cret")), tls_options=bad)
    async with SmtpPeer(starttls=private_tls) as peer:
        result = await run_check(
            make_job("smtp", peer.port, config, hostname="localhost"),
            "agent-t",
            True,
            ssl_contexts,
            clock=WALL,
        )
    assert (result.status, result.error_kind) == ("down", "tls"), result.message
    assert "tlsOptions.ca" in result.message
    assert peer.auths == []


def test_one_context_per_distinct_ca(private_pem: str) -> None:
    """The context for a CA is built once and reused by every check naming that CA."""
    other = trustme.CA().cert_pem.bytes().decode()
    assert ca_context(private_pem) is ca_context(private_pem)
    assert ca_context(other) is not ca_context(private_pem)
