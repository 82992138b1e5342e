"""A server that says what it is told: a fixed greeting (or nothing), then one fixed reply."""

import asyncio
import ssl

from testkit.peers.base import LoopbackServer


class ScriptedPeer(LoopbackServer):
    """Answers each line with `replies[VERB]`, else `reply`; `greeting=None` accepts and
    never says a word (a black hole for timeout tests)."""

    def __init__(
        self,
        greeting: bytes | None,
        reply: bytes = b"221 bye\r\n",
        replies: dict[str, bytes] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(ssl_context)
        self.greeting = greeting
        self.reply = reply
        self.replies = replies or {}
        self.commands: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.greeting is not None:
            writer.write(self.greeting)
            await writer.drain()
        while (line := await self.hear(reader, writer)) is not None:
            verb = line.split(" ", 1)[0].upper()
            self.commands.append(verb)
            if self.greeting is not None:
                writer.write(self.replies.get(verb, self.reply))
                await writer.drain()
