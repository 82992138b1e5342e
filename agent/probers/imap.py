"""IMAP prober: greeting, CAPABILITY, STARTTLS when offered on a plain connection, LOGIN (or
AUTHENTICATE with an OAuth2 mechanism) when credentials are set and the connection may carry
them, LOGOUT.

It speaks through the mail client (shared/mailclient/imap.py) on the socket it connected to the
resolved IP, with the monitor's hostname for SNI and the certificate check; it times the TLS
handshake and the greeting apart, and words every failure as a result.
"""

import asyncio
import time

from aioimaplib import Response

from agent.probers.base import (
    ProbeFailure,
    Recorder,
    Target,
    connect_socket,
    goodbye,
    refuse_line_breaks,
)
from agent.probers.mailbox_check import probe_mailbox_api
from agent.probers.sasl import (
    Login,
    basic_auth_disabled,
    dummy_response,
    initial_response,
    mailbox_login,
    offered,
    refusal,
)
from agent.probers.tls import tls_info
from shared.mailclient import imap as client
from shared.mailclient.errors import Injected, MailClientError, Refused
from shared.mailclient.imap import Bounds, ImapProtocol
from shared.messages import CheckJob, ErrorKind, ImapCheckJob, ImapPopConfig

# What one answer of a server may hold (shared.mailclient.imap.Bounds): a check's (greeting,
# CAPABILITY, LOGIN) is a few hundred bytes on a few lines; a round trip's mailbox also
# answers a FETCH of the headers of at most IMAP_NEWEST messages (agent/probers/roundtrip.py),
# as much as one POP3 TOP may be (TOP_MAX).
BOUNDS = Bounds(line_max=64 * 1024, answer_max=256 * 1024, answer_lines_max=128)
MAILBOX_BOUNDS = Bounds(line_max=64 * 1024, answer_max=4 * 1024 * 1024, answer_lines_max=256)


async def probe_imap(target: Target, job: CheckJob, rec: Recorder) -> None:
    if not isinstance(job, ImapCheckJob):
        raise TypeError(f"probe_imap got a {job.monitor_type} job")
    if job.config.api:
        await probe_mailbox_api(target, job, rec)
        return
    proto = await open_imap(target, job.config, rec)
    try:
        await logout(proto, rec)
    finally:
        client.close(proto)


async def open_imap(
    target: Target, config: ImapPopConfig, rec: Recorder, bounds: Bounds = BOUNDS
) -> ImapProtocol:
    """A session past the greeting, upgraded by STARTTLS when offered on a plain connection,
    and logged in when `config` has credentials (only over TLS unless `allowPlaintextAuth`),
    each answer within `bounds`. The caller closes it with `shared.mailclient.imap.close`."""
    sock = await connect_socket(target, rec)
    rec.current = "tls" if config.tls else "greeting"
    start = time.perf_counter()
    ctx = target.ssl_context if config.tls else None
    proto = await client.open_imap(sock, ctx, target.server_name, bounds)
    try:
        if config.tls:
            rec.record("tls", time.perf_counter() - start)
            rec.tls = tls_info(
                proto.transport.get_extra_info("ssl_object"), "implicit", rec.clock.now()
            )
        await _converse(proto, target, config, rec)
    except BaseException:
        client.close(proto)
        raise
    return proto


async def logout(proto: ImapProtocol, rec: Recorder) -> None:
    rec.current = "logout"
    # The server may also hang up right after its BYE, or say more than an answer holds.
    await goodbye(rec, proto.logout, asyncio.IncompleteReadError, MailClientError)


async def _converse(
    proto: ImapProtocol, target: Target, config: ImapPopConfig, rec: Recorder
) -> None:
    with rec.phase("greeting"):
        line = await proto.greeting
    rec.set_banner(line.decode("utf-8", "replace").removeprefix("* "))
    rec.current = "capability"
    failure = await proto.ready
    if failure is not None:
        kind: ErrorKind = "temporary" if line.upper().startswith(b"* BYE") else "protocol"
        raise ProbeFailure(kind, f"bad greeting or CAPABILITY: {failure}")
    rec.advertised(proto.capabilities)
    # STARTTLS is valid only before login (NONAUTH); a PREAUTH session never sends credentials.
    if not config.tls and proto.state == "NONAUTH" and "STARTTLS" in proto.capabilities:
        await _starttls(proto, target, rec)
    login = mailbox_login(config)
    if login is not None and proto.state == "NONAUTH":
        _may_log_in(proto, config, login)
        refuse_line_breaks(login.user, login.password)
        if login.oauth2:
            initial, dummy = initial_response(login), dummy_response(login)
            with rec.phase("auth"):
                response, challenge = await client.authenticate(
                    proto, login.mechanism, initial, dummy
                )
            _check_login(response, login, challenge)
            return
        with rec.phase("auth"):
            response = await client.login(proto, login.user, login.password)
        _check_login(response, login, None)


async def _starttls(proto: ImapProtocol, target: Target, rec: Recorder) -> None:
    """STARTTLS, the handshake (verified per tlsOptions), then CAPABILITY again: RFC 3501
    6.2.1 has the client forget what it learnt in the clear, where anyone could have written
    it (a LOGINDISABLED taken away, say)."""
    rec.upgrading()
    with rec.phase("tls"):
        try:
            await client.starttls(proto, target.ssl_context, target.server_name)
        except Refused as refused:
            said = f"{refused.status} {refused.said}".strip()
            raise ProbeFailure("protocol", f"STARTTLS refused: {said}") from None
        except Injected:
            raise ProbeFailure(
                "protocol",
                "the server sent more in the clear after its OK to STARTTLS; "
                "a sign of a man in the middle injecting commands, so the check stopped there",
            ) from None
    rec.tls = tls_info(proto.transport.get_extra_info("ssl_object"), "starttls", rec.clock.now())
    rec.current = "capability"
    try:
        await proto.capability()
    except Exception as exc:  # aioimaplib's Error: a CAPABILITY without IMAP4rev1
        raise ProbeFailure("protocol", f"bad CAPABILITY after STARTTLS: {exc}") from exc
    rec.advertised(proto.capabilities)


def _may_log_in(proto: ImapProtocol, config: ImapPopConfig, login: Login) -> None:
    """Refuse, before anything is sent, a login the connection must not carry."""
    if client.ssl_object(proto) is None and not config.allow_plaintext_auth:
        raise ProbeFailure(
            "tls_required",
            "the server does not offer STARTTLS, so the credentials were not sent "
            "(allowPlaintextAuth would send them without TLS)",
        )
    if login.oauth2:
        mechanisms = {c[5:] for c in proto.capabilities if c.upper().startswith("AUTH=")}
        offered(login.mechanism, {m.upper() for m in mechanisms}, "CAPABILITY AUTH=")
        return
    if "LOGINDISABLED" in proto.capabilities:
        raise ProbeFailure(
            "auth",
            "the server announces LOGINDISABLED: it refuses LOGIN on this connection, "
            "so the credentials were not sent",
        )


def _check_login(response: Response, login: Login, challenge: str | None) -> None:
    if response.result == "OK":
        return
    command = "AUTHENTICATE" if login.oauth2 else "LOGIN"
    reply = f"{command} {_text(response)}"
    if response.result != "NO":
        raise ProbeFailure("protocol", f"{command} failed: {_text(response)}")
    if (disabled := basic_auth_disabled(login, reply)) is not None:
        raise disabled
    if login.oauth2:
        raise ProbeFailure("auth", refusal(login, reply, challenge))
    raise ProbeFailure("auth", f"LOGIN failed: {_text(response)}")


def _text(response: Response) -> str:
    return f"{response.result} {client.text(response)}".strip()
