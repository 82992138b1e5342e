"""POP3 prober: greeting, CAPA and STLS when offered on a plain connection (RFC 2449, 2595),
USER/PASS (or AUTH with an OAuth2 mechanism, RFC 5034) and STAT when credentials are set and
the connection may carry them, QUIT (RFC 1939).

STAT is valid only in the TRANSACTION state, after a successful login: servers answer -ERR to it
before (Dovecot: "-ERR Unknown command"), so a check without credentials stops at the greeting.

It speaks through the mail client (shared/mailclient/pop3.py) and words its failures as a
result's (`spoken`).
"""

import time
from types import TracebackType

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
from shared.mailclient.errors import (
    AnswerTooLong,
    ConnectionClosed,
    ConnectionFailed,
    Injected,
    LineTooLong,
    Refused,
)
from shared.mailclient.pop3 import Pop3, SaslRefused, said
from shared.messages import CheckJob, ErrorKind, ImapPopConfig, Pop3CheckJob

LINE_LIMIT = 8192


async def probe_pop3(target: Target, job: CheckJob, rec: Recorder) -> None:
    if not isinstance(job, Pop3CheckJob):
        raise TypeError(f"probe_pop3 got a {job.monitor_type} job")
    pop = await open_pop3(target, job.config, rec)
    try:
        if mailbox_login(job.config) is not None:
            rec.current = "stat"
            await command(pop, "STAT", "STAT", "protocol")
        await quit_pop3(pop, rec)
    except BaseException:
        pop.abort()
        raise
    pop.close()


async def open_pop3(target: Target, config: ImapPopConfig, rec: Recorder) -> Pop3:
    """A session past the greeting, upgraded by STLS when offered on a plain connection, and
    logged in when `config` has credentials (only over TLS unless `allowPlaintextAuth`)."""
    sock = await connect_socket(target, rec)
    rec.current = "tls" if config.tls else "greeting"
    start = time.perf_counter()
    ctx = target.ssl_context if config.tls else None
    pop = await Pop3.open(sock, ctx, target.server_name, line_max=LINE_LIMIT)
    try:
        if config.tls:
            rec.record("tls", time.perf_counter() - start)
            rec.tls = tls_info(pop.writer.get_extra_info("ssl_object"), "implicit", rec.clock.now())
        await _converse(pop, target, config, rec)
    except BaseException:
        pop.abort()
        raise
    return pop


async def quit_pop3(pop: Pop3, rec: Recorder) -> None:
    rec.current = "quit"
    await goodbye(rec, lambda: command(pop, "QUIT", "QUIT", "protocol"), ProbeFailure)


class _Spoken:
    """The mail client's failures worded as a check's; a socket's error as it was raised, for
    `run_check` to word by the phase it cut short. A class, not a generator: it is entered for
    every line a check reads."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, ConnectionClosed):
            raise ProbeFailure("protocol", "connection closed by the server") from exc
        if isinstance(exc, LineTooLong):
            raise ProbeFailure("protocol", f"reply line longer than {LINE_LIMIT} bytes") from exc
        if isinstance(exc, AnswerTooLong):
            raise ProbeFailure("protocol", f"an answer longer than {exc.limit} bytes") from exc
        if isinstance(exc, ConnectionFailed):
            raise exc.error from None


spoken = _Spoken()


async def _converse(pop: Pop3, target: Target, config: ImapPopConfig, rec: Recorder) -> None:
    with rec.phase("greeting"):
        greeting = await read_line(pop)
    rec.set_banner(greeting.removeprefix("+OK").strip() or greeting)
    if not greeting.startswith("+OK"):
        raise ProbeFailure("protocol", f"bad greeting: {greeting[:200]}")
    login = mailbox_login(config)
    capa: frozenset[str] | None = None
    if not config.tls:
        capa = await _capa(pop, rec)
        if "STLS" in capa:
            capa = await _stls(pop, target, rec)
    if login is None:
        return
    if pop.ssl_object is None and not config.allow_plaintext_auth:
        raise ProbeFailure(
            "tls_required",
            "the server does not offer STLS, so the credentials were not sent "
            "(allowPlaintextAuth would send them without TLS)",
        )
    refuse_line_breaks(login.user, login.password)
    if login.oauth2:
        if capa is None:  # implicit TLS: CAPA, over TLS, says which SASL mechanisms it takes
            capa = await _capa(pop, rec)
        offered(login.mechanism, _sasl_mechanisms(capa), "CAPA SASL")
        with rec.phase("auth"):
            await _auth(pop, login)
        return
    with rec.phase("auth"):
        try:
            await command(pop, f"USER {login.user}", "USER", "auth")
            await command(pop, f"PASS {login.password}", "PASS", "auth")
        except ProbeFailure as failure:
            raise basic_auth_disabled(login, failure.message) or failure from None


async def _auth(pop: Pop3, login: Login) -> None:
    """AUTH with an OAuth2 mechanism (RFC 5034); an error challenge is answered with the dummy
    response, and the server's -ERR then is the refusal."""
    with spoken:
        try:
            await pop.authenticate(login.mechanism, initial_response(login), dummy_response(login))
        except SaslRefused as refused:
            reply = f"AUTH {refused.said}"
            raise ProbeFailure("auth", refusal(login, reply, refused.challenge)) from None


def _sasl_mechanisms(capa: frozenset[str]) -> set[str]:
    return {name.removeprefix("SASL ") for name in capa if name.startswith("SASL ")}


async def _capa(pop: Pop3, rec: Recorder) -> frozenset[str]:
    """The capability names CAPA lists (its lines go to `rec`), and each `SASL` line's mechanisms
    as `SASL <mechanism>`; none from a server older than RFC 2449 (-ERR)."""
    rec.current = "capability"
    with spoken:
        capabilities = await pop.capa()
    rec.advertised(capabilities.lines)
    return capabilities.names


async def _stls(pop: Pop3, target: Target, rec: Recorder) -> frozenset[str]:
    """STLS, the handshake (verified per tlsOptions), then CAPA again: RFC 2595 section 4 has
    the client forget what it learnt in the clear, where anyone could have written it; it is
    also the first exchange over TLS, before any credential goes."""
    rec.upgrading()
    with rec.phase("tls"):
        await command(pop, "STLS", "STLS", "protocol")
        try:
            await pop.upgrade(target.ssl_context, target.server_name)
        except Injected:
            raise ProbeFailure(
                "protocol",
                "the server sent more in the clear after its +OK to STLS; "
                "a sign of a man in the middle injecting commands, so the check stopped there",
            ) from None
    rec.tls = tls_info(pop.writer.get_extra_info("ssl_object"), "starttls", rec.clock.now())
    return await _capa(pop, rec)


async def command(pop: Pop3, line: str, name: str, kind_on_err: ErrorKind) -> str:
    """Send one command; its +OK reply. `name` is what a message may show (never the argument
    of PASS)."""
    with spoken:
        try:
            return said(await pop.command(line))
        except Refused as refused:
            raise ProbeFailure(kind_on_err, f"{name} failed: {refused.said}") from None


async def read_line(pop: Pop3) -> str:
    with spoken:
        return said(await pop.line())
