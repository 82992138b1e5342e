"""The agent's OAuth2 rules against scripted loopback peers: no token over a connection without
TLS (unless the monitor opts into plaintext), none to a server that does not offer the
mechanism, none that could break the command; "basic authentication is disabled" answers to a
password login are their own error kind; a token never reaches a result, a log line or a repr."""

import asyncio
import base64
import logging
from typing import Literal

import pytest
import trustme
from structlog.testing import capture_logs

from agent.probers.run import run_check
from agent.probers.sasl import mailbox_login
from agent.probers.tls import SslContexts
from shared.clock import WALL
from shared.mailclient.sasl import describe_challenge
from shared.messages import (
    CheckJob,
    CheckResult,
    ImapPopConfig,
    RoundTripConfig,
    RoundTripReceive,
    RoundTripSend,
    SmtpAuth,
    SmtpConfig,
    TlsOptions,
    encode,
)
from shared.secret import Secret
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.postfix import Postfix
from testkit.peers.base import LoopbackServer
from testkit.peers.imap import ImapPeer
from testkit.peers.jobs import make_job
from testkit.peers.pop3 import Pop3Peer
from testkit.peers.scripted import ScriptedPeer

USER = "alice@example.com"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


def xoauth2(token: str = TOKEN) -> str:
    return base64.b64encode(f"user={USER}\x01auth=Bearer {token}\x01\x01".encode()).decode()


async def check(job: CheckJob, contexts: SslContexts) -> CheckResult:
    return await run_check(job, "agent-oauth2", True, contexts, clock=WALL)


def smtp(
    port: int, mechanism: str = "XOAUTH2", token: str = TOKEN, *, allow_plaintext_auth: bool = False
) -> CheckJob:
    auth = SmtpAuth(user=USER, mechanism=mechanism, access_token=Secret(token))
    return make_job("smtp", port, SmtpConfig(auth=auth, allow_plaintext_auth=allow_plaintext_auth))


def mailbox(protocol: str, port: int, mechanism: str = "XOAUTH2", **kw: object) -> CheckJob:
    config = ImapPopConfig(
        protocol="imap" if protocol == "imap" else "pop3",
        user=USER,
        mechanism=mechanism,
        access_token=Secret(TOKEN),
        **kw,  # type: ignore[arg-type]
    )
    return make_job("imap" if protocol == "imap" else "pop3", port, config)


# -- no TLS, no token ------------------------------------------------------------------------


async def test_smtp_without_starttls_never_sends_the_token(ssl_contexts: SslContexts) -> None:
    ehlo = b"250-plain.test\r\n250 AUTH XOAUTH2 OAUTHBEARER\r\n"
    async with ScriptedPeer(b"220 plain.test\r\n", replies={"EHLO": ehlo}) as peer:
        result = await check(smtp(peer.port), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "tls_required"), result.message
    assert "AUTH" not in peer.commands
    assert not any(TOKEN in line or xoauth2() in line for _, line in peer.heard)
    assert result.logins == 0


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_mailbox_without_starttls_never_sends_the_token(
    ssl_contexts: SslContexts, protocol: str
) -> None:
    peer: ImapPeer | Pop3Peer = ImapPeer() if protocol == "imap" else Pop3Peer()
    async with peer:
        result = await check(mailbox(protocol, peer.port), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "tls_required"), result.message
    assert not any(TOKEN in line or xoauth2() in line for _, line in peer.heard)
    assert result.logins == 0


async def test_plaintext_opt_in_sends_the_token_in_the_clear(ssl_contexts: SslContexts) -> None:
    """The monitor's allowPlaintextAuth covers tokens as it covers passwords."""
    ehlo = b"250-plain.test\r\n250 AUTH XOAUTH2\r\n"
    replies = {"EHLO": ehlo, "AUTH": b"235 2.7.0 Accepted\r\n"}
    async with ScriptedPeer(b"220 plain.test\r\n", replies=replies) as peer:
        result = await check(smtp(peer.port, allow_plaintext_auth=True), ssl_contexts)
    assert result.status == "up", result.message
    assert peer.heard_in_clear(f"AUTH XOAUTH2 {xoauth2()}")
    assert result.logins == 1


# -- what is refused before sending ----------------------------------------------------------


async def test_a_mechanism_the_server_does_not_offer_is_not_tried(
    ssl_contexts: SslContexts,
) -> None:
    ehlo = b"250-plain.test\r\n250 AUTH PLAIN LOGIN\r\n"
    async with ScriptedPeer(b"220 plain.test\r\n", replies={"EHLO": ehlo}) as peer:
        result = await check(
            smtp(peer.port, "OAUTHBEARER", allow_plaintext_auth=True), ssl_contexts
        )
    assert result.error_kind == "auth"
    assert "does not offer OAUTHBEARER" in result.message and "PLAIN" in result.message
    assert "AUTH" not in peer.commands
    assert result.logins == 0


@pytest.mark.parametrize(
    ("mechanism", "token", "says"),
    [
        ("SCRAM-SHA-1", TOKEN, "not one this agent knows"),
        ("XOAUTH2", "", "needs an access token"),
        ("XOAUTH2", "tok en\r\nQUIT", "not a bearer token"),
        ("OAUTHBEARER", "tok\x01en", "not a bearer token"),
    ],
)
async def test_a_login_the_agent_cannot_send_is_auth_before_any_byte(
    ssl_contexts: SslContexts, mechanism: str, token: str, says: str
) -> None:
    ehlo = b"250-plain.test\r\n250 AUTH XOAUTH2 OAUTHBEARER PLAIN\r\n"
    async with ScriptedPeer(b"220 plain.test\r\n", replies={"EHLO": ehlo}) as peer:
        result = await check(
            smtp(peer.port, mechanism, token, allow_plaintext_auth=True), ssl_contexts
        )
    assert result.error_kind == "auth"
    assert says in result.message, result.message
    assert "AUTH" not in peer.commands
    assert result.logins == 0


# -- "basic authentication is disabled" ------------------------------------------------------

MICROSOFT_SMTP = [
    b"535 5.7.139 Authentication unsuccessful, basic authentication is disabled. "
    b"[MW4PR03CA0001.namprd03.prod.outlook.com 2026-11-23T10:00:00.000Z 08DD]\r\n",
    b"550 5.7.30 Basic authentication is not supported for Client Submission.\r\n",
    b"534-5.7.9 Application-specific password required. For more information, go to\r\n"
    b"534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor\r\n",
]


@pytest.mark.parametrize("reply", MICROSOFT_SMTP, ids=["5.7.139", "5.7.30", "google-5.7.9"])
async def test_smtp_basic_auth_disabled_is_its_own_kind(
    ssl_contexts: SslContexts, reply: bytes
) -> None:
    replies = {"EHLO": b"250-o365.test\r\n250 AUTH PLAIN LOGIN XOAUTH2\r\n", "AUTH": reply}
    auth = SmtpAuth(user=USER, password=Secret("hunter2"))
    async with ScriptedPeer(b"220 o365.test\r\n", replies=replies) as peer:
        job = make_job("smtp", peer.port, SmtpConfig(auth=auth, allow_plaintext_auth=True))
        result = await check(job, ssl_contexts)
    assert result.error_kind == "basic_auth_disabled", result.message
    assert "switch the monitor to OAuth2" in result.message
    assert reply.split(b"\r\n")[0].decode()[4:20] in result.message
    assert result.logins == 1  # one AUTH PLAIN, never a second mechanism after it


async def test_a_wrong_password_is_still_auth(ssl_contexts: SslContexts) -> None:
    replies = {
        "EHLO": b"250-o365.test\r\n250 AUTH PLAIN\r\n",
        "AUTH": b"535 5.7.139 Authentication unsuccessful, the user credentials were "
        b"incorrect.\r\n",
    }
    async with ScriptedPeer(b"220 o365.test\r\n", replies=replies) as peer:
        auth = SmtpAuth(user=USER, password=Secret("hunter2"))
        job = make_job("smtp", peer.port, SmtpConfig(auth=auth, allow_plaintext_auth=True))
        result = await check(job, ssl_contexts)
    assert result.error_kind == "auth", result.message


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_mailbox_basic_auth_disabled_is_its_own_kind(
    ssl_contexts: SslContexts, protocol: str
) -> None:
    peer: ImapPeer | Pop3Peer
    if protocol == "imap":
        peer = ImapPeer(refusal="NO Basic authentication is disabled.", login_disabled="never")
    else:
        peer = Pop3Peer(refusal="-ERR Basic authentication is disabled.")
    async with peer:
        config = ImapPopConfig(
            protocol="imap" if protocol == "imap" else "pop3",
            user="alice",
            password=Secret("wrong"),
            allow_plaintext_auth=True,
        )
        job = make_job("imap" if protocol == "imap" else "pop3", peer.port, config)
        result = await check(job, ssl_contexts)
    assert result.error_kind == "basic_auth_disabled", result.message
    assert "switch the monitor to OAuth2" in result.message
    assert "Basic authentication is disabled." in result.message
    assert result.logins == 1


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_a_bare_login_failed_stays_auth(ssl_contexts: SslContexts, protocol: str) -> None:
    """Exchange Online answers a wrong password and a disabled basic auth alike on some
    tenants (`NO LOGIN failed.`, `-ERR Logon failure`): that is not enough to say which."""
    peer: ImapPeer | Pop3Peer
    if protocol == "imap":
        peer = ImapPeer(refusal="NO LOGIN failed.", login_disabled="never")
    else:
        peer = Pop3Peer(refusal="-ERR Logon failure: unknown user name or bad password.")
    async with peer:
        config = ImapPopConfig(
            protocol="imap" if protocol == "imap" else "pop3",
            user="alice",
            password=Secret("wrong"),
            allow_plaintext_auth=True,
        )
        job = make_job("imap" if protocol == "imap" else "pop3", peer.port, config)
        result = await check(job, ssl_contexts)
    assert result.error_kind == "auth", result.message


# -- secrets ---------------------------------------------------------------------------------


async def test_a_server_echoing_the_token_does_not_publish_it(ssl_contexts: SslContexts) -> None:
    replies = {
        "EHLO": b"250-echo.test\r\n250 AUTH XOAUTH2\r\n",
        "AUTH": f"535 5.7.8 bad token {TOKEN} in {xoauth2()}\r\n".encode(),
    }
    async with ScriptedPeer(b"220 echo.test\r\n", replies=replies) as peer:
        result = await check(smtp(peer.port, allow_plaintext_auth=True), ssl_contexts)
    assert result.error_kind == "auth"
    wire = encode(result).decode()
    assert TOKEN not in wire and xoauth2() not in wire
    assert "********" in result.message


def test_no_repr_shows_a_token() -> None:
    auth = SmtpAuth(user=USER, mechanism="XOAUTH2", access_token=Secret(TOKEN))
    receive = RoundTripReceive(user=USER, mechanism="OAUTHBEARER", access_token=Secret(TOKEN))
    roundtrip = RoundTripConfig(send=RoundTripSend(auth=auth), receive=receive)
    mailbox_config = ImapPopConfig(user=USER, mechanism="XOAUTH2", access_token=Secret(TOKEN))
    login = mailbox_login(mailbox_config)
    for thing in (auth, receive, roundtrip, mailbox_config, login, make_job("smtp", 1)):
        assert TOKEN not in repr(thing) and TOKEN not in str(thing)
    job = make_job("roundtrip", 25, roundtrip)
    assert TOKEN not in repr(job)


async def test_the_token_never_reaches_a_log_line(
    submission: Postfix,
    imap_pop: Dovecot,
    ca: trustme.CA,
    ssl_contexts: SslContexts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every OAuth2 login the rig can run, accepted and refused, with structlog captured and
    the libraries' own loggers (aioimaplib logs each line it sends at DEBUG) at DEBUG."""
    tls = TlsOptions(servername="localhost")
    good = imap_pop.issuer.issue(USER)
    expired = imap_pop.issuer.issue(USER, expires_in=-60)
    jobs: list[CheckJob] = []
    for token in (good, expired):
        for mechanism in ("XOAUTH2", "OAUTHBEARER"):
            auth = SmtpAuth(user=USER, mechanism=mechanism, access_token=Secret(token))
            jobs.append(
                make_job(
                    "smtp",
                    submission.ports["smtps"],
                    SmtpConfig(secure=True, auth=auth, tls_options=tls),
                    timeout=8.0,
                )
            )
            protocol: Literal["imap", "pop3"]
            for protocol in ("imap", "pop3"):
                config = ImapPopConfig(
                    protocol=protocol,
                    user=USER,
                    mechanism=mechanism,
                    access_token=Secret(token),
                    tls=True,
                    tls_options=tls,
                )
                port = imap_pop.ports[protocol + "s"]
                jobs.append(make_job(protocol, port, config, timeout=8.0))
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        results = [await check(job, ssl_contexts) for job in jobs]
    assert [r.status for r in results] == ["up"] * 6 + ["down"] * 6
    everything = repr(logs) + caplog.text + "".join(encode(r).decode() for r in results)
    for token in (good, expired):
        bearer = base64.b64encode(f"n,a={USER},\x01auth=Bearer {token}\x01\x01".encode())
        for form in (token, xoauth2(token), bearer.decode(), token.split(".")[2]):
            assert form not in everything


def test_describe_challenge_reads_rfc7628_and_google_shapes() -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    google = b64('{"status":"401","schemes":"bearer mail=","scope":"https://mail.google.com/"}')
    assert describe_challenge(google) == (
        "status 401, scope https://mail.google.com/, schemes bearer mail="
    )
    bearer = b64('{"status":"invalid_token","openid-configuration":"https://id.test/.well-known"}')
    assert describe_challenge(bearer) == (
        "status invalid_token, openid-configuration https://id.test/.well-known"
    )
    assert describe_challenge("not base64!") == "challenge 'not base64!'"
    assert describe_challenge("") == ""


class _NoSaslIrImap(LoopbackServer):
    """IMAP that offers AUTH=XOAUTH2 without SASL-IR: the initial response must come after
    its first continuation; a wrong token gets an error challenge, then NO."""

    def __init__(self, good: str) -> None:
        super().__init__()
        self.good = good

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        send("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] no SASL-IR here")
        while (line := await self.hear(reader, writer)) is not None:
            tag, _, rest = line.partition(" ")
            if rest.upper() == "CAPABILITY":
                send("* CAPABILITY IMAP4rev1 AUTH=XOAUTH2")
                send(f"{tag} OK done")
            elif rest.upper() == "AUTHENTICATE XOAUTH2":
                send("+ ")
                await writer.drain()
                answer = await self.hear(reader, writer)
                if answer == self.good:
                    send(f"{tag} OK authenticated")
                else:
                    challenge = base64.b64encode(b'{"status":"400","scope":"mail"}').decode()
                    send(f"+ {challenge}")
                    await writer.drain()
                    await self.hear(reader, writer)
                    send(f"{tag} NO [AUTHENTICATIONFAILED] token refused")
            elif rest.upper() == "LOGOUT":
                send("* BYE")
                send(f"{tag} OK bye")
            else:
                send(f"{tag} BAD {rest[:20]}")
            await writer.drain()


@pytest.mark.parametrize("accepted", [True, False])
async def test_imap_without_sasl_ir_sends_the_response_after_the_continuation(
    ssl_contexts: SslContexts, accepted: bool
) -> None:
    async with _NoSaslIrImap(xoauth2() if accepted else "something else") as peer:
        job = mailbox("imap", peer.port, allow_plaintext_auth=True)
        result = await check(job, ssl_contexts)
    assert any(line.endswith("AUTHENTICATE XOAUTH2") for _, line in peer.heard)
    if accepted:
        assert result.status == "up", result.message
    else:
        assert result.error_kind == "auth"
        assert "token refused (the server said: status 400, scope mail)" in result.message
    assert result.logins == 1
