"""A loopback TCP server that runs one coroutine per connection and cleans up after itself."""

import asyncio
import contextlib
import ssl
from types import TracebackType
from typing import Self


class LoopbackServer:
    """`async with Peer(...) as peer:` listens on 127.0.0.1:`peer.port` until the block ends;
    `Peer(...).at(host, port)` listens there instead (a namespace's host side, testkit/netns.py)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.host = "127.0.0.1"
        self.port = 0
        # Every line a client sent, and whether TLS protected it.
        self.heard: list[tuple[bool, str]] = []
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    def at(self, host: str, port: int = 0) -> Self:
        self.host, self.port = host, port
        return self

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def hear(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str | None:
        """The client's next line (recorded in `heard`), or None at end of stream."""
        line = await read_line(reader)
        if line is not None:
            self.heard.append((over_tls(writer), line))
        return line

    def heard_in_clear(self, text: str) -> bool:
        """Whether `text` was in any line the client sent without TLS."""
        return any(text in line for tls, line in self.heard if not tls)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self.handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client hung up, or the test is over
        finally:
            self._sessions.discard(task)
            writer.transport.abort()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(
            self._session, self.host, self.port, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._sessions):
            task.cancel()
        for task in list(self._sessions):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()


async def read_line(reader: asyncio.StreamReader) -> str | None:
    """One line without its CRLF, or None at end of stream."""
    raw = await reader.readline()
    return raw.decode("utf-8", "replace").rstrip("\r\n") if raw else None


def over_tls(writer: asyncio.StreamWriter) -> bool:
    return writer.get_extra_info("ssl_object") is not None
