"""Just enough POP3 (RFC 1939): greeting, USER, PASS, STAT, QUIT.

Like Dovecot, it answers STAT only in the TRANSACTION state, after a successful login.
"""

import asyncio
import ssl

from tests.peers.base import LoopbackServer, read_line


class Pop3Peer(LoopbackServer):
    """`greeting`: the raw first line; `silent`: verbs it never answers (the connection stays
    open); `echo_password`: a failed PASS reply repeats the password, as careless servers do."""

    def __init__(
        self,
        users: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        *,
        greeting: bytes = b"+OK test POP3 server ready\r\n",
        silent: frozenset[str] = frozenset(),
        echo_password: bool = False,
    ) -> None:
        super().__init__(ssl_context)
        self.users = users if users is not None else {"alice": "s3cret"}
        self.greeting = greeting
        self.silent = silent
        self.echo_password = echo_password
        self.commands: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        writer.write(self.greeting)
        user: str | None = None
        logged_in = False
        while (line := await read_line(reader)) is not None:
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            self.commands.append(verb)
            if verb in self.silent:
                continue
            if verb == "USER":
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
                        else "-ERR [AUTH] invalid credentials"
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
