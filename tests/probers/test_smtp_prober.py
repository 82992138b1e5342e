"""SMTP checks against a real aiosmtpd server and scripted peers on loopback."""

import base64
import ssl

import pytest

from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.clock import WALL
from shared.messages import (
    SECRET_MASK,
    CheckResult,
    SmtpAuth,
    SmtpConfig,
    TlsOptions,
    decode_result,
    encode,
)
from shared.secret import Secret
from testkit.peers.jobs import make_job
from testkit.peers.scripted import ScriptedPeer
from testkit.peers.smtp import SmtpPeer

GOOD = SmtpAuth(user="alice", password=Secret("s3cret"))
BAD = SmtpAuth(user="alice", password=Secret("wrong"))
# A scripted server that offers AUTH in the clear and says 250 to the rest.
AUTH_EHLO = b"250-auth.test\r\n250 AUTH PLAIN LOGIN\r\n"


async def smtp_check(
    port: int, config: SmtpConfig, contexts: SslContexts, hostname: str = "localhost"
) -> CheckResult:
    return await run_check(
        make_job("smtp", port, config, hostname=hostname), "agent-t", True, contexts, clock=WALL
    )


async def test_plain_smtp_is_up_with_banner_and_no_tls(ssl_contexts: SslContexts) -> None:
    async with SmtpPeer() as peer:
        result = await smtp_check(peer.port, SmtpConfig(), ssl_contexts, "127.0.0.1")
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert result.banner is not None and result.banner.startswith("mail.test")
    assert result.tls is None
    assert result.address == "127.0.0.1"
    phases = result.phases
    assert phases.dns_ms is not None and phases.connect_ms is not None
    assert phases.greeting_ms is not None
    assert phases.tls_ms is None and phases.auth_ms is None


async def test_starttls_is_used_when_offered(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    async with SmtpPeer(starttls=server_tls) as peer:
        result = await smtp_check(peer.port, SmtpConfig(auth=GOOD), ssl_contexts)
    assert result.status == "up", result.message
    assert result.tls is not None
    assert result.tls.version in {"TLSv1.2", "TLSv1.3"}
    assert (result.tls.cert_subject, result.tls.mode) == ("localhost", "starttls")
    assert result.tls.cert_days_left is not None and result.tls.cert_days_left > 0
    assert result.tls.cert_not_after is not None and result.tls.cert_not_after.endswith("Z")
    assert result.phases.tls_ms is not None and result.phases.auth_ms is not None
    assert [tls for tls, _ in peer.auths] == [True]


async def test_credentials_are_not_sent_when_the_server_offers_no_starttls(
    ssl_contexts: SslContexts,
) -> None:
    """A server (or anyone on the path) that offers no STARTTLS used to get AUTH PLAIN in the
    clear and the check said `up`; now the check is down and the server hears no AUTH."""
    async with SmtpPeer(auth_in_clear=True) as peer:
        result = await smtp_check(peer.port, SmtpConfig(auth=GOOD), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "tls_required"), result.message
    assert "does not offer STARTTLS" in result.message
    assert "credentials were not sent" in result.message
    assert result.phases.auth_ms is None
    assert peer.auths == []


async def test_ignore_tls_with_credentials_never_sends_them(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    async with SmtpPeer(starttls=server_tls, auth_in_clear=True) as peer:
        config = SmtpConfig(ignore_tls=True, auth=GOOD)
        result = await smtp_check(peer.port, config, ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "tls_required"), result.message
    assert "ignoreTls is set" in result.message and "not sent" in result.message
    assert peer.auths == []


async def test_allow_plaintext_auth_logs_in_without_tls(ssl_contexts: SslContexts) -> None:
    """The documented opt-in for lab servers: the credentials go out in the clear, as asked."""
    async with SmtpPeer(auth_in_clear=True) as peer:
        config = SmtpConfig(auth=GOOD, allow_plaintext_auth=True)
        result = await smtp_check(peer.port, config, ssl_contexts)
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert result.tls is None and result.phases.auth_ms is not None
    assert [tls for tls, _ in peer.auths] == [False]


async def test_implicit_tls_with_auth(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    async with SmtpPeer(implicit_tls=server_tls) as peer:
        result = await smtp_check(peer.port, SmtpConfig(secure=True, auth=GOOD), ssl_contexts)
    assert result.status == "up", result.message
    assert result.tls is not None and result.tls.cipher and result.tls.mode == "implicit"
    assert result.phases.tls_ms is not None and result.phases.greeting_ms is not None
    assert result.phases.auth_ms is not None


async def test_wrong_password_is_auth(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    async with SmtpPeer(starttls=server_tls) as peer:
        result = await smtp_check(peer.port, SmtpConfig(auth=BAD), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "auth")
    assert "535" in result.message
    assert "wrong" not in result.message
    # One login per check: the server offers PLAIN and LOGIN, and a rejection by the first is
    # not followed by another try (each would count against a lockout policy).
    assert [arg.split()[0] for _, arg in peer.auths] == ["PLAIN"]


async def test_auth_skipped_unless_user_and_pass_are_both_set(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    async with SmtpPeer(starttls=server_tls) as peer:
        config = SmtpConfig(auth=SmtpAuth(user="alice", password=Secret("")))
        result = await smtp_check(peer.port, config, ssl_contexts)
    assert result.status == "up", result.message
    assert result.phases.auth_ms is None


async def test_require_tls_without_starttls_is_tls_required(ssl_contexts: SslContexts) -> None:
    async with SmtpPeer() as peer:
        result = await smtp_check(peer.port, SmtpConfig(require_tls=True), ssl_contexts)
    assert result.error_kind == "tls_required"
    assert "STARTTLS" in result.message


async def test_ignore_tls_stays_plain_even_when_starttls_is_offered(
    ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    async with SmtpPeer(starttls=server_tls) as peer:
        result = await smtp_check(peer.port, SmtpConfig(ignore_tls=True), ssl_contexts)
        both = await smtp_check(
            peer.port, SmtpConfig(ignore_tls=True, require_tls=True), ssl_contexts
        )
    assert result.status == "up", result.message
    assert result.tls is None
    assert both.error_kind == "tls_required"


async def test_untrusted_certificate_fails_when_verified_passes_when_not(
    ssl_contexts: SslContexts, untrusted_tls: ssl.SSLContext
) -> None:
    async with SmtpPeer(implicit_tls=untrusted_tls) as peer:
        verified = await smtp_check(peer.port, SmtpConfig(secure=True), ssl_contexts)
        unverified = await smtp_check(
            peer.port,
            SmtpConfig(secure=True, tls_options=TlsOptions(reject_unauthorized=False)),
            ssl_contexts,
        )
    assert verified.error_kind == "tls"
    assert "certificate" in verified.message
    assert unverified.status == "up", unverified.message
    # certificate facts even without verification (getpeercert() would be empty)
    assert unverified.tls is not None and unverified.tls.cert_subject == "localhost"


async def test_untrusted_certificate_over_starttls_is_tls(
    ssl_contexts: SslContexts, untrusted_tls: ssl.SSLContext
) -> None:
    async with SmtpPeer(starttls=untrusted_tls) as peer:
        result = await smtp_check(peer.port, SmtpConfig(), ssl_contexts)
    assert result.error_kind == "tls", result.message


async def test_certificate_is_checked_against_the_hostname_not_the_ip(
    ssl_contexts: SslContexts, wrong_name_tls: ssl.SSLContext
) -> None:
    async with SmtpPeer(implicit_tls=wrong_name_tls) as peer:
        result = await smtp_check(peer.port, SmtpConfig(secure=True), ssl_contexts)
    assert result.error_kind == "tls"
    assert result.address == "127.0.0.1"


async def test_421_greeting_is_temporary(ssl_contexts: SslContexts) -> None:
    async with ScriptedPeer(b"421 mail.test too busy, try later\r\n") as peer:
        result = await smtp_check(peer.port, SmtpConfig(), ssl_contexts)
    assert result.error_kind == "temporary"
    assert result.banner == "421 mail.test too busy, try later"


async def test_554_greeting_is_protocol(ssl_contexts: SslContexts) -> None:
    async with ScriptedPeer(b"554 no service here\r\n") as peer:
        result = await smtp_check(peer.port, SmtpConfig(), ssl_contexts)
    assert result.error_kind == "protocol"


async def test_garbage_greeting_is_protocol(ssl_contexts: SslContexts) -> None:
    async with ScriptedPeer(b"SSH-2.0-OpenSSH_9.6\r\n") as peer:
        result = await smtp_check(peer.port, SmtpConfig(), ssl_contexts)
    assert result.error_kind == "protocol", result.message
    assert result.banner is not None and "SSH-2.0" in result.banner


async def test_helo_fallback_when_ehlo_is_refused(ssl_contexts: SslContexts) -> None:
    replies = {"EHLO": b"502 5.5.1 EHLO not implemented\r\n", "QUIT": b"221 bye\r\n"}
    async with ScriptedPeer(b"220 old.test SMTP\r\n", b"250 ok\r\n", replies) as peer:
        result = await smtp_check(peer.port, SmtpConfig(), ssl_contexts, "127.0.0.1")
    assert result.status == "up", result.message
    assert peer.commands[:2] == ["EHLO", "HELO"]


async def test_4xx_to_ehlo_is_temporary(ssl_contexts: SslContexts) -> None:
    replies = {"EHLO": b"451 4.3.0 local problem\r\n"}
    async with ScriptedPeer(b"220 flaky.test SMTP\r\n", b"250 ok\r\n", replies) as peer:
        result = await smtp_check(peer.port, SmtpConfig(), ssl_contexts, "127.0.0.1")
    assert result.error_kind == "temporary", result.message


async def test_a_latin1_greeting_gives_a_readable_banner_that_encodes(
    ssl_contexts: SslContexts,
) -> None:
    """aiosmtplib keeps undecodable bytes as lone surrogates; a result must still be JSON."""
    replies = {"QUIT": b"221 bye\r\n"}
    async with ScriptedPeer(b"220 mail.test Gr\xfc\xdfe\r\n", b"250 ok\r\n", replies) as peer:
        result = await smtp_check(peer.port, SmtpConfig(), ssl_contexts, "127.0.0.1")
    assert result.status == "up", result.message
    assert result.banner == "mail.test Gr\ufffd\ufffde"
    assert decode_result(encode(result)) == result


async def test_a_latin1_refusal_gives_a_readable_message_that_encodes(
    ssl_contexts: SslContexts,
) -> None:
    async with ScriptedPeer(b"554 Zugriff f\xfcr Sie verweigert\r\n") as peer:
        result = await smtp_check(peer.port, SmtpConfig(), ssl_contexts, "127.0.0.1")
    assert result.error_kind == "protocol"
    assert "Zugriff f\ufffdr Sie verweigert" in result.message
    assert decode_result(encode(result)) == result


@pytest.mark.parametrize("seconds", [3.0, 0.6])
async def test_a_server_that_never_answers_quit_is_still_up(
    seconds: float, ssl_contexts: SslContexts
) -> None:
    """QUIT gets at most 1 s, and never the check's own deadline, whichever comes first."""
    replies = {"QUIT": b""}  # never answered; the connection stays open
    async with ScriptedPeer(b"220 slow.test ESMTP\r\n", b"250 ok\r\n", replies) as peer:
        job = make_job("smtp", peer.port, hostname="127.0.0.1", timeout=seconds)
        result = await run_check(job, "agent-t", True, ssl_contexts, clock=WALL)
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert peer.commands[-1] == "QUIT"
    assert result.response_time_ms is not None
    assert result.response_time_ms < min(seconds, 1.0) * 1000 + 200


async def test_the_deadline_firing_during_quit_keeps_the_checks_answer(
    ssl_contexts: SslContexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a loaded loop the check's own deadline can beat QUIT's shorter budget; the answer was
    complete before QUIT, so the check stays up (it was `timeout … during quit` before)."""
    from agent.probers import base

    # QUIT's budget outlives the deadline whenever QUIT starts, so the deadline fires during it
    # however long a loaded machine took to get there (2 s to greet and EHLO).
    monkeypatch.setattr(base, "GOODBYE_S", 60.0)
    monkeypatch.setattr(base, "GOODBYE_MARGIN_S", -60.0)
    replies = {"QUIT": b""}
    async with ScriptedPeer(b"220 slow.test ESMTP\r\n", b"250 ok\r\n", replies) as peer:
        job = make_job("smtp", peer.port, hostname="127.0.0.1", timeout=2.0)
        result = await run_check(job, "agent-t", True, ssl_contexts, clock=WALL)
    assert peer.commands[-1] == "QUIT"
    assert (result.status, result.error_kind) == ("up", None), result.message


async def test_a_failure_reply_echoing_the_password_is_masked(ssl_contexts: SslContexts) -> None:
    password = "s3cr3t-pw"
    sent = base64.b64encode(f"\0alice\0{password}".encode()).decode()
    reply = f"535 5.7.8 no: {sent} is alice/{password}\r\n".encode()
    replies = {"EHLO": AUTH_EHLO, "AUTH": reply, "QUIT": b"221 bye\r\n"}
    async with ScriptedPeer(b"220 auth.test ESMTP\r\n", b"250 ok\r\n", replies) as peer:
        config = SmtpConfig(
            auth=SmtpAuth(user="alice", password=Secret(password)), allow_plaintext_auth=True
        )
        result = await smtp_check(peer.port, config, ssl_contexts, "127.0.0.1")
    assert result.error_kind == "auth", result.message
    assert "AUTH" in peer.commands
    assert password not in result.message and sent not in result.message
    assert result.message.endswith(f"no: {SECRET_MASK} is alice/{SECRET_MASK}")


async def test_credentials_with_a_line_break_are_refused_before_sending(
    ssl_contexts: SslContexts,
) -> None:
    replies = {"EHLO": AUTH_EHLO, "QUIT": b"221 bye\r\n"}
    async with ScriptedPeer(b"220 auth.test ESMTP\r\n", b"250 ok\r\n", replies) as peer:
        config = SmtpConfig(
            auth=SmtpAuth(user="alice", password=Secret("s3cret\r\nRSET")),
            allow_plaintext_auth=True,
        )
        result = await smtp_check(peer.port, config, ssl_contexts, "127.0.0.1")
    assert result.error_kind == "auth"
    assert "line break" in result.message
    assert "AUTH" not in peer.commands


async def test_starttls_with_an_untrusted_certificate_honours_reject_unauthorized(
    ssl_contexts: SslContexts, untrusted_tls: ssl.SSLContext
) -> None:
    unverified_config = SmtpConfig(auth=GOOD, tls_options=TlsOptions(reject_unauthorized=False))
    async with SmtpPeer(starttls=untrusted_tls) as peer:
        verified = await smtp_check(peer.port, SmtpConfig(auth=GOOD), ssl_contexts)
        unverified = await smtp_check(peer.port, unverified_config, ssl_contexts)
    assert verified.error_kind == "tls"
    assert "certificate verification failed" in verified.message
    assert verified.phases.auth_ms is None
    assert unverified.status == "up", unverified.message
    assert unverified.tls is not None and unverified.tls.cert_subject == "localhost"
    assert unverified.phases.tls_ms is not None and unverified.phases.auth_ms is not None


@pytest.mark.parametrize("secure", [True, False], ids=["smtps", "starttls"])
async def test_an_expired_certificate_is_tls_and_says_expired(
    secure: bool, ssl_contexts: SslContexts, expired_tls: ssl.SSLContext
) -> None:
    peer = SmtpPeer(implicit_tls=expired_tls) if secure else SmtpPeer(starttls=expired_tls)
    async with peer:
        result = await smtp_check(peer.port, SmtpConfig(secure=secure), ssl_contexts)
        unverified = await smtp_check(
            peer.port,
            SmtpConfig(secure=secure, tls_options=TlsOptions(reject_unauthorized=False)),
            ssl_contexts,
        )
    assert result.error_kind == "tls"
    assert "expired" in result.message
    assert unverified.status == "up", unverified.message
    assert unverified.tls is not None and unverified.tls.cert_days_left is not None
    assert unverified.tls.cert_days_left < -1  # expired two days ago
