"""A mail server pair that really delivers: an SMTP handler (for `SmtpPeer`) that stamps
`Received` and `Authentication-Results` and files each message into a `Mailstore`, which an
IMAP peer (SELECT, UID SEARCH HEADER, UID FETCH, UID STORE, EXPUNGE, IDLE) and a POP3 peer
(STAT, TOP, DELE, QUIT committing deletions) serve. Round-trip tests run on it."""

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import formatdate
from typing import Any

from testkit.peers.base import LoopbackServer
from testkit.peers.imap import _astrings

_parse_headers = BytesHeaderParser().parsebytes


@dataclass
class Stored:
    uid: int
    raw: bytes
    deleted: bool = False


@dataclass
class Mailstore:
    """One mailbox's folders. `route(raw)` names the folder a message is filed in; `delay_s`
    is how long delivery takes; `hold` keeps messages back (delivered by `release`)."""

    folders: dict[str, list[Stored]] = field(default_factory=lambda: {"INBOX": [], "Junk": []})
    route: Callable[[bytes], str] = lambda raw: "INBOX"
    delay_s: float = 0.0
    hold: bool = False
    held: list[bytes] = field(default_factory=list)
    next_uid: int = 1
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def deliver(self, raw: bytes, folder: str | None = None) -> None:
        self.folders.setdefault(folder or self.route(raw), []).append(Stored(self.next_uid, raw))
        self.next_uid += 1
        self.changed.set()

    def release(self) -> None:
        for raw in self.held:
            self.deliver(raw)
        self.held.clear()

    def probes(self) -> list[tuple[str, str]]:
        """(folder, X-Mailprobe-Probe header) of every message still there."""
        return [
            (name, str(_parse_headers(m.raw).get("X-Mailprobe-Probe", "")))
            for name, messages in self.folders.items()
            for m in messages
        ]


class DeliveringHandler:
    """aiosmtpd handler: stamps the message as a receiving MTA does and files it."""

    def __init__(self, store: Mailstore, *, auth_results: str | None = None) -> None:
        self.store = store
        self.auth_results = auth_results
        self.accepted = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        stamp = formatdate(usegmt=True)
        head = f"Received: from {session.host_name} ([127.0.0.1]) by mx.mail.test; {stamp}\r\n"
        if self.auth_results is not None:
            head += f"Authentication-Results: mx.mail.test; {self.auth_results}\r\n"
        raw = head.encode() + envelope.original_content
        self.accepted += 1
        if self.store.hold:
            self.store.held.append(raw)
        elif self.store.delay_s:
            asyncio.get_running_loop().call_later(self.store.delay_s, self.store.deliver, raw)
        else:
            self.store.deliver(raw)
        return "250 OK queued"


def _quoted_or_atom(text: str) -> str:
    text = text.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


class MailboxImapPeer(LoopbackServer):
    """IMAP4rev1 over a Mailstore for user `probe` / `secret`; `idle` offers IDLE, `uidplus`
    UIDPLUS (UID EXPUNGE); `uid_last` puts the UID after the header literal in FETCH answers,
    as some servers order them."""

    def __init__(
        self, store: Mailstore, *, idle: bool = True, uidplus: bool = False, uid_last: bool = False
    ) -> None:
        super().__init__(None)
        self.store = store
        self.idle = idle
        self.uidplus = uidplus
        self.uid_last = uid_last
        self.users = {"probe": "secret"}
        self.commands: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str | bytes) -> None:
            writer.write((line.encode() if isinstance(line, str) else line) + b"\r\n")

        send("* OK mailbox IMAP ready")
        selected: list[Stored] | None = None
        while (line := await self.hear(reader, writer)) is not None:
            tag, _, rest = line.partition(" ")
            verb, _, args = rest.partition(" ")
            verb = verb.upper()
            self.commands.append(verb)
            if verb == "CAPABILITY":
                caps = " IDLE" * self.idle + " UIDPLUS" * self.uidplus
                send(f"* CAPABILITY IMAP4rev1{caps}")
                send(f"{tag} OK done")
            elif verb == "LOGIN":
                words = _astrings(args) or []
                ok = len(words) == 2 and self.users.get(words[0]) == words[1]
                send(f"{tag} OK logged in" if ok else f"{tag} NO [AUTHENTICATIONFAILED] no")
            elif verb == "SELECT":
                selected = self.store.folders.get(_quoted_or_atom(args))
                if selected is None:
                    send(f"{tag} NO no such folder")
                else:
                    send(f"* {len(selected)} EXISTS")
                    send(f"{tag} OK [READ-WRITE] selected")
            elif verb == "UID" and selected is not None:
                self._uid(tag, args, selected, send)
            elif verb == "EXPUNGE" and selected is not None:
                selected[:] = [m for m in selected if not m.deleted]
                send(f"{tag} OK expunged")
            elif verb == "IDLE" and self.idle:
                self.store.changed.clear()
                send("+ idling")
                await writer.drain()
                done = asyncio.ensure_future(reader.readline())
                change = asyncio.ensure_future(self.store.changed.wait())
                await asyncio.wait({done, change}, return_when=asyncio.FIRST_COMPLETED)
                if change.done() and selected is not None:
                    send(f"* {len(selected)} EXISTS")
                    await writer.drain()
                change.cancel()
                await done
                send(f"{tag} OK idle done")
            elif verb == "LOGOUT":
                send("* BYE bye")
                send(f"{tag} OK bye")
                await writer.drain()
                return
            else:
                send(f"{tag} BAD unknown command")
            await writer.drain()

    def _uid(
        self, tag: str, args: str, messages: list[Stored], send: Callable[[str | bytes], None]
    ) -> None:
        sub, _, rest = args.partition(" ")
        sub = sub.upper()
        if sub == "SEARCH":
            match = re.fullmatch(r'HEADER (\S+) "(.*)"', rest)
            if match is None:
                send(f"{tag} BAD search")
                return
            name, needle = match.groups()
            hits = [
                str(m.uid)
                for m in messages
                if needle.lower() in str(_parse_headers(m.raw).get(name, "")).lower()
            ]
            send(" ".join(["* SEARCH", *hits]))
        elif sub == "FETCH":
            uids, _, _ = rest.partition(" ")
            wanted = {int(u) for u in uids.split(",")}
            for seq, m in enumerate(messages, start=1):
                if m.uid in wanted:
                    head = m.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                    if self.uid_last:
                        send(f"* {seq} FETCH (BODY[HEADER] {{{len(head)}}}")
                        send(head + f" UID {m.uid})".encode())
                    else:
                        send(f"* {seq} FETCH (UID {m.uid} BODY[HEADER] {{{len(head)}}}")
                        send(head + b")")
        elif sub == "EXPUNGE" and self.uidplus:
            wanted = {int(u) for u in rest.split(",")}
            messages[:] = [m for m in messages if not (m.deleted and m.uid in wanted)]
        elif sub == "STORE":
            uids, _, _ = rest.partition(" ")
            wanted = {int(u) for u in uids.split(",")}
            for m in messages:
                if m.uid in wanted:
                    m.deleted = True
        else:
            send(f"{tag} BAD uid")
            return
        send(f"{tag} OK done")


def _uids(messages: list[Stored]) -> set[int]:
    return {m.uid for m in messages}


class MailboxPop3Peer(LoopbackServer):
    """POP3 over a Mailstore's INBOX for user `probe` / `secret`. A message another session
    deleted since this one's login is answered as Dovecot does (`-ERR Message N expunged.`);
    `after_stat` runs after each STAT (a test deletes a message there, as another client may);
    `capa` is what CAPA lists."""

    def __init__(self, store: Mailstore) -> None:
        super().__init__(None)
        self.store = store
        self.users = {"probe": "secret"}
        self.commands: list[str] = []  # the verbs received, in order
        self.after_stat: Callable[[], None] = lambda: None
        self.capa = ["USER", "TOP"]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        send("+OK mailbox POP3 ready")
        user: str | None = None
        inbox = self.store.folders["INBOX"]
        snapshot: list[Stored] = []
        doomed: set[int] = set()
        while (line := await self.hear(reader, writer)) is not None:
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            self.commands.append(verb)
            if verb == "CAPA":
                send("\r\n".join(["+OK", *self.capa, "."]))
            elif verb == "USER":
                user = arg
                send("+OK")
            elif verb == "PASS":
                if user is not None and self.users.get(user) == arg:
                    snapshot = list(inbox)
                    send("+OK logged in")
                else:
                    send("-ERR [AUTH] invalid credentials")
            elif verb == "STAT":
                send(f"+OK {len(snapshot)} {sum(len(m.raw) for m in snapshot)}")
                self.after_stat()
            elif verb == "TOP" and "TOP" not in self.capa:
                send("-ERR Unknown command.")
            elif verb == "TOP" and snapshot[int(arg.split()[0]) - 1].uid not in _uids(inbox):
                send(f"-ERR Message {arg.split()[0]} expunged.")
            elif verb == "TOP":
                m = snapshot[int(arg.split()[0]) - 1]
                head = m.raw.split(b"\r\n\r\n", 1)[0].decode()
                send("+OK")
                for text in head.split("\r\n"):
                    send("." + text if text.startswith(".") else text)
                send("")
                send(".")
            elif verb == "DELE":
                doomed.add(snapshot[int(arg) - 1].uid)
                send("+OK deleted")
            elif verb == "QUIT":
                inbox[:] = [m for m in inbox if m.uid not in doomed]
                send("+OK bye")
                await writer.drain()
                return
            else:
                send("-ERR Unknown command.")
            await writer.drain()
