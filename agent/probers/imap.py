"""IMAP prober: greeting, CAPABILITY, STARTTLS when offered on a plain connection, LOGIN (or
AUTHENTICATE with an OAuth2 mechanism) when credentials are set and the connection may carry
them, LOGOUT.

It drives aioimaplib's protocol class over a transport it opens itself: `IMAP4(host=...)`
resolves the name again and cannot send a different SNI name than the host it dials, while
`create_connection(sock=..., server_hostname=...)` connects to the resolved IP and still checks
the certificate against the monitor's hostname. It also lets the TLS handshake and the greeting
be timed apart. aioimaplib has no STARTTLS of its own: the prober sends the command and
upgrades the transport with the event loop's `start_tls`.
"""

import asyncio
import time
from typing import Any

from aioimaplib import Command, IMAP4ClientProtocol, quoted

from agent.probers.base import (
    ProbeFailure,
    Recorder,
    Target,
    connect_socket,
    goodbye,
    refuse_line_breaks,
)
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
from shared.messages import CheckJob, ErrorKind, ImapCheckJob, ImapPopConfig


class _ProbeProtocol(IMAP4ClientProtocol):  # type: ignore[misc]
    """Exposes the greeting line, and the outcome of the greeting + CAPABILITY exchange that
    aioimaplib runs in a background task, as futures the prober can await; notes anything the
    server sends in the clear after it said OK to STARTTLS."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # No `conn_lost_cb`: a bound method of its own would make the protocol (and the TLS
        # session it holds) a reference cycle, freed only by the cyclic garbage collector.
        super().__init__(loop)
        self.greeting: asyncio.Future[bytes] = loop.create_future()
        # None when ready, else what went wrong (kept as a value: no unretrieved exceptions).
        self.ready: asyncio.Future[BaseException | None] = loop.create_future()
        self.starttls_ok: bytes | None = None  # "<tag> OK" of a STARTTLS in progress
        self.cleartext_over = False  # that OK came; TLS has not started yet
        self.injected = False
        # An AUTHENTICATE in progress: what answers the server's continuations, in turn
        # (base64, sent as they are), and the error challenge it sent, if any.
        self.sasl_answers: list[str] | None = None
        self.sasl_challenge: str | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._lost(exc)

    def _lost(self, exc: Exception | None) -> None:
        for fut in (self.greeting, self.ready):
            if not fut.done():
                fut.set_exception(exc or ConnectionResetError("connection closed by the server"))
                fut.exception()  # mark retrieved: the prober may be past this point

    async def welcome(self, command: bytes) -> None:
        if not self.greeting.done():
            self.greeting.set_result(command)
        try:
            await super().welcome(command)
        except Exception as exc:  # a bad greeting or a CAPABILITY without IMAP4rev1
            if not self.ready.done():
                self.ready.set_result(exc)
        else:
            if not self.ready.done():
                self.ready.set_result(None)

    def _handle_line(self, line: bytes, current_cmd: Any) -> Any:
        # aioimaplib's hook for each line received. After the OK to STARTTLS a server sends
        # nothing until the handshake: more is a man in the middle's (RFC 3501 6.2.1).
        if self.cleartext_over:
            self.injected = True
            return None
        if self.starttls_ok is not None and line.startswith(self.starttls_ok):
            self.cleartext_over = True
        if self.sasl_answers is not None and current_cmd is None and line.startswith(b"+"):
            self._sasl_continue(line[1:].strip().decode("ascii", "replace"))
            return None
        return super()._handle_line(line, current_cmd)

    def _sasl_continue(self, challenge: str) -> None:
        """Answer a continuation of AUTHENTICATE: the next answer in turn; once they are
        spent, the server's challenge is its error (RFC 7628 3.2.2), kept, and answered with
        the last (the dummy response) so that it sends its tagged NO."""
        assert self.sasl_answers is not None
        if len(self.sasl_answers) > 1:
            answer = self.sasl_answers.pop(0)
        else:
            self.sasl_challenge = challenge
            answer = self.sasl_answers[0] if self.sasl_answers else ""
            self.sasl_answers = []
        self.transport.write(answer.encode("ascii") + b"\r\n")


async def probe_imap(target: Target, job: CheckJob, rec: Recorder) -> None:
    if not isinstance(job, ImapCheckJob):
        raise TypeError(f"probe_imap got a {job.monitor_type} job")
    proto = await open_imap(target, job.config, rec)
    try:
        await logout(proto, rec)
    finally:
        close_imap(proto)


async def open_imap(target: Target, config: ImapPopConfig, rec: Recorder) -> IMAP4ClientProtocol:
    """A session past the greeting, upgraded by STARTTLS when offered on a plain connection,
    and logged in when `config` has credentials (only over TLS unless `allowPlaintextAuth`).
    The caller closes it with `close_imap`."""
    sock = await connect_socket(target, rec)
    loop = asyncio.get_running_loop()
    proto = _ProbeProtocol(loop)
    rec.current = "tls" if config.tls else "greeting"
    start = time.perf_counter()
    try:
        transport, _ = await loop.create_connection(
            lambda: proto,
            sock=sock,
            ssl=target.ssl_context if config.tls else None,
            server_hostname=target.server_name if config.tls else None,
        )
    except BaseException:
        sock.close()
        raise
    try:
        if config.tls:
            rec.record("tls", time.perf_counter() - start)
            rec.tls = tls_info(transport.get_extra_info("ssl_object"), "implicit")
        await _converse(proto, target, config, rec)
    except BaseException:
        close_imap(proto)
        raise
    return proto


def close_imap(proto: IMAP4ClientProtocol) -> None:
    for task in list(proto.tasks):
        task.cancel()
    proto.transport.close()  # the TLS one after STARTTLS, which closes the socket's too


async def logout(proto: IMAP4ClientProtocol, rec: Recorder) -> None:
    rec.current = "logout"
    # The server may also hang up right after its BYE.
    await goodbye(rec, proto.logout, asyncio.IncompleteReadError)


async def _converse(
    proto: _ProbeProtocol, target: Target, config: ImapPopConfig, rec: Recorder
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
            with rec.phase("auth"):
                response = await _authenticate(proto, login)
            _check_login(response, login, proto.sasl_challenge)
            proto.state = "AUTH"
            return
        with rec.phase("auth"):
            # aioimaplib quotes the password but sends the user as it is: a space or a `"` in
            # it would make the command malformed (BAD), so quote it as the password is.
            response = await proto.login(quoted(login.user), login.password)
        _check_login(response, login, None)


async def _authenticate(proto: _ProbeProtocol, login: Login) -> Any:
    """AUTHENTICATE with an OAuth2 mechanism (RFC 3501 6.2.2): the initial response on the
    command line when the server takes it (SASL-IR, RFC 4959), else after its first
    continuation; an error challenge is answered with the dummy response."""
    initial = initial_response(login)
    args = [login.mechanism]
    if "SASL-IR" in proto.capabilities:
        args.append(initial)
        proto.sasl_answers = [dummy_response(login)]
    else:
        proto.sasl_answers = [initial, dummy_response(login)]
    proto.sasl_challenge = None
    command = Command("AUTHENTICATE", proto.new_tag(), *args, loop=asyncio.get_running_loop())
    try:
        # `scrub`: aioimaplib's debug log of what it sends shows the line without it.
        return await proto.execute(command, scrub=initial)
    finally:
        proto.sasl_answers = None


async def _starttls(proto: _ProbeProtocol, target: Target, rec: Recorder) -> None:
    """STARTTLS, the handshake (verified per tlsOptions), then CAPABILITY again: RFC 3501
    6.2.1 has the client forget what it learnt in the clear, where anyone could have written
    it (a LOGINDISABLED taken away, say)."""
    loop = asyncio.get_running_loop()
    rec.upgrading()
    with rec.phase("tls"):
        tag = proto.new_tag()
        proto.starttls_ok = f"{tag} OK".encode()
        response = await proto.execute(Command("STARTTLS", tag, loop=loop))
        if response.result != "OK":
            raise ProbeFailure("protocol", f"STARTTLS refused: {_text(response)}")
        if proto.injected or proto.incomplete_line:
            raise ProbeFailure(
                "protocol",
                "the server sent more in the clear after its OK to STARTTLS; "
                "a sign of a man in the middle injecting commands, so the check stopped there",
            )
        proto.transport = await loop.start_tls(
            proto.transport, proto, target.ssl_context, server_hostname=target.server_name
        )
        proto.starttls_ok, proto.cleartext_over = None, False
    rec.tls = tls_info(proto.transport.get_extra_info("ssl_object"), "starttls")
    rec.current = "capability"
    try:
        await proto.capability()
    except Exception as exc:  # aioimaplib's Error: a CAPABILITY without IMAP4rev1
        raise ProbeFailure("protocol", f"bad CAPABILITY after STARTTLS: {exc}") from exc
    rec.advertised(proto.capabilities)


def _may_log_in(proto: _ProbeProtocol, config: ImapPopConfig, login: Login) -> None:
    """Refuse, before anything is sent, a login the connection must not carry."""
    if proto.transport.get_extra_info("ssl_object") is None and not config.allow_plaintext_auth:
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


def _check_login(response: Any, login: Login, challenge: str | None) -> None:
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


def _text(response: Any) -> str:
    text = b" ".join(response.lines).decode("utf-8", "replace")
    return f"{response.result} {text}".strip()
