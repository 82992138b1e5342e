"""A TCP path on loopback whose client-to-server direction is `delay_s` late: every chunk a
client sends reaches the server that much after it was sent, in order; the answers come back
at once. What a client far from its server (or on a loaded host) sees, for any protocol,
TLS included (the bytes pass through untouched)."""

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self


class SlowPath:
    def __init__(self, host: str, port: int, delay_s: float) -> None:
        self._target = (host, port)
        self._delay_s = delay_s
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.accepted = 0  # connections taken so far

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        pipes = [self._spawn(self._late(reader, up_writer)), self._spawn(_pipe(up_reader, writer))]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            writer.close()
            up_writer.close()

    async def _late(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, chunk = await chunks.get()
                await asyncio.sleep(max(due - loop.time(), 0))
                writer.write(chunk)
                await writer.drain()
                chunks.task_done()

        sender = self._spawn(send())
        try:
            while chunk := await reader.read(65536):
                chunks.put_nowait((loop.time() + self._delay_s, chunk))
            await chunks.join()  # the client closed: what it sent last still arrives
        finally:
            sender.cancel()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
