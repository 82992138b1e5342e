"""OAuth2 logins (XOAUTH2, OAUTHBEARER) against real servers: Debian's Dovecot validating JWT
access tokens with its OAuth2 passdb for IMAP and POP3, and Postfix submission authenticating
through Dovecot for SMTP. Tokens come from the loopback issuer (testkit/oauth2/issuer.py)."""

import pytest

from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.clock import WALL
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
)
from shared.secret import Secret
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.postfix import Postfix
from testkit.peers.jobs import make_job

USER = "alice@example.com"
MECHANISMS = ["XOAUTH2", "OAUTHBEARER"]
# What the servers' certificate names: the agent connects to 127.0.0.1 and checks that name.
TLS = TlsOptions(servername="localhost")


def smtp_job(port: int, token: str, mechanism: str, *, secure: bool = True) -> CheckJob:
    auth = SmtpAuth(user=USER, mechanism=mechanism, access_token=Secret(token))
    config = SmtpConfig(secure=secure, auth=auth, tls_options=TLS)
    return make_job("smtp", port, config, timeout=8.0)


def mailbox_job(
    protocol: str, port: int, token: str, mechanism: str, *, tls: bool = True
) -> CheckJob:
    config = ImapPopConfig(
        protocol="imap" if protocol == "imap" else "pop3",
        user=USER,
        mechanism=mechanism,
        access_token=Secret(token),
        tls=tls,
        tls_options=TLS,
    )
    return make_job("imap" if protocol == "imap" else "pop3", port, config, timeout=8.0)


async def check(job: CheckJob, contexts: SslContexts) -> CheckResult:
    return await run_check(job, "agent-oauth2", True, contexts, clock=WALL)


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("secure", [True, False], ids=["smtps", "starttls"])
async def test_smtp_oauth2_login_through_postfix_and_dovecot(
    submission: Postfix, imap_pop: Dovecot, ssl_contexts: SslContexts, mechanism: str, secure: bool
) -> None:
    token = imap_pop.issuer.issue(USER)
    port = submission.ports["smtps" if secure else "smtp"]
    result = await check(smtp_job(port, token, mechanism, secure=secure), ssl_contexts)
    assert result.status == "up", result.message
    assert result.logins == 1
    assert result.phases.auth_ms is not None
    assert "AUTH XOAUTH2 OAUTHBEARER" in (result.capabilities or [])


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("protocol", ["imap", "pop3"])
@pytest.mark.parametrize("tls", [True, False], ids=["implicit", "starttls"])
async def test_mailbox_oauth2_login_on_dovecot(
    imap_pop: Dovecot, ssl_contexts: SslContexts, protocol: str, mechanism: str, tls: bool
) -> None:
    token = imap_pop.issuer.issue(USER)
    port = imap_pop.ports[protocol + ("s" if tls else "")]
    result = await check(mailbox_job(protocol, port, token, mechanism, tls=tls), ssl_contexts)
    assert result.status == "up", result.message
    assert result.logins == 1
    assert result.tls is not None and result.tls.mode == ("implicit" if tls else "starttls")


def _refused_tokens(dc: Dovecot) -> dict[str, str]:
    return {
        "expired": dc.issuer.issue(USER, expires_in=-60),
        "wrong_scope": dc.issuer.issue(USER, audience="calendar"),
        "other_user": dc.issuer.issue("mallory@example.com"),
        "forged": dc.issuer.issue(USER, signed_by=dc.issuer.stranger_key(dc.issuer.kid)),
    }


@pytest.mark.parametrize("case", ["expired", "wrong_scope", "other_user", "forged"])
@pytest.mark.parametrize("protocol", ["smtp", "imap", "pop3"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_a_refused_token_is_auth_with_the_servers_words(
    submission: Postfix,
    imap_pop: Dovecot,
    ssl_contexts: SslContexts,
    protocol: str,
    mechanism: str,
    case: str,
) -> None:
    token = _refused_tokens(imap_pop)[case]
    if protocol == "smtp":
        job = smtp_job(submission.ports["smtps"], token, mechanism)
    else:
        job = mailbox_job(protocol, imap_pop.ports[protocol + "s"], token, mechanism)
    result = await check(job, ssl_contexts)
    assert result.status == "down"
    assert result.error_kind == "auth", result.message
    assert result.message.startswith(f"OAuth2 login ({mechanism}) refused:"), result.message
    # Dovecot's error challenge, decoded: RFC 7628's status (and for XOAUTH2 the scope).
    said = ["status 401", "scope mail"] if mechanism == "XOAUTH2" else ["status invalid_token"]
    assert "(the server said: status" in result.message, result.message
    assert all(words in result.message for words in said), result.message
    assert result.logins == 1
    assert token not in result.message


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_a_round_trip_with_oauth2_on_both_legs(
    submission: Postfix, imap_pop: Dovecot, ssl_contexts: SslContexts, protocol: str
) -> None:
    """Submitted to Postfix with XOAUTH2, delivered into Dovecot's maildir, found there with
    OAUTHBEARER; both legs' logins are counted."""
    send = RoundTripSend(
        secure=True,
        auth=SmtpAuth(
            user=USER, mechanism="XOAUTH2", access_token=Secret(imap_pop.issuer.issue(USER))
        ),
        tls_options=TLS,
        sender=USER,
    )
    receive = RoundTripReceive(
        protocol="imap" if protocol == "imap" else "pop3",
        hostname="127.0.0.1",
        port=imap_pop.ports[protocol + "s"],
        user=USER,
        mechanism="OAUTHBEARER",
        access_token=Secret(imap_pop.issuer.issue(USER)),
        tls=True,
        tls_options=TLS,
    )
    config = RoundTripConfig(send=send, to=USER, receive=receive)
    job = make_job("roundtrip", submission.ports["smtps"], config, timeout=15.0)
    result = await check(job, ssl_contexts)
    assert result.status == "up", result.message + submission.log()[-3000:]
    assert result.folder == "INBOX", submission.log()[-3000:]
    # The send leg's login and the mailbox leg's (POP3: one a look, so one or more).
    assert result.logins == 2 if protocol == "imap" else (result.logins or 0) >= 2
