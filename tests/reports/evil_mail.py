"""Report mailboxes on loopback that lie (issue 64): an IMAP server (RFC 3501: what aioimaplib
and the reader send, UIDs, a literal per body) and a POP3 server (RFC 1939, with UIDL), both over
TLS, each holding `Held` messages: a real one, one whose body is far larger than the size the
server declared (sent lazily, as fast as the reader takes it, and counted), or one whose
connection drops halfway through its body; the POP3 server may refuse every login with a text of
its choosing. They record what was fetched, moved and deleted."""

import asyncio
import ssl
from dataclasses import dataclass, field

from testkit.peers.base import LoopbackServer

CHUNK = 64 * 1024
ENDLESS = 300 * 1024 * 1024  # an answer without end: bytes sent until the client hangs up


@dataclass
class Held:
    body: bytes = b""
    declared: int | None = None  # the size said (RFC822.SIZE, LIST); the body's own when None
    flood: int = 0  # bytes sent for its body instead (declared as such in the IMAP literal)
    drop: bool = False  # the connection drops halfway through its body

    @property
    def size(self) -> int:
        return len(self.body) if self.declared is None else self.declared


@dataclass
class Seen:
    fetched: list[int] = field(default_factory=list)  # bodies asked for, by UID / UIDL number
    moved: list[int] = field(default_factory=list)
    flooded: int = 0  # bytes of floods written


class _Evil(LoopbackServer):
    def __init__(self, ctx: ssl.SSLContext, held: list[Held]) -> None:
        super().__init__(ctx)
        self.held: dict[int, Held] = dict(enumerate(held, start=1))  # by UID
        self.seen = Seen()
        self.refusal: str | None = None  # POP3: what PASS is answered after `-ERR`, if refused

    async def flood(self, writer: asyncio.StreamWriter, n: int, line: bytes) -> None:
        """`n` bytes of `line`s, as fast as the client reads them, until it hangs up."""
        while n > 0 and not writer.is_closing():
            out = line * (CHUNK // len(line))
            writer.write(out)
            self.seen.flooded += len(out)
            n -= len(out)
            await writer.drain()
            await asyncio.sleep(0)  # drain() does not yield when not paused: let a hang-up in


class EvilImap(_Evil):
    # An answer without end instead of the one asked: "greeting" (a line that never ends),
    # "search" (untagged lines forever), `ENDLESS` bytes of it.
    endless: str | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        deleted: set[int] = set()
        if self.endless == "greeting":
            writer.write(b"* OK ")
            await self.flood(writer, ENDLESS, b"x" * 78)
            return
        send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] evil IMAP ready")
        while (line := await self.hear(reader, writer)) is not None:
            tag, _, rest = line.partition(" ")
            words = rest.split()
            verb = " ".join(words[:2]).upper() if words[:1] == ["UID"] else words[0].upper()
            uid = int(words[2]) if verb.startswith("UID ") and words[2].isdigit() else 0
            if verb == "CAPABILITY":
                send("* CAPABILITY IMAP4rev1 AUTH=PLAIN")
            elif verb == "SELECT":
                send(f"* {len(self.held)} EXISTS")
                send("* OK [UIDVALIDITY 42] UIDs valid")
            elif verb == "UID SEARCH" and self.endless == "search":
                await self.flood(writer, ENDLESS, b"* OK still searching\r\n")
                return
            elif verb == "UID SEARCH":
                send("* SEARCH " + " ".join(str(u) for u in self.held))
            elif verb == "UID FETCH" and "RFC822.SIZE" in rest.upper():
                send(f"* {uid} FETCH (UID {uid} RFC822.SIZE {self.held[uid].size})")
            elif verb == "UID FETCH":
                if not await self._body(writer, uid):
                    return
            elif verb == "UID COPY":
                self.seen.moved.append(uid)
            elif verb == "UID STORE":
                deleted.add(uid)
            elif verb == "EXPUNGE":
                for gone in deleted:
                    self.held.pop(gone, None)
                deleted.clear()
            elif verb == "LOGOUT":
                send("* BYE evil IMAP logging out")
                send(f"{tag} OK LOGOUT completed")
                await writer.drain()
                return
            send(f"{tag} OK {verb} completed")
            await writer.drain()

    async def _body(self, writer: asyncio.StreamWriter, uid: int) -> bool:
        """The body's FETCH response; False when the connection is to drop."""
        self.seen.fetched.append(uid)
        held = self.held[uid]
        size = held.flood or len(held.body)
        writer.write(f"* {uid} FETCH (UID {uid} BODY[] {{{size}}}\r\n".encode())
        if held.flood:
            await self.flood(writer, held.flood, b"x" * 76 + b"\r\n")
        elif held.drop:
            writer.write(held.body[: len(held.body) // 2])
            await writer.drain()
            return False
        else:
            writer.write(held.body)
        writer.write(b")\r\n")
        return True


class EvilPop3(_Evil):
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        numbers = list(self.held)  # message n is the nth held at the session's start
        deleted: set[int] = set()
        send("+OK evil POP3 ready")
        while (line := await self.hear(reader, writer)) is not None:
            words = line.split()
            verb = words[0].upper() if words else ""
            uid = numbers[int(words[1]) - 1] if len(words) > 1 and words[1].isdigit() else 0
            if verb == "CAPA":
                send("+OK\r\nUSER\r\nUIDL\r\n.")
            elif verb == "STAT":
                send(f"+OK {len(numbers)} {sum(self.held[u].size for u in numbers)}")
            elif verb == "UIDL":
                send("+OK")
                for n, u in enumerate(numbers, start=1):
                    send(f"{n} evil-{u}")
                send(".")
            elif verb == "LIST":
                send(f"+OK {words[1]} {self.held[uid].size}")
            elif verb == "RETR":
                if not await self._retr(writer, uid):
                    return
            elif verb == "PASS" and self.refusal is not None:
                send(f"-ERR {self.refusal}")
            elif verb == "DELE":
                deleted.add(uid)
                send("+OK deleted")
            elif verb == "QUIT":
                for gone in deleted:
                    self.held.pop(gone, None)
                send("+OK bye")
                await writer.drain()
                return
            else:
                send("+OK")
            await writer.drain()

    async def _retr(self, writer: asyncio.StreamWriter, uid: int) -> bool:
        self.seen.fetched.append(uid)
        held = self.held[uid]
        writer.write(b"+OK message follows\r\n")
        if held.flood:
            await self.flood(writer, held.flood, b"x" * 76 + b"\r\n")
        lines = held.body.split(b"\r\n")
        if held.drop:
            writer.write(b"\r\n".join(lines[: len(lines) // 2]))
            await writer.drain()
            return False
        for line in lines:
            writer.write((b"." if line.startswith(b".") else b"") + line + b"\r\n")
        writer.write(b".\r\n")
        return True
