"""An IMAP session (RFC 3501) on aioimaplib's protocol, over a transport opened here.

`aioimaplib.IMAP4(host=...)` resolves the name itself and sends as SNI the host it dials:
opening the transport here (`shared.mailclient.connect`) dials the address the caller chose and
checks the certificate for the server's name. aioimaplib has no STARTTLS (its issue #1): the
command is sent here and the transport upgraded with the event loop's `start_tls`; CAPABILITY
is then the caller's to ask again (RFC 3501 6.2.1), after it noted the upgrade.

The protocol adds to aioimaplib's: the greeting and the outcome of the greeting + CAPABILITY
exchange aioimaplib runs in a background task, as futures; anything the server sends in the
clear after its OK to STARTTLS (a man in the middle's); the answers to an AUTHENTICATE's
continuations; a byte budget for a fetched body, past which the connection is dropped and
every command waiting fails (`AnswerTooLong`) whatever size the server declared; `Bounds` on
every answer (a line, bytes, lines), which the agent's probers set; an answer aioimaplib
cannot follow ending the session (`Unfollowable`) instead of raising out of `data_received`,
where asyncio logs it, the LOGIN waiting and its password named; and a connection lost
failing every command waiting (aioimaplib's would wait for ever).
"""

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

from aioimaplib import Command, IMAP4ClientProtocol, Response, quoted
from aioimaplib.aioimaplib import tagged_status_response_re

from shared.guards import BrokenInvariant
from shared.mailclient.connect import Where, transport
from shared.mailclient.errors import (
    AnswerTooLong,
    Injected,
    LineTooLong,
    Refused,
    Unfollowable,
)

# aioimaplib parses one line per recursive call: a chunk of data is handed over at most this
# many lines at a time, so a burst of short lines never nears the recursion limit.
PIECE_LINES = 128


@dataclass(frozen=True, slots=True)
class Bounds:
    """What one answer may hold: a line (outside a literal), bytes (a literal's too, whatever
    size the server declared) and lines, from the end of the last tagged response on. Past
    any, the connection is dropped and every command waiting fails (LineTooLong,
    AnswerTooLong)."""

    line_max: int
    answer_max: int
    answer_lines_max: int


class ImapProtocol(IMAP4ClientProtocol):  # type: ignore[misc]
    def __init__(self, loop: asyncio.AbstractEventLoop, bounds: Bounds | None = None) -> None:
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
        self.budget: int | None = None  # bytes the server may still send (a body fetched)
        self.limit = 0  # the budget as it was set
        self.overflowed = False
        self.bounds = bounds
        self.answer_bytes = 0  # of the answer in progress
        self.answer_lines = 0

    def data_received(self, d: bytes) -> None:
        if self.overflowed:
            return
        if self.budget is not None:
            self.budget -= len(d)
            if self.budget < 0:
                self._drop(AnswerTooLong(self.limit))
                return
        start = 0
        while start < len(d) and not self.overflowed:
            end = start
            for _ in range(PIECE_LINES):
                found = d.find(b"\n", end)
                if found < 0:
                    end = len(d)
                    break
                end = found + 1
            self._piece(d[start:end])
            start = end

    def _piece(self, piece: bytes) -> None:
        bounds = self.bounds
        if bounds is not None:
            self.answer_bytes += len(piece)
            if self.answer_bytes > bounds.answer_max:
                self._drop(AnswerTooLong(bounds.answer_max))
                return
        try:
            super().data_received(piece)
        except Exception:  # aioimaplib's Abort or Error: else asyncio would log it, and its
            self._drop(Unfollowable())  # text names the command waiting, password and all
            return
        if bounds is not None and len(self.incomplete_line) > bounds.line_max:
            self._drop(LineTooLong(bounds.line_max))

    def _drop(self, error: Exception) -> None:
        """Drop the connection: every command waiting, the greeting and `ready` fail with
        `error`."""
        if self.overflowed:
            return
        self.overflowed = True
        self.transport.abort()
        self._fail_waiting(error)

    def _fail_waiting(self, error: Exception) -> None:
        for command in [self.pending_sync_command, *self.pending_async_commands.values()]:
            if command is not None and not command._event.is_set():
                command._exception = error
                command.close(b"", "NO")
        if not self.greeting.done():
            self.greeting.set_exception(error)
            self.greeting.exception()  # mark retrieved: the caller may be past this point
        if not self.ready.done():
            self.ready.set_result(error)

    def bound(self, limit: int | None) -> None:
        """Take at most `limit` bytes more (None: no bound) before dropping the connection."""
        self.budget, self.limit = limit, limit or 0

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._fail_waiting(exc or ConnectionResetError("connection closed by the server"))

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
        if self.overflowed:
            return None
        if self.bounds is not None:
            # A whole line too, not only one still incomplete at a chunk's end: the bound
            # holds however the server's bytes were cut into reads.
            if len(line) > self.bounds.line_max:
                self._drop(LineTooLong(self.bounds.line_max))
                return None
            self.answer_lines += 1
            if self.answer_lines > self.bounds.answer_lines_max:
                self._drop(AnswerTooLong(self.bounds.answer_lines_max, "lines"))
                return None
            if tagged_status_response_re.match(line):
                self.answer_bytes = self.answer_lines = 0
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
        if self.sasl_answers is None:
            raise BrokenInvariant("imap.ImapProtocol._sasl_continue: self.sasl_answers is unset")
        if len(self.sasl_answers) > 1:
            answer = self.sasl_answers.pop(0)
        else:
            self.sasl_challenge = challenge
            answer = self.sasl_answers[0] if self.sasl_answers else ""
            self.sasl_answers = []
        self.transport.write(answer.encode("ascii") + b"\r\n")


async def open_imap(
    where: Where, ctx: ssl.SSLContext | None, server_name: str, bounds: Bounds | None = None
) -> ImapProtocol:
    """A connection to `where` (over TLS at once with `ctx`), each answer within `bounds`;
    its greeting is `greeting`, and `ready` says when aioimaplib is through with it and
    CAPABILITY."""
    proto = ImapProtocol(asyncio.get_running_loop(), bounds)
    await transport(lambda: proto, where, ctx, server_name)
    return proto


def ssl_object(proto: ImapProtocol) -> ssl.SSLObject | None:
    found: ssl.SSLObject | None = proto.transport.get_extra_info("ssl_object")
    return found


def text(response: Response) -> str:
    """A response's lines as one text."""
    return b" ".join(bytes(line) for line in response.lines).decode("utf-8", "replace")


async def starttls(proto: ImapProtocol, ctx: ssl.SSLContext, server_name: str) -> None:
    """STARTTLS, then the handshake, the certificate checked for `server_name`. Refused when
    the server says other than OK; Injected when it sent more in the clear after its OK."""
    loop = asyncio.get_running_loop()
    tag = proto.new_tag()
    proto.starttls_ok = f"{tag} OK".encode()
    response = await proto.execute(Command("STARTTLS", tag, loop=loop))
    if response.result != "OK":
        raise Refused(text(response), response.result)
    if proto.injected or proto.incomplete_line:
        raise Injected("more was sent in the clear after the OK to STARTTLS")
    proto.transport = await loop.start_tls(proto.transport, proto, ctx, server_hostname=server_name)
    proto.starttls_ok, proto.cleartext_over = None, False


async def login(proto: ImapProtocol, user: str, password: str) -> Response:
    """LOGIN. aioimaplib quotes the password but sends the user as it is: a space or a `"` in
    it would make the command malformed (BAD), so it is quoted as the password is."""
    return await proto.login(quoted(user), password)


async def authenticate(
    proto: ImapProtocol, mechanism: str, initial: str, dummy: str
) -> tuple[Response, str | None]:
    """AUTHENTICATE `mechanism` (RFC 3501 6.2.2) with the `initial` response (base64): on the
    command line when the server takes it (SASL-IR, RFC 4959), else after its first
    continuation; an error challenge is answered with `dummy`. The response, and the error
    challenge the server sent (base64, as sent), if any."""
    args = [mechanism]
    if "SASL-IR" in proto.capabilities:
        args.append(initial)
        proto.sasl_answers = [dummy]
    else:
        proto.sasl_answers = [initial, dummy]
    proto.sasl_challenge = None
    command = Command("AUTHENTICATE", proto.new_tag(), *args, loop=asyncio.get_running_loop())
    try:
        # `scrub`: aioimaplib's debug log of what it sends shows the line without it.
        response = await proto.execute(command, scrub=initial)
    finally:
        proto.sasl_answers = None
    if response.result == "OK":
        proto.state = "AUTH"
    return response, proto.sasl_challenge


def close(proto: ImapProtocol) -> None:
    """The connection closed at once, aioimaplib's tasks for it cancelled."""
    for task in list(proto.tasks):
        task.cancel()
    proto.transport.close()  # the TLS one after STARTTLS, which closes the socket's too
