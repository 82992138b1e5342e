"""IMAP and POP3 on a plain connection: upgraded with STARTTLS / STLS when the server offers it,
and credentials never sent without TLS unless the monitor opts in (allowPlaintextAuth).

The peers record every line they heard and whether TLS protected it, so each test can say
where the password went, if anywhere.
"""

import ssl

import pytest

from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.clock import WALL
from shared.messages import CheckResult, ImapPopConfig, MonitorType, TlsOptions
from shared.secret import Secret
from testkit.peers.imap import ImapPeer
from testkit.peers.jobs import make_job
from testkit.peers.pop3 import Pop3Peer

PROTOCOLS: list[MonitorType] = ["imap", "pop3"]
PASSWORD = "s3cret"
LOGIN_VERBS = {"LOGIN", "USER", "PASS"}


async def check(
    protocol: MonitorType,
    port: int,
    contexts: SslContexts,
    *,
    password: str = PASSWORD,
    tls: bool = False,
    verify: bool = True,
    allow_plaintext: bool = False,
) -> CheckResult:
    config = ImapPopConfig(
        protocol="imap" if protocol == "imap" else "pop3",
        user="alice" if password else "",
        password=Secret(password),
        tls=tls,
        tls_options=TlsOptions(reject_unauthorized=verify),
        allow_plaintext_auth=allow_plaintext,
    )
    return await run_check(
        make_job(protocol, port, config, hostname="localhost"),
        "agent-t",
        True,
        contexts,
        clock=WALL,
    )


def peer_for(
    protocol: MonitorType, starttls: ssl.SSLContext | None = None, **options: object
) -> ImapPeer | Pop3Peer:
    if protocol == "imap":
        return ImapPeer(starttls=starttls, **options)  # type: ignore[arg-type]
    return Pop3Peer(starttls=starttls, **options)  # type: ignore[arg-type]


def never_heard_the_password(peer: ImapPeer | Pop3Peer) -> bool:
    return not any(PASSWORD in line for _, line in peer.heard)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_credentials_are_not_sent_when_the_server_offers_no_upgrade(
    protocol: MonitorType, ssl_contexts: SslContexts
) -> None:
    """Before: LOGIN / USER+PASS went out in the clear on 143 / 110 and the check was `up`."""
    async with peer_for(protocol) as peer:
        result = await check(protocol, peer.port, ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "tls_required"), result.message
    assert "the credentials were not sent" in result.message
    assert "allowPlaintextAuth" in result.message
    assert result.phases.auth_ms is None and result.tls is None
    assert never_heard_the_password(peer)
    assert not LOGIN_VERBS & set(peer.commands)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_connection_is_upgraded_when_offered_and_the_login_goes_over_tls(
    protocol: MonitorType, ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    async with peer_for(protocol, server_tls) as peer:
        result = await check(protocol, peer.port, ssl_contexts)
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert result.tls is not None
    assert (result.tls.mode, result.tls.cert_subject) == ("starttls", "localhost")
    assert result.tls.version in {"TLSv1.2", "TLSv1.3"}
    phases = result.phases
    assert None not in (phases.greeting_ms, phases.tls_ms, phases.auth_ms)
    assert not peer.heard_in_clear(PASSWORD)
    assert any(tls and PASSWORD in line for tls, line in peer.heard)
    # capabilities read again once TLS is on (RFC 3501 6.2.1, RFC 2595 section 4)
    if protocol == "imap":
        assert peer.commands == ["CAPABILITY", "STARTTLS", "CAPABILITY", "LOGIN", "LOGOUT"]
    else:
        assert peer.commands == ["CAPA", "STLS", "CAPA", "USER", "PASS", "STAT", "QUIT"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_without_credentials_the_connection_is_still_upgraded_when_offered(
    protocol: MonitorType, ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    async with peer_for(protocol, server_tls) as peer:
        result = await check(protocol, peer.port, ssl_contexts, password="")
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert result.tls is not None and result.tls.mode == "starttls"
    assert result.phases.tls_ms is not None and result.phases.auth_ms is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_without_credentials_a_server_without_upgrade_is_still_up_in_the_clear(
    protocol: MonitorType, ssl_contexts: SslContexts
) -> None:
    async with peer_for(protocol) as peer:
        result = await check(protocol, peer.port, ssl_contexts, password="")
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert result.tls is None and result.phases.tls_ms is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_untrusted_certificate_on_the_upgrade_is_tls_and_the_password_stays_home(
    protocol: MonitorType, ssl_contexts: SslContexts, untrusted_tls: ssl.SSLContext
) -> None:
    async with peer_for(protocol, untrusted_tls) as peer:
        verified = await check(protocol, peer.port, ssl_contexts)
        assert never_heard_the_password(peer)
        unverified = await check(protocol, peer.port, ssl_contexts, verify=False)
    assert (verified.status, verified.error_kind) == ("down", "tls"), verified.message
    assert "certificate verification failed" in verified.message
    assert verified.phases.auth_ms is None
    assert (unverified.status, unverified.error_kind) == ("up", None), unverified.message
    assert unverified.tls is not None and unverified.tls.cert_subject == "localhost"
    assert not peer.heard_in_clear(PASSWORD)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_expired_certificate_on_the_upgrade_is_tls(
    protocol: MonitorType, ssl_contexts: SslContexts, expired_tls: ssl.SSLContext
) -> None:
    async with peer_for(protocol, expired_tls) as peer:
        result = await check(protocol, peer.port, ssl_contexts)
    assert result.error_kind == "tls" and "expired" in result.message, result.message
    assert never_heard_the_password(peer)


@pytest.mark.parametrize(
    ("protocol", "injected"),
    [
        ("imap", b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"),
        ("imap", b"* OK [ALERT] half a li"),
        ("pop3", b"+OK injected\r\n"),
        ("pop3", b"-ERR half a li"),
    ],
)
async def test_cleartext_after_the_ok_to_the_upgrade_stops_the_check(
    protocol: MonitorType,
    injected: bytes,
    ssl_contexts: SslContexts,
    server_tls: ssl.SSLContext,
) -> None:
    """Bytes after the OK and before the handshake would be read as if TLS had brought them:
    that is how a man in the middle injects responses (the STARTTLS injection attacks)."""
    async with peer_for(protocol, server_tls, after_starttls=injected) as peer:
        result = await check(protocol, peer.port, ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "protocol"), result.message
    assert "man in the middle" in result.message
    assert result.tls is None
    assert never_heard_the_password(peer)


@pytest.mark.parametrize(
    ("protocol", "reply", "said"),
    [("imap", "NO STARTTLS not now", "STARTTLS refused"), ("pop3", "-ERR not now", "STLS failed")],
)
async def test_a_refused_upgrade_is_a_failure_and_sends_no_credentials(
    protocol: MonitorType,
    reply: str,
    said: str,
    ssl_contexts: SslContexts,
    server_tls: ssl.SSLContext,
) -> None:
    option = {"starttls_reply" if protocol == "imap" else "stls_reply": reply}
    async with peer_for(protocol, server_tls, **option) as peer:
        result = await check(protocol, peer.port, ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "protocol"), result.message
    assert said in result.message and "not now" in result.message
    assert never_heard_the_password(peer)


async def test_a_pop3_server_without_capa_gets_no_credentials_in_the_clear(
    ssl_contexts: SslContexts,
) -> None:
    """A server older than RFC 2449 answers -ERR to CAPA: it offers no STLS."""
    async with Pop3Peer(capa=False) as peer:
        result = await check("pop3", peer.port, ssl_contexts)
        bare = await check("pop3", peer.port, ssl_contexts, password="")
    assert result.error_kind == "tls_required", result.message
    assert never_heard_the_password(peer)
    assert (bare.status, bare.error_kind) == ("up", None), bare.message


@pytest.mark.parametrize("tls", [False, True], ids=["plain-allowed", "implicit-tls"])
async def test_imap_logindisabled_means_no_login_is_sent(
    tls: bool, ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    """RFC 3501 6.2.3: with LOGINDISABLED the client MUST NOT send LOGIN, even where the
    monitor allows plaintext or TLS is on."""
    peer = ImapPeer(ssl_context=server_tls if tls else None, login_disabled="always")
    async with peer:
        result = await check("imap", peer.port, ssl_contexts, tls=tls, allow_plaintext=True)
    assert (result.status, result.error_kind) == ("down", "auth"), result.message
    assert "LOGINDISABLED" in result.message and "not sent" in result.message
    assert "LOGIN" not in peer.commands


async def test_imap_logindisabled_before_tls_is_forgotten_after_the_upgrade(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    """Dovecot's default: LOGINDISABLED in the clear, gone once STARTTLS is done."""
    async with ImapPeer(starttls=server_tls, login_disabled="until_tls") as peer:
        result = await check("imap", peer.port, ssl_contexts)
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert "LOGINDISABLED" in peer.capabilities(tls=False)
    assert peer.commands.count("LOGIN") == 1


async def test_imap_capabilities_in_the_greeting_are_read_again_and_upgraded(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    """Dovecot's greeting carries its capabilities; the upgrade happens all the same."""
    greeting = "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] Dovecot ready."
    async with ImapPeer(starttls=server_tls, greeting=greeting) as peer:
        result = await check("imap", peer.port, ssl_contexts)
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert result.tls is not None and result.tls.mode == "starttls"
    assert not peer.heard_in_clear(PASSWORD)
