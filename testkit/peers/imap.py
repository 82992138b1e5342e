"""Just enough IMAP4rev1 (RFC 3501): greeting, CAPABILITY, STARTTLS, LOGIN, LOGOUT."""

import asyncio
import re
import ssl
from typing import Literal

from testkit.peers.base import LoopbackServer, over_tls

CAPABILITIES = "IMAP4rev1 AUTH=PLAIN"
# An astring of LOGIN: a quoted string (with \" and \\ escapes) or an atom, which may hold
# neither a quote nor a backslash (RFC 3501 quoted-specials).
ASTRING = re.compile(r'"((?:[^"\\]|\\.)*)"|([^\s"\\]+)')


class ImapPeer(LoopbackServer):
    """`greeting`: the raw first line (str: sent as UTF-8 with CRLF); `silent`: verbs it never
    answers (the connection stays open); `echo_password`: a failed LOGIN reply repeats the
    password, as careless servers do. A malformed LOGIN gets BAD, as real servers answer.

    `starttls` offers STARTTLS with that certificate. `login_disabled` says when it announces
    LOGINDISABLED and refuses LOGIN: "until_tls" while it offers STARTTLS and TLS is not on yet
    (Dovecot's default), "always" or "never". `starttls_reply` is its answer to STARTTLS;
    `after_starttls`: bytes it slips in after an OK, in the clear, as a man in the middle
    injecting commands would. `refusal` answers a wrong password (e.g. Microsoft's `NO Basic
    authentication is disabled.`). `heard` records what the client sent."""

    def __init__(
        self,
        users: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        greeting: str | bytes = "* OK test IMAP server ready",
        *,
        silent: frozenset[str] = frozenset(),
        echo_password: bool = False,
        starttls: ssl.SSLContext | None = None,
        login_disabled: Literal["until_tls", "always", "never"] = "until_tls",
        starttls_reply: str = "OK Begin TLS negotiation now",
        after_starttls: bytes = b"",
        refusal: str = "NO [AUTHENTICATIONFAILED] Invalid credentials",
    ) -> None:
        super().__init__(ssl_context)
        self.users = users if users is not None else {"alice": "s3cret"}
        self.refusal = refusal
        self.greeting = greeting.encode() + b"\r\n" if isinstance(greeting, str) else greeting
        self.silent = silent
        self.echo_password = echo_password
        self.starttls = starttls
        self.login_disabled = login_disabled
        self.starttls_reply = starttls_reply
        self.after_starttls = after_starttls
        self.commands: list[str] = []

    def capabilities(self, tls: bool) -> str:
        caps = CAPABILITIES
        if self.starttls is not None and not tls:
            caps += " STARTTLS"
        if self._login_disabled(tls):
            caps += " LOGINDISABLED"
        return caps

    def _login_disabled(self, tls: bool) -> bool:
        if self.login_disabled == "until_tls":
            return self.starttls is not None and not tls
        return self.login_disabled == "always"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        writer.write(self.greeting)
        while (line := await self.hear(reader, writer)) is not None:
            tag, _, rest = line.partition(" ")
            verb, _, args = rest.partition(" ")
            verb = verb.upper()
            self.commands.append(verb)
            if verb in self.silent:
                continue
            if verb == "CAPABILITY":
                send(f"* CAPABILITY {self.capabilities(over_tls(writer))}")
                send(f"{tag} OK CAPABILITY completed")
            elif verb == "STARTTLS" and self.starttls is not None and not over_tls(writer):
                send(f"{tag} {self.starttls_reply}")
                if self.starttls_reply.startswith("OK"):
                    writer.write(self.after_starttls)
                    await writer.drain()
                    await writer.start_tls(self.starttls)
            elif verb == "LOGIN" and self._login_disabled(over_tls(writer)):
                send(f"{tag} NO [PRIVACYREQUIRED] LOGIN is disabled without TLS")
            elif verb == "LOGIN":
                send(f"{tag} {self._login(args)}")
            elif verb == "LOGOUT":
                send("* BYE logging out")
                send(f"{tag} OK LOGOUT completed")
                await writer.drain()
                return
            else:
                send(f"{tag} BAD unknown command")
            await writer.drain()

    def _login(self, args: str) -> str:
        words = _astrings(args)
        if words is None or len(words) != 2:
            return "BAD LOGIN expects a user name and a password"
        user, password = words
        if self.users.get(user) == password:
            return "OK LOGIN completed"
        if self.echo_password:
            return f"NO [AUTHENTICATIONFAILED] wrong password {password} for {user}"
        return self.refusal


def _astrings(text: str) -> list[str] | None:
    """The astrings of `text` separated by single spaces, unescaped; None when malformed."""
    words: list[str] = []
    pos = 0
    while pos < len(text):
        match = ASTRING.match(text, pos)
        if match is None:
            return None
        quoted, atom = match.groups()
        words.append(atom if quoted is None else re.sub(r"\\(.)", r"\1", quoted))
        pos = match.end()
        if pos < len(text):
            if text[pos] != " ":
                return None
            pos += 1
    return words
