"""controller.web.server_ticks: the API server's main loop ticks once a second (not ten times),
still sends the `Date` header, and exits as soon as it is told to."""

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
import uvicorn

from controller.web import server_ticks
from controller.web.server_ticks import TICK_S, TickingServer
from shared import embedded

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class _Counting(TickingServer):
    ticks = 0

    async def on_tick(self, counter: int) -> bool:
        self.ticks += 1
        return await super().on_tick(counter)


async def _started(server: TickingServer) -> asyncio.Task[None]:
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return task


def _server(port: int) -> _Counting:
    config = uvicorn.Config(_app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    return _Counting(config)


async def test_ticks_once_a_second_and_sends_the_date() -> None:
    port = embedded.free_port()
    server = _server(port)
    task = await _started(server)
    loop = asyncio.get_running_loop()
    began, ticks = loop.time(), server.ticks
    try:
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{port}/")
        assert r.status_code == 200
        assert r.headers["date"].endswith(" GMT")
        await asyncio.sleep(1.5 * TICK_S)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
    elapsed = loop.time() - began
    ticked = server.ticks - ticks
    print(f"{ticked} ticks in {elapsed:.2f} s (uvicorn's own loop: ~{elapsed * 10:.0f})")
    assert 1 <= ticked <= elapsed / TICK_S + 2


async def test_being_told_to_exit_wakes_the_loop_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ticks an hour apart: only the wake-up can end it within the test's wait.
    monkeypatch.setattr(server_ticks, "TICK_S", 3600.0)
    server = _server(embedded.free_port())
    task = await _started(server)
    ticks = server.ticks
    # As uvicorn's signal handler or the controller's stop sets it (handle_exit itself would
    # raise the signal again in this process once the server is down).
    asyncio.get_running_loop().call_soon(setattr, server, "should_exit", True)
    await asyncio.wait_for(task, 10)
    # It left on the wake-up, not on a second's tick: one more tick, the one that saw it.
    assert server.ticks == ticks + 1
