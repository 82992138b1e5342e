"""SMTP prober (aiosmtplib), with nodemailer's meaning of secure / ignoreTls / requireTls."""

import socket
import time

import aiosmtplib
import msgspec
from aiosmtplib import SMTPAuthenticationError, SMTPException, SMTPResponseException, SMTPStatus

from agent.probers.base import (
    BANNER_MAX,
    ProbeFailure,
    Recorder,
    Target,
    connect_socket,
    goodbye,
    refuse_line_breaks,
    reply_kind,
)
from agent.probers.relay import RECIPIENT, SENDER, relay_test
from agent.probers.sasl import (
    Login,
    basic_auth_disabled,
    dummy_response,
    initial_response,
    offered,
    refusal,
    smtp_login,
)
from agent.probers.tls import handshake_done_at, tls_info
from shared.messages import CheckJob, ErrorKind, SmtpCheckJob, SmtpConfig
from shared.sidechecks.relay import RelayTest

# Sent in EHLO/HELO. Computed once: aiosmtplib's default, socket.getfqdn(), may query DNS.
EHLO_NAME = socket.gethostname() or "mailprobe"


async def probe_smtp(target: Target, job: CheckJob, rec: Recorder) -> None:
    if not isinstance(job, SmtpCheckJob):
        raise TypeError(f"probe_smtp got a {job.monitor_type} job")
    config = job.config
    smtp = await open_smtp(target, config, rec)
    try:
        if config.relay_check and smtp_login(config) is None:
            rec.relay = await relay_test(smtp, rec)
        await close_smtp(smtp, rec)
    finally:
        smtp.close()
    if config.relay_check and smtp_login(config) is not None:
        await _relay_unauthenticated(target, config, rec)


async def _relay_unauthenticated(target: Target, config: SmtpConfig, rec: Recorder) -> None:
    """The relay test on a session of its own that does not log in (the check's did), greeted
    and upgraded as the check's; what that session sees stays out of the check's facts."""
    quiet = Recorder(deadline=rec.deadline)
    plain = msgspec.structs.replace(config, auth=None, relay_check=False)
    try:
        smtp = await open_smtp(target, plain, quiet)
    except (ProbeFailure, SMTPException, OSError) as exc:
        rec.relay = RelayTest(sender=SENDER, recipient=RECIPIENT, error=_failed(exc))
        return
    try:
        rec.relay = await relay_test(smtp, quiet)
        await close_smtp(smtp, quiet)
    finally:
        smtp.close()


def _failed(exc: BaseException) -> str:
    return f"no session for the test: {exc}"[:BANNER_MAX]


async def open_smtp(target: Target, config: SmtpConfig, rec: Recorder) -> aiosmtplib.SMTP:
    """A session greeted, upgraded to TLS as `config` says and logged in when it has
    credentials (only over TLS unless `allowPlaintextAuth`). The caller closes it."""
    sock = await connect_socket(target, rec)
    # The socket is already connected to the resolved IP; `hostname` is then only the name
    # for SNI and certificate checks (aiosmtplib passes it as server_hostname).
    smtp = aiosmtplib.SMTP(
        sock=sock,
        hostname=target.server_name,
        use_tls=config.secure,
        start_tls=False,
        tls_context=target.ssl_context,
        local_hostname=EHLO_NAME,
        timeout=None,  # the caller owns the deadline
    )
    try:
        await _greeting(smtp, config, rec)
        await _hello(smtp, rec)
        await _maybe_starttls(smtp, config, rec)
        await _maybe_auth(smtp, config, rec)
    except BaseException:
        smtp.close()
        raise
    return smtp


async def close_smtp(smtp: aiosmtplib.SMTP, rec: Recorder) -> None:
    rec.current = "quit"
    await goodbye(rec, smtp.quit, SMTPException)


async def _greeting(smtp: aiosmtplib.SMTP, config: SmtpConfig, rec: Recorder) -> None:
    rec.current = "tls handshake or greeting" if config.secure else "greeting"
    start = time.perf_counter()
    try:
        greeting = await smtp.connect()
    except SMTPResponseException as exc:
        rec.set_banner(f"{exc.code} {exc.message}" if exc.code > 0 else exc.message)
        raise ProbeFailure(reply_kind(exc.code), f"bad greeting: {rec.banner}") from exc
    end = time.perf_counter()
    if config.secure:
        ssl_object = smtp.get_transport_info("ssl_object")
        # aiosmtplib does the handshake and reads the greeting in one call; split it there.
        done = handshake_done_at(ssl_object) or start
        rec.record("tls", done - start)
        rec.record("greeting", end - done)
        rec.tls = tls_info(ssl_object, "implicit")
    else:
        rec.record("greeting", end - start)
    rec.set_banner(greeting.message)


async def _hello(smtp: aiosmtplib.SMTP, rec: Recorder) -> None:
    """EHLO, falling back to HELO for servers that only speak RFC 821."""
    rec.current = "ehlo"
    try:
        await smtp.ehlo()
    except SMTPResponseException as exc:
        if 400 <= exc.code < 500:
            raise ProbeFailure("temporary", f"EHLO refused: {exc.code} {exc.message}") from exc
    else:
        rec.advertised(f"{k} {v}" for k, v in smtp.esmtp_extensions.items())
        return
    try:
        await smtp.helo()
    except SMTPResponseException as exc:
        raise ProbeFailure(reply_kind(exc.code), f"HELO refused: {exc.code} {exc.message}") from exc
    rec.advertised(())  # an RFC 821 server advertises nothing


async def _maybe_starttls(smtp: aiosmtplib.SMTP, config: SmtpConfig, rec: Recorder) -> None:
    if config.secure:
        return
    if config.ignore_tls or not smtp.supports_extension("starttls"):
        if config.require_tls:
            raise ProbeFailure("tls_required", f"TLS is required but {_why_no_tls(config)}")
        return
    rec.upgrading()
    with rec.phase("tls"):
        try:
            await smtp.starttls()
        except SMTPResponseException as exc:
            raise ProbeFailure(
                reply_kind(exc.code), f"STARTTLS refused: {exc.code} {exc.message}"
            ) from exc
    rec.tls = tls_info(smtp.get_transport_info("ssl_object"), "starttls")
    await _hello(smtp, rec)  # RFC 3207: forget what was learnt before TLS and greet again


async def _maybe_auth(smtp: aiosmtplib.SMTP, config: SmtpConfig, rec: Recorder) -> None:
    login = smtp_login(config)
    if login is None:
        return
    if smtp.get_transport_info("ssl_object") is None and not config.allow_plaintext_auth:
        raise ProbeFailure(
            "tls_required",
            f"{_why_no_tls(config)}, so the credentials were not sent "
            "(allowPlaintextAuth would send them without TLS)",
        )
    # SMTP sends them base64-encoded, so nothing is injected; refused all the same, as IMAP
    # and POP3 do, so one monitor's bad credentials read the same whatever its protocol.
    refuse_line_breaks(login.user, login.password)
    if login.oauth2:
        offered(login.mechanism, {m.upper() for m in smtp.server_auth_methods}, "EHLO AUTH")
    with rec.phase("auth"):
        try:
            if login.oauth2:
                await _oauth2(smtp, login)
            else:
                await _login_once(smtp, login.user, login.password)
        except SMTPAuthenticationError as exc:
            reply = f"{exc.code} {exc.message}"
            if (disabled := basic_auth_disabled(login, reply)) is not None:
                raise disabled from exc
            kind: ErrorKind = "temporary" if 400 <= exc.code < 500 else "auth"
            challenge = exc.challenge if isinstance(exc, _Refused) else None
            raise ProbeFailure(kind, refusal(login, reply, challenge)) from exc
        except SMTPResponseException as exc:
            reply = f"{exc.code} {exc.message}"
            if (disabled := basic_auth_disabled(login, reply)) is not None:
                raise disabled from exc
            raise ProbeFailure(reply_kind(exc.code), refusal(login, reply, None)) from exc
        except SMTPException as exc:  # e.g. no AUTH offered, or no mechanism in common
            raise ProbeFailure("auth", f"authentication impossible: {exc}") from exc


# RFC 4954 4: an AUTH command with its initial response may be 12288 octets long; a longer
# one sends the response after the server's empty 334 instead.
_AUTH_LINE_MAX = 12288


async def _oauth2(smtp: aiosmtplib.SMTP, login: Login) -> None:
    """AUTH XOAUTH2 / OAUTHBEARER. A refusal raises `_Refused` with the server's final reply
    and the error challenge it sent before it (base64, as sent), which aiosmtplib's own
    auth_xoauth2 drops."""
    mechanism = login.mechanism.encode()
    response_b64 = initial_response(login).encode()
    if len(b"AUTH " + mechanism + b" " + response_b64 + b"\r\n") <= _AUTH_LINE_MAX:
        reply = await smtp.execute_command(b"AUTH", mechanism, response_b64)
    else:
        reply = await smtp.execute_command(b"AUTH", mechanism)
        if reply.code == SMTPStatus.auth_continue:
            reply = await smtp.execute_command(response_b64)
    challenge: str | None = None
    if reply.code == SMTPStatus.auth_continue:
        challenge = reply.message
        reply = await smtp.execute_command(dummy_response(login).encode())
    if reply.code != SMTPStatus.auth_successful:
        raise _Refused(reply.code, reply.message, challenge)


class _Refused(SMTPAuthenticationError):
    def __init__(self, code: int, message: str, challenge: str | None) -> None:
        super().__init__(code, message)
        self.challenge = challenge


# Replies that say the mechanism is not usable here, not that the credentials are wrong: the
# next mechanism may be tried (RFC 4954: 504 unrecognised, 534 too weak, 538 needs encryption).
_MECHANISM_REFUSED = frozenset({504, 534, 538})


async def _login_once(smtp: aiosmtplib.SMTP, user: str, password: str) -> None:
    """Log in with the first mechanism both sides support, moving on only when the server
    refuses the mechanism itself: aiosmtplib's `login` tries every mechanism after a rejection,
    so one check with a wrong password would be two or three failed logins, and lockout
    policies (fail2ban, mailcow) count each."""
    if not smtp.supports_extension("auth"):
        await smtp.login(user, password)  # raises its "AUTH not supported" SMTPException
        return
    refused: SMTPAuthenticationError | None = None
    for name in smtp.supported_auth_methods:
        try:
            await getattr(smtp, f"auth_{name.replace('-', '')}")(user, password)
        except SMTPAuthenticationError as exc:
            if exc.code not in _MECHANISM_REFUSED:
                raise
            refused = exc
        else:
            return
    raise refused or SMTPException("No suitable authentication method found.")


def _why_no_tls(config: SmtpConfig) -> str:
    return "ignoreTls is set" if config.ignore_tls else "the server does not offer STARTTLS"
