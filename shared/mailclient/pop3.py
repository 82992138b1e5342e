"""A POP3 session (RFC 1939) over asyncio streams: STLS (RFC 2595), CAPA (RFC 2449), AUTH with
an OAuth2 mechanism (RFC 5034), multi-line answers dot-unstuffed, everything bounded.

No maintained asyncio POP3 library exists, and the standard library's poplib blocks a thread,
cannot connect to one address while checking the certificate for another name, and refuses a
line longer than 2,048 bytes (RFC 5322 allows a message's lines 998 characters, and servers send
longer). Every line read is at most the session's `line_max` (else `LineTooLong`, the
connection dropped), every multi-line answer at most the caller's limit (`AnswerTooLong`),
and with a `timeout_s` every answer comes within it (`NoAnswer`).
"""

import asyncio
import ssl
from dataclasses import dataclass

from shared.mailclient.connect import Where, transport
from shared.mailclient.errors import (
    AnswerTooLong,
    ConnectionClosed,
    ConnectionFailed,
    Injected,
    LineTooLong,
    NoAnswer,
    Refused,
)

CAPA_MAX = 64 * 1024  # bytes of a CAPA answer
YIELD_LINES = 256  # lines of one answer read before the event loop's other tasks get a turn
# RFC 5034 4: an AUTH command with its initial response is at most 255 octets; a longer one
# (any real access token) sends the response after the server's empty continuation.
AUTH_LINE_MAX = 255


class _Reader(asyncio.StreamReader):
    """Counts the bytes that arrived, so that what came after the +OK to STLS shows."""

    arrived = 0

    def feed_data(self, data: bytes) -> None:  # type: ignore[override]  # asyncio feeds bytes
        self.arrived += len(data)
        super().feed_data(data)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What CAPA listed: its lines as sent, and the capability names (upper case) with
    `SASL <MECHANISM>` for each SASL mechanism. Empty from a server older than RFC 2449."""

    lines: tuple[str, ...] = ()
    names: frozenset[str] = frozenset()


class SaslRefused(Refused):
    """AUTH refused; `challenge` is the error challenge the server sent before (base64, as
    sent), if any."""

    def __init__(self, said: str, challenge: str | None) -> None:
        super().__init__(said)
        self.challenge = challenge


def said(line: bytes) -> str:
    """A reply line as text."""
    return line.decode("utf-8", "replace").rstrip("\r\n")


class Pop3:
    """One connection, past nothing yet: `reply()` reads the greeting."""

    def __init__(
        self, reader: _Reader, writer: asyncio.StreamWriter, line_max: int, timeout_s: float | None
    ) -> None:
        self.reader, self.writer = reader, writer
        self.line_max = line_max
        self.timeout_s = timeout_s
        self.taken = 0  # the bytes `line` took

    @classmethod
    async def open(
        cls,
        where: Where,
        ctx: ssl.SSLContext | None,
        server_name: str,
        *,
        line_max: int,
        timeout_s: float | None = None,
    ) -> "Pop3":
        """A connection to `where`, over TLS at once with `ctx`."""
        reader = _Reader(limit=line_max)
        protocol = asyncio.StreamReaderProtocol(reader)
        made = await transport(lambda: protocol, where, ctx, server_name)
        loop = asyncio.get_running_loop()
        return cls(reader, asyncio.StreamWriter(made, protocol, reader, loop), line_max, timeout_s)

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        found: ssl.SSLObject | None = self.writer.get_extra_info("ssl_object")
        return found

    def send(self, line: str) -> None:
        self.writer.write(line.encode() + b"\r\n")

    async def line(self) -> bytes:
        """The next line, without its line end."""
        try:
            if self.timeout_s is None:
                raw = await self.reader.readuntil(b"\n")
            else:
                async with asyncio.timeout(self.timeout_s):
                    raw = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise ConnectionClosed("connection closed by the server") from None
        except asyncio.LimitOverrunError:
            self.abort()
            raise LineTooLong(self.line_max) from None
        except TimeoutError:
            raise NoAnswer(f"no answer within {self.timeout_s:g} s") from None
        except OSError as exc:
            raise ConnectionFailed(exc) from exc
        self.taken += len(raw)
        return raw.removesuffix(b"\n").removesuffix(b"\r")

    async def reply(self) -> bytes:
        """The next line when it is +OK; else Refused."""
        line = await self.line()
        if not line.startswith(b"+OK"):
            raise Refused(said(line))
        return line

    async def command(self, line: str) -> bytes:
        """Send `line`; its +OK reply, else Refused."""
        self.send(line)
        return await self.reply()

    async def text(self, limit: int) -> bytes:
        """A multi-line answer up to its ".", unstuffed, each line ending in CRLF, at most
        `limit` bytes (else AnswerTooLong, the connection dropped)."""
        out = bytearray()
        count = 0
        while (line := await self.line()) != b".":
            count += 1
            if count % YIELD_LINES == 0:
                await asyncio.sleep(0)  # lines already arrived are read without a wait
            out += line[1:] if line.startswith(b".") else line
            out += b"\r\n"
            if len(out) > limit:
                self.abort()
                raise AnswerTooLong(limit)
        return bytes(out)

    async def lines(self, limit: int) -> list[bytes]:
        """A multi-line answer's lines, as `text`."""
        return (await self.text(limit)).split(b"\r\n")[:-1]

    async def capa(self) -> Capabilities:
        """CAPA's answer; empty from a server that refuses it."""
        self.send("CAPA")
        if not (await self.line()).startswith(b"+OK"):
            return Capabilities()
        lines = [said(line) for line in await self.lines(CAPA_MAX)]
        names: set[str] = set()
        for line in lines:
            words = line.upper().split()
            if words:
                names.add(words[0])
                if words[0] == "SASL":
                    names.update(f"SASL {w}" for w in words[1:])
        return Capabilities(tuple(lines), frozenset(names))

    async def upgrade(self, ctx: ssl.SSLContext, server_name: str) -> None:
        """TLS after the server's +OK to STLS, the certificate checked for `server_name`.
        A server sends nothing after that +OK until the handshake: more is a man in the
        middle's, and would be read as if it had come over TLS (Injected)."""
        if self.reader.arrived != self.taken:
            raise Injected("more was sent in the clear after the +OK to STLS")
        if self.timeout_s is None:
            await self.writer.start_tls(ctx, server_hostname=server_name)
            return
        async with asyncio.timeout(self.timeout_s):
            await self.writer.start_tls(ctx, server_hostname=server_name)

    async def authenticate(self, mechanism: str, initial: str, dummy: str) -> None:
        """AUTH `mechanism` with the `initial` response (base64); an error challenge is
        answered with `dummy` (or "*", RFC 5034 4's cancel, when that is empty: servers read
        an empty line differently), and the server's -ERR then is the refusal (SaslRefused)."""
        line = f"AUTH {mechanism} {initial}"
        if len(line) + 2 <= AUTH_LINE_MAX:
            self.send(line)
        else:
            self.send(f"AUTH {mechanism}")
            reply = await self.line()
            if not _continues(reply):
                raise SaslRefused(said(reply), None)
            self.send(initial)
        reply = await self.line()
        challenge: str | None = None
        if _continues(reply):
            challenge = said(reply)[1:].strip()
            self.send(dummy or "*")
            reply = await self.line()
        if not reply.startswith(b"+OK"):
            raise SaslRefused(said(reply), challenge)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()


def _continues(reply: bytes) -> bool:
    return reply == b"+" or reply.startswith(b"+ ")
