"""A trivial SMTP responder on loopback in a process of its own: `make bench scale`'s target.

`python -m testkit.smtp_responder PORT`: greets, answers EHLO/HELO with a short capability list
(no STARTTLS), NOOP/RSET with 250, QUIT with 221 and a close, anything else with 502. A plain
asyncio protocol, so serving hundreds of checks a second costs little of the CPU the
benchmark shares with the parts it measures.
"""

import asyncio
import sys
from typing import cast

GREETING = b"220 scale.example.com ESMTP ready\r\n"
EHLO = b"250-scale.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"
REPLIES = {
    b"HELO": b"250 scale.example.com\r\n",
    b"NOOP": b"250 OK\r\n",
    b"RSET": b"250 OK\r\n",
}


class Responder(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's are not instances of asyncio's classes)
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(GREETING)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            verb = line.strip()[:4].upper()
            if verb == b"EHLO":
                self._transport.write(EHLO)
            elif verb == b"QUIT":
                self._transport.write(b"221 Bye\r\n")
                self._transport.close()
                return
            else:
                self._transport.write(REPLIES.get(verb, b"502 Not implemented\r\n"))


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Responder, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
