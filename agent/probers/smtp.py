"""SMTP prober (aiosmtplib, by the mail client: shared/mailclient/smtp.py), with nodemailer's
meaning of secure / ignoreTls / requireTls."""

import time

import aiosmtplib
import msgspec
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
)

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
    basic_auth_disabled,
    dummy_response,
    initial_response,
    offered,
    refusal,
    smtp_login,
)
from agent.probers.tls import handshake_done_at, tls_info
from shared.mailclient import smtp as client
from shared.messages import CheckJob, ErrorKind, SmtpCheckJob, SmtpConfig
from shared.sidechecks.relay import RelayTest


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
    quiet = Recorder(clock=rec.clock, deadline=rec.deadline)
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


async def open_smtp(target: Target, config: SmtpConfig, rec: Recorder) -> client.Client:
    """A session greeted, upgraded to TLS as `config` says and logged in when it has
    credentials (only over TLS unless `allowPlaintextAuth`). The caller closes it."""
    sock = await connect_socket(target, rec)
    smtp = client.client(sock, target.server_name, target.ssl_context, config.secure)
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
    except SMTPConnectError as exc:
        # aiosmtplib reads the greeting once the handshake is done: a server that hung up
        # then cut the greeting, not the handshake.
        if isinstance(exc.__cause__, SMTPServerDisconnected):
            rec.current = "greeting"
        raise
    end = time.perf_counter()
    if config.secure:
        ssl_object = smtp.get_transport_info("ssl_object")
        # aiosmtplib does the handshake and reads the greeting in one call; split it there.
        done = handshake_done_at(ssl_object) or start
        rec.record("tls", done - start)
        rec.record("greeting", end - done)
        rec.tls = tls_info(ssl_object, "implicit", rec.clock.now())
    else:
        rec.record("greeting", end - start)
    rec.set_banner(greeting.message)


async def _hello(smtp: client.Client, rec: Recorder) -> None:
    """EHLO, falling back to HELO for servers that only speak RFC 821."""
    rec.current = "ehlo"
    try:
        await smtp.ehlo()
    except SMTPResponseException as exc:
        if 400 <= exc.code < 500:
            raise ProbeFailure("temporary", f"EHLO refused: {exc.code} {exc.message}") from exc
    else:
        extensions = smtp.extensions
        rec.advertised(extensions.advertised if extensions is not None else ())
        return
    try:
        await smtp.helo()
    except SMTPResponseException as exc:
        raise ProbeFailure(reply_kind(exc.code), f"HELO refused: {exc.code} {exc.message}") from exc
    rec.advertised(())  # an RFC 821 server advertises nothing


async def _maybe_starttls(smtp: client.Client, config: SmtpConfig, rec: Recorder) -> None:
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
    rec.tls = tls_info(smtp.get_transport_info("ssl_object"), "starttls", rec.clock.now())
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
                initial, dummy = initial_response(login), dummy_response(login)
                await client.authenticate(smtp, login.mechanism, initial, dummy)
            else:
                await client.login_once(smtp, login.user, login.password)
        except SMTPAuthenticationError as exc:
            reply = f"{exc.code} {exc.message}"
            if (disabled := basic_auth_disabled(login, reply)) is not None:
                raise disabled from exc
            kind: ErrorKind = "temporary" if 400 <= exc.code < 500 else "auth"
            challenge = exc.challenge if isinstance(exc, client.SaslRefused) else None
            raise ProbeFailure(kind, refusal(login, reply, challenge)) from exc
        except SMTPResponseException as exc:
            reply = f"{exc.code} {exc.message}"
            if (disabled := basic_auth_disabled(login, reply)) is not None:
                raise disabled from exc
            raise ProbeFailure(reply_kind(exc.code), refusal(login, reply, None)) from exc
        except SMTPException as exc:  # e.g. no AUTH offered, or no mechanism in common
            raise ProbeFailure("auth", f"authentication impossible: {exc}") from exc


def _why_no_tls(config: SmtpConfig) -> str:
    return "ignoreTls is set" if config.ignore_tls else "the server does not offer STARTTLS"
