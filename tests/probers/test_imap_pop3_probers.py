"""IMAP and POP3 checks against the small loopback peers, with and without TLS."""

import ssl

import pytest

from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.clock import WALL
from shared.messages import (
    SECRET_MASK,
    CheckResult,
    ImapPopConfig,
    MonitorType,
    TlsOptions,
    decode_result,
    encode,
)
from shared.secret import Secret
from testkit.peers.base import LoopbackServer
from testkit.peers.imap import ImapPeer
from testkit.peers.jobs import make_job
from testkit.peers.pop3 import Pop3Peer
from testkit.peers.scripted import ScriptedPeer

PROTOCOLS: list[MonitorType] = ["imap", "pop3"]


def peer_for(protocol: MonitorType, tls: ssl.SSLContext | None) -> LoopbackServer:
    return ImapPeer(ssl_context=tls) if protocol == "imap" else Pop3Peer(ssl_context=tls)


async def check(
    protocol: MonitorType,
    port: int,
    contexts: SslContexts,
    *,
    tls: bool,
    user: str = "",
    password: str = "",
    verify: bool = True,
    allow_plaintext: bool = False,
) -> CheckResult:
    config = ImapPopConfig(
        protocol="imap" if protocol == "imap" else "pop3",
        user=user,
        password=Secret(password),
        tls=tls,
        tls_options=TlsOptions(reject_unauthorized=verify),
        allow_plaintext_auth=allow_plaintext,
    )
    job = make_job(protocol, port, config, hostname="localhost")
    return await run_check(job, "agent-t", True, contexts, clock=WALL)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_plain_login_is_up_when_allowed(
    protocol: MonitorType, ssl_contexts: SslContexts
) -> None:
    """allowPlaintextAuth, the opt-in for lab servers: the login goes out in the clear."""
    async with peer_for(protocol, None) as peer:
        result = await check(
            protocol,
            peer.port,
            ssl_contexts,
            tls=False,
            user="alice",
            password="s3cret",
            allow_plaintext=True,
        )
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert result.tls is None
    assert peer.heard_in_clear("s3cret")
    assert result.banner is not None and "test" in result.banner
    assert result.phases.greeting_ms is not None and result.phases.auth_ms is not None


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_implicit_tls_login_is_up(
    protocol: MonitorType, ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    async with peer_for(protocol, server_tls) as peer:
        result = await check(
            protocol, peer.port, ssl_contexts, tls=True, user="alice", password="s3cret"
        )
    assert result.status == "up", result.message
    assert result.tls is not None and result.tls.cert_subject == "localhost"
    assert result.tls.mode == "implicit"
    assert result.phases.tls_ms is not None


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_wrong_password_is_auth(protocol: MonitorType, ssl_contexts: SslContexts) -> None:
    async with peer_for(protocol, None) as peer:
        result = await check(
            protocol,
            peer.port,
            ssl_contexts,
            tls=False,
            user="alice",
            password="nope",
            allow_plaintext=True,
        )
    assert (result.status, result.error_kind) == ("down", "auth"), result.message
    assert "nope" not in result.message


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_no_credentials_means_no_login(
    protocol: MonitorType, ssl_contexts: SslContexts
) -> None:
    async with peer_for(protocol, None) as peer:
        result = await check(protocol, peer.port, ssl_contexts, tls=False, user="alice")
    assert result.status == "up", result.message
    assert result.phases.auth_ms is None
    assert isinstance(peer, ImapPeer | Pop3Peer)
    assert not {"LOGIN", "USER", "PASS"} & set(peer.commands)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_untrusted_certificate_honours_reject_unauthorized(
    protocol: MonitorType, ssl_contexts: SslContexts, untrusted_tls: ssl.SSLContext
) -> None:
    async with peer_for(protocol, untrusted_tls) as peer:
        verified = await check(protocol, peer.port, ssl_contexts, tls=True)
        unverified = await check(protocol, peer.port, ssl_contexts, tls=True, verify=False)
    assert verified.error_kind == "tls", verified.message
    assert unverified.status == "up", unverified.message


async def test_imap_bye_greeting_is_temporary(ssl_contexts: SslContexts) -> None:
    async with ImapPeer(greeting="* BYE too many connections") as peer:
        result = await check("imap", peer.port, ssl_contexts, tls=False)
    assert result.error_kind == "temporary", result.message


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_garbage_greeting_is_protocol(
    protocol: MonitorType, ssl_contexts: SslContexts
) -> None:
    async with ScriptedPeer(b"220 this is an SMTP server\r\n") as peer:
        result = await check(protocol, peer.port, ssl_contexts, tls=False)
    assert result.error_kind == "protocol", result.message


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_latin1_greeting_gives_a_readable_banner_that_encodes(
    protocol: MonitorType, ssl_contexts: SslContexts
) -> None:
    peer: LoopbackServer
    if protocol == "imap":
        peer = ImapPeer(greeting=b"* OK Gr\xfc\xdfe aus Berlin\r\n")
    else:
        peer = Pop3Peer(greeting=b"+OK Gr\xfc\xdfe aus Berlin\r\n")
    async with peer:
        result = await check(protocol, peer.port, ssl_contexts, tls=False)
    assert result.status == "up", result.message
    assert result.banner is not None and "Gr\ufffd\ufffde aus Berlin" in result.banner
    assert decode_result(encode(result)) == result


async def test_pop3_without_credentials_greets_and_quits_without_stat(
    ssl_contexts: SslContexts,
) -> None:
    """STAT is only valid after login (RFC 1939); the peer, like Dovecot, answers -ERR before."""
    async with Pop3Peer() as peer:
        result = await check("pop3", peer.port, ssl_contexts, tls=False)
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert peer.commands == ["CAPA", "QUIT"]


async def test_pop3_with_credentials_sends_stat_after_login(ssl_contexts: SslContexts) -> None:
    async with Pop3Peer() as peer:
        result = await check(
            "pop3",
            peer.port,
            ssl_contexts,
            tls=False,
            user="alice",
            password="s3cret",
            allow_plaintext=True,
        )
    assert result.status == "up", result.message
    assert peer.commands == ["CAPA", "USER", "PASS", "STAT", "QUIT"]


@pytest.mark.parametrize("user", ["alice smith", 'alice "al" smith', "alice\\smith"])
async def test_imap_user_names_with_spaces_quotes_or_backslashes_log_in(
    user: str, ssl_contexts: SslContexts
) -> None:
    password = 'pa ss"word\\'
    async with ImapPeer(users={user: password}) as peer:
        result = await check(
            "imap",
            peer.port,
            ssl_contexts,
            tls=False,
            user=user,
            password=password,
            allow_plaintext=True,
        )
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert "LOGIN" in peer.commands


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("user", "password"), [("alice", "s3cret\r\nLOGOUT"), ("alice\nx", "s3cret")]
)
async def test_credentials_with_a_line_break_are_refused_before_sending(
    protocol: MonitorType, user: str, password: str, ssl_contexts: SslContexts
) -> None:
    async with peer_for(protocol, None) as peer:
        result = await check(
            protocol,
            peer.port,
            ssl_contexts,
            tls=False,
            user=user,
            password=password,
            allow_plaintext=True,
        )
    assert (result.status, result.error_kind) == ("down", "auth"), result.message
    assert "line break" in result.message
    assert isinstance(peer, ImapPeer | Pop3Peer)
    assert not {"LOGIN", "USER", "PASS"} & set(peer.commands)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_server_that_never_answers_the_goodbye_is_still_up(
    protocol: MonitorType, ssl_contexts: SslContexts
) -> None:
    """LOGOUT / QUIT get at most 1 s: a server that never answers them does not make the check a
    timeout, nor keep it waiting longer."""
    peer: ImapPeer | Pop3Peer
    if protocol == "imap":
        peer = ImapPeer(silent=frozenset({"LOGOUT"}))
    else:
        peer = Pop3Peer(silent=frozenset({"QUIT"}))
    async with peer:
        result = await check(
            protocol,
            peer.port,
            ssl_contexts,
            tls=False,
            user="alice",
            password="s3cret",
            allow_plaintext=True,
        )
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert peer.commands[-1] in {"LOGOUT", "QUIT"}
    assert result.response_time_ms is not None and result.response_time_ms < 1200


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_failure_reply_echoing_the_password_is_masked(
    protocol: MonitorType, ssl_contexts: SslContexts
) -> None:
    peer = ImapPeer(echo_password=True) if protocol == "imap" else Pop3Peer(echo_password=True)
    async with peer:
        result = await check(
            protocol,
            peer.port,
            ssl_contexts,
            tls=False,
            user="alice",
            password="hunter2-pw",
            allow_plaintext=True,
        )
    assert (result.status, result.error_kind) == ("down", "auth"), result.message
    assert "hunter2-pw" not in result.message
    assert f"password {SECRET_MASK}" in result.message


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_expired_certificate_is_tls_and_says_expired(
    protocol: MonitorType, ssl_contexts: SslContexts, expired_tls: ssl.SSLContext
) -> None:
    async with peer_for(protocol, expired_tls) as peer:
        result = await check(protocol, peer.port, ssl_contexts, tls=True)
    assert result.error_kind == "tls"
    assert "expired" in result.message


class _LongCapaPeer(Pop3Peer):
    """Answers CAPA with 256 KiB of capability lines, as a hostile server could."""

    def capabilities(self, tls: bool) -> list[str]:
        return [f"X-FILLER-{n:06d} " + "x" * 240 for n in range(1024)]


async def test_a_pop3_capa_answer_past_its_bound_is_protocol_and_read_no_further(
    ssl_contexts: SslContexts,
) -> None:
    """CAPA's answer is read up to 64 KiB (the mail client's bound, as the report reader's): a
    server sending more gets a protocol failure, the connection dropped, no login."""
    async with _LongCapaPeer() as peer:
        result = await check(
            "pop3", peer.port, ssl_contexts, tls=False, user="alice", password="s3cret"
        )
    assert (result.status, result.error_kind) == ("down", "protocol"), result.message
    assert result.message == "an answer longer than 65536 bytes"
    assert "USER" not in peer.commands
