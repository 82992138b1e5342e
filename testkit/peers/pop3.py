"""Just enough POP3 (RFC 1939): greeting, CAPA (RFC 2449), STLS (RFC 2595), USER, PASS, STAT,
QUIT.

Like Dovecot, it answers STAT only in the TRANSACTION state, after a successful login.
"""

import asyncio
import ssl

from testkit.peers.base import LoopbackServer, over_tls


class Pop3Peer(LoopbackServer):
    """`greeting`: the raw first line; `silent`: verbs it never answers (the connection stays
    open); `echo_password`: a failed PASS reply repeats the password, as careless servers do.

    `capa`: whether it knows CAPA (servers older than RFC 2449 answer -ERR); `starttls` offers
    STLS with that certificate; `stls_reply` is its answer to STLS; `after_starttls`: bytes
    it slips in after a +OK, in the clear, as a man in the middle injecting commands would.
    `refusal` answers a wrong password. `heard` records what the client sent."""

    def __init__(
        self,
        users: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        *,
        greeting: bytes = b"+OK test POP3 server ready\r\n",
        silent: frozenset[str] = frozenset(),
        echo_password: bool = False,
        capa: bool = True,
        starttls: ssl.SSLContext | None = None,
        stls_reply: str = "+OK Begin TLS negotiation",
        after_starttls: bytes = b"",
        refusal: str = "-ERR [AUTH] invalid credentials",
    ) -> None:
        super().__init__(ssl_context)
        self.users = users if users is not None else {"alice": "s3cret"}
        self.refusal = refusal
        self.greeting = greeting
        self.silent = silent
        self.echo_password = echo_password
        self.capa = capa
        self.starttls = starttls
        self.stls_reply = stls_reply
        self.after_starttls = after_starttls
        self.commands: list[str] = []

    def capabilities(self, tls: bool) -> list[str]:
        return ["USER", "UIDL"] + (["STLS"] if self.starttls is not None and not tls else [])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        writer.write(self.greeting)
        user: str | None = None
        logged_in = False
        while (line := await self.hear(reader, writer)) is not None:
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            self.commands.append(verb)
            if verb in self.silent:
                continue
            if verb == "CAPA" and self.capa:
                send("+OK Capability list follows")
                for cap in self.capabilities(over_tls(writer)):
                    send(cap)
                send(".")
            elif verb == "STLS" and self.starttls is not None and not over_tls(writer):
                send(self.stls_reply)
                if self.stls_reply.startswith("+OK"):
                    writer.write(self.after_starttls)
                    await writer.drain()
                    await writer.start_tls(self.starttls)
            elif verb == "USER":
                user = arg
                send("+OK send PASS")
            elif verb == "PASS":
                logged_in = user is not None and self.users.get(user) == arg
                if logged_in:
                    send("+OK logged in")
                else:
                    send(
                        f"-ERR [AUTH] invalid password {arg}"
                        if self.echo_password
                        else self.refusal
                    )
            elif verb == "STAT" and logged_in:
                send("+OK 2 320")
            elif verb == "QUIT":
                send("+OK bye")
                await writer.drain()
                return
            else:
                send("-ERR Unknown command.")
            await writer.drain()
