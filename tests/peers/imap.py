"""Just enough IMAP4rev1 (RFC 3501): greeting, CAPABILITY, LOGIN, LOGOUT."""

import asyncio
import ssl

from tests.peers.base import LoopbackServer, read_line

CAPABILITIES = "IMAP4rev1 AUTH=PLAIN"


class ImapPeer(LoopbackServer):
    def __init__(
        self,
        users: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        greeting: str = "* OK test IMAP server ready",
    ) -> None:
        super().__init__(ssl_context)
        self.users = users if users is not None else {"alice": "s3cret"}
        self.greeting = greeting
        self.commands: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        send(self.greeting)
        while (line := await read_line(reader)) is not None:
            tag, _, rest = line.partition(" ")
            verb, _, args = rest.partition(" ")
            verb = verb.upper()
            self.commands.append(verb)
            if verb == "CAPABILITY":
                send(f"* CAPABILITY {CAPABILITIES}")
                send(f"{tag} OK CAPABILITY completed")
            elif verb == "LOGIN":
                user, _, password = args.partition(" ")
                if self.users.get(_unquote(user)) == _unquote(password):
                    send(f"{tag} OK LOGIN completed")
                else:
                    send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials")
            elif verb == "LOGOUT":
                send("* BYE logging out")
                send(f"{tag} OK LOGOUT completed")
                await writer.drain()
                return
            else:
                send(f"{tag} BAD unknown command")
            await writer.drain()


def _unquote(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] == '"':
        return word[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return word
