"""Just enough POP3 (RFC 1939): greeting, USER, PASS, STAT, QUIT."""

import asyncio
import ssl

from tests.peers.base import LoopbackServer, read_line


class Pop3Peer(LoopbackServer):
    def __init__(
        self, users: dict[str, str] | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(ssl_context)
        self.users = users if users is not None else {"alice": "s3cret"}
        self.commands: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        send("+OK test POP3 server ready")
        user: str | None = None
        while (line := await read_line(reader)) is not None:
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            self.commands.append(verb)
            if verb == "USER":
                user = arg
                send("+OK send PASS")
            elif verb == "PASS":
                if user is not None and self.users.get(user) == arg:
                    send("+OK logged in")
                else:
                    send("-ERR [AUTH] invalid credentials")
            elif verb == "STAT":
                send("+OK 2 320")
            elif verb == "QUIT":
                send("+OK bye")
                await writer.drain()
                return
            else:
                send("-ERR unknown command")
            await writer.drain()
