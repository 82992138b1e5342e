"""POP3 prober: greeting, CAPA and STLS when offered on a plain connection (RFC 2449, 2595),
USER/PASS (or AUTH with an OAuth2 mechanism, RFC 5034) and STAT when credentials are set and
the connection may carry them, QUIT (RFC 1939).

STAT is valid only in the TRANSACTION state, after a successful login: servers answer -ERR to it
before (Dovecot: "-ERR Unknown command"), so a check without credentials stops at the greeting.
"""

import asyncio
import time

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
from shared.messages import CheckJob, ErrorKind, ImapPopConfig, Pop3CheckJob

LINE_LIMIT = 8192


class Pop3Reader(asyncio.StreamReader):
    """Counts the bytes that arrived and the bytes `read_line` took, so the prober knows
    whether the server sent more than the line it answered with."""

    arrived = 0
    taken = 0

    def feed_data(self, data: bytes) -> None:  # type: ignore[override]  # asyncio feeds bytes
        self.arrived += len(data)
        super().feed_data(data)


async def probe_pop3(target: Target, job: CheckJob, rec: Recorder) -> None:
    if not isinstance(job, Pop3CheckJob):
        raise TypeError(f"probe_pop3 got a {job.monitor_type} job")
    reader, writer = await open_pop3(target, job.config, rec)
    try:
        if mailbox_login(job.config) is not None:
            rec.current = "stat"
            await command(reader, writer, "STAT", "STAT", "protocol")
        await quit_pop3(reader, writer, rec)
    except BaseException:
        writer.transport.abort()
        raise
    writer.close()


async def open_pop3(
    target: Target, config: ImapPopConfig, rec: Recorder
) -> tuple[Pop3Reader, asyncio.StreamWriter]:
    """A session past the greeting, upgraded by STLS when offered on a plain connection, and
    logged in when `config` has credentials (only over TLS unless `allowPlaintextAuth`)."""
    sock = await connect_socket(target, rec)
    loop = asyncio.get_running_loop()
    # asyncio.open_connection, with a reader that counts
    reader = Pop3Reader(limit=LINE_LIMIT)
    protocol = asyncio.StreamReaderProtocol(reader)
    rec.current = "tls" if config.tls else "greeting"
    start = time.perf_counter()
    try:
        transport, _ = await loop.create_connection(
            lambda: protocol,
            sock=sock,
            ssl=target.ssl_context if config.tls else None,
            server_hostname=target.server_name if config.tls else None,
        )
    except BaseException:
        sock.close()
        raise
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    try:
        if config.tls:
            rec.record("tls", time.perf_counter() - start)
            rec.tls = tls_info(writer.get_extra_info("ssl_object"), "implicit")
        await _converse(reader, writer, target, config, rec)
    except BaseException:
        writer.transport.abort()
        raise
    return reader, writer


async def quit_pop3(reader: Pop3Reader, writer: asyncio.StreamWriter, rec: Recorder) -> None:
    rec.current = "quit"
    await goodbye(rec, lambda: command(reader, writer, "QUIT", "QUIT", "protocol"), ProbeFailure)


async def _converse(
    reader: Pop3Reader,
    writer: asyncio.StreamWriter,
    target: Target,
    config: ImapPopConfig,
    rec: Recorder,
) -> None:
    with rec.phase("greeting"):
        greeting = await read_line(reader)
    rec.set_banner(greeting.removeprefix("+OK").strip() or greeting)
    if not greeting.startswith("+OK"):
        raise ProbeFailure("protocol", f"bad greeting: {greeting[:200]}")
    login = mailbox_login(config)
    capa: set[str] | None = None
    if not config.tls:
        capa = await capabilities(reader, writer, rec)
        if "STLS" in capa:
            capa = await _stls(reader, writer, target, rec)
    if login is None:
        return
    if writer.get_extra_info("ssl_object") is None and not config.allow_plaintext_auth:
        raise ProbeFailure(
            "tls_required",
            "the server does not offer STLS, so the credentials were not sent "
            "(allowPlaintextAuth would send them without TLS)",
        )
    refuse_line_breaks(login.user, login.password)
    if login.oauth2:
        if capa is None:  # implicit TLS: CAPA, over TLS, says which SASL mechanisms it takes
            capa = await capabilities(reader, writer, rec)
        offered(login.mechanism, _sasl_mechanisms(capa), "CAPA SASL")
        with rec.phase("auth"):
            await _auth(reader, writer, login)
        return
    with rec.phase("auth"):
        try:
            await command(reader, writer, f"USER {login.user}", "USER", "auth")
            await command(reader, writer, f"PASS {login.password}", "PASS", "auth")
        except ProbeFailure as failure:
            raise basic_auth_disabled(login, failure.message) or failure from None


# RFC 5034 4: an AUTH command with its initial response is at most 255 octets; a longer one
# (any real access token) sends the response after the server's empty continuation.
_AUTH_LINE_MAX = 255


async def _auth(reader: Pop3Reader, writer: asyncio.StreamWriter, login: Login) -> None:
    """AUTH with an OAuth2 mechanism (RFC 5034); an error challenge is answered with the dummy
    response, and the server's -ERR then is the refusal."""
    initial = initial_response(login)
    line = f"AUTH {login.mechanism} {initial}"
    if len(line) + 2 <= _AUTH_LINE_MAX:
        writer.write(line.encode() + b"\r\n")
    else:
        writer.write(f"AUTH {login.mechanism}\r\n".encode())
        reply = await read_line(reader)
        if not reply.startswith("+ ") and reply != "+":
            raise ProbeFailure("auth", refusal(login, f"AUTH {reply[:200]}", None))
        writer.write(initial.encode() + b"\r\n")
    reply = await read_line(reader)
    challenge: str | None = None
    if reply.startswith("+ ") or reply == "+":
        challenge = reply[1:].strip()
        # XOAUTH2's dummy is an empty response, which POP3 servers read differently (Dovecot
        # waits for more on an empty line, and takes "=" as bad base64): cancelling (RFC 5034
        # 4, "*") ends the exchange with the server's -ERR everywhere.
        writer.write((dummy_response(login) or "*").encode() + b"\r\n")
        reply = await read_line(reader)
    if not reply.startswith("+OK"):
        raise ProbeFailure("auth", refusal(login, f"AUTH {reply[:200]}", challenge))


def _sasl_mechanisms(capa: set[str]) -> set[str]:
    return {name.removeprefix("SASL ") for name in capa if name.startswith("SASL ")}


async def capabilities(reader: Pop3Reader, writer: asyncio.StreamWriter, rec: Recorder) -> set[str]:
    """The capability names CAPA lists (its lines go to `rec`), and each `SASL` line's mechanisms
    as `SASL <mechanism>`; none from a server older than RFC 2449 (-ERR)."""
    rec.current = "capability"
    writer.write(b"CAPA\r\n")
    if not (await read_line(reader)).startswith("+OK"):
        rec.advertised(())
        return set()
    lines: list[str] = []
    while (line := await read_line(reader)) != ".":
        lines.append(line)
    rec.advertised(lines)
    names = {line.split(" ", 1)[0].upper() for line in lines}
    sasl = {
        f"SASL {word.upper()}"
        for line in lines
        if line.upper().startswith("SASL ")
        for word in line.split()[1:]
    }
    return names | sasl


async def _stls(
    reader: Pop3Reader, writer: asyncio.StreamWriter, target: Target, rec: Recorder
) -> set[str]:
    """STLS, the handshake (verified per tlsOptions), then CAPA again: RFC 2595 section 4 has
    the client forget what it learnt in the clear, where anyone could have written it; it is
    also the first exchange over TLS, before any credential goes."""
    rec.upgrading()
    with rec.phase("tls"):
        await command(reader, writer, "STLS", "STLS", "protocol")
        # After its +OK a server sends nothing until the handshake: more is a man in the
        # middle's, and would be read as if it had come over TLS.
        if reader.arrived != reader.taken:
            raise ProbeFailure(
                "protocol",
                "the server sent more in the clear after its +OK to STLS; "
                "a sign of a man in the middle injecting commands, so the check stopped there",
            )
        await writer.start_tls(target.ssl_context, server_hostname=target.server_name)
    rec.tls = tls_info(writer.get_extra_info("ssl_object"), "starttls")
    return await capabilities(reader, writer, rec)


async def command(
    reader: Pop3Reader,
    writer: asyncio.StreamWriter,
    line: str,
    name: str,
    kind_on_err: ErrorKind,
) -> str:
    """Send one command; `name` is what a message may show (never the argument of PASS)."""
    writer.write(line.encode() + b"\r\n")
    reply = await read_line(reader)
    if not reply.startswith("+OK"):
        raise ProbeFailure(kind_on_err, f"{name} failed: {reply[:200]}")
    return reply


async def read_line(reader: Pop3Reader) -> str:
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        raise ProbeFailure("protocol", "connection closed by the server") from exc
    except asyncio.LimitOverrunError as exc:
        raise ProbeFailure("protocol", f"reply line longer than {LINE_LIMIT} bytes") from exc
    reader.taken += len(raw)
    return raw.decode("utf-8", "replace").rstrip("\r\n")
