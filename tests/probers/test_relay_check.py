"""The open relay test against real servers (issue 58): Debian's Postfix on loopback as an
open relay and as a normal one, and an aiosmtpd server that takes logins. The test is MAIL
FROM, RCPT TO a foreign domain, RSET, QUIT: Postfix's own log of each session's commands shows
that DATA is never sent."""

import pytest

from agent.probers.relay import RECIPIENT, SENDER
from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.clock import WALL
from shared.messages import SmtpAuth, SmtpConfig
from shared.secret import Secret
from shared.sidechecks.relay import WIRE as RELAY
from testkit.peers.jobs import make_job
from testkit.peers.postfix import RelayPostfix, missing
from testkit.peers.smtp import SmtpPeer

needs_postfix = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@needs_postfix
@pytest.mark.parametrize(
    ("open_relay", "rcpt", "commands"),
    [
        (True, "250 2.1.5 Ok", "ehlo=1 mail=1 rcpt=1 rset=1 quit=1 commands=5"),
        (False, "554 5.7.1", "ehlo=1 mail=1 rcpt=0/1 rset=1 quit=1 commands=4/5"),
    ],
    ids=["open", "closed"],
)
async def test_postfix_open_or_closed_answers_rcpt_and_never_sees_data(
    ssl_contexts: SslContexts, open_relay: bool, rcpt: str, commands: str
) -> None:
    async with RelayPostfix(open_relay=open_relay) as postfix:
        job = make_job("smtp", postfix.port, SmtpConfig(relay_check=True))
        result = await run_check(job, "agent-1", True, ssl_contexts, clock=WALL)
        (session,) = await postfix.sessions(1)
    assert result.status == "up", result.message
    relay = RELAY.facts_of(result.side_checks)
    assert relay is not None and (relay.sender, relay.recipient) == (SENDER, RECIPIENT)
    assert relay.mail_from is not None and relay.mail_from.startswith("250")
    assert relay.rcpt_to is not None and relay.rcpt_to.startswith(rcpt), relay.rcpt_to
    assert relay.error == ""
    assert session.endswith(commands), session  # no data=, and the session reset and quit
    assert "data" not in session


@needs_postfix
async def test_no_relay_test_unless_the_config_asks(ssl_contexts: SslContexts) -> None:
    async with RelayPostfix(open_relay=True) as postfix:
        job = make_job("smtp", postfix.port, SmtpConfig())
        result = await run_check(job, "agent-1", True, ssl_contexts, clock=WALL)
        (session,) = await postfix.sessions(1)
    assert RELAY.facts_of(result.side_checks) is None
    assert session.endswith("ehlo=1 quit=1 commands=2"), session


async def test_a_check_that_logs_in_tests_relaying_on_a_session_that_does_not(
    ssl_contexts: SslContexts,
) -> None:
    """The relay question is about strangers: with credentials, the check logs in on its
    session and the test runs on another that never sends AUTH (the server saw one AUTH)."""
    async with SmtpPeer(users={"alice": "s3cret"}, auth_in_clear=True) as peer:
        config = SmtpConfig(
            relay_check=True,
            allow_plaintext_auth=True,
            auth=SmtpAuth(user="alice", password=Secret("s3cret")),
        )
        result = await run_check(
            make_job("smtp", peer.port, config), "a", True, ssl_contexts, clock=WALL
        )
    assert result.status == "up", result.message
    assert len(peer.auths) == 1 and result.logins == 1
    relay = RELAY.facts_of(result.side_checks)
    assert relay is not None and relay.rcpt_to is not None
    assert relay.rcpt_to.startswith("250")  # aiosmtpd with no handler hook takes any RCPT
    assert result.capabilities is not None and "AUTH LOGIN PLAIN" in result.capabilities
