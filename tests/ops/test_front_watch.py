"""The `/health` watch of the front's attack tests (testkit.front_attacks.Watch) checked before
it is believed: it takes off each probe the time the kernel kept the prober or the server's
event loop waiting for a CPU, so it must still see a server whose own loop stalls, and must not
blame a quiet server for a busy machine."""

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from shared import embedded
from testkit.front_attacks import Watch, get

# A server answering /health on a fresh connection; with STALL set, its loop computes for
# 200 ms every 300 ms (work of its own, not waiting for a CPU).
SERVER = """
import asyncio, sys, time
stall = sys.argv[2] == "stall"
async def answer(reader, writer):
    await reader.readuntil(b"\\r\\n\\r\\n")
    writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
    await writer.drain()
    writer.close()
async def stalls():
    while True:
        await asyncio.sleep(0.3)
        end = time.process_time() + 0.2
        while time.process_time() < end:
            pass
async def main():
    server = await asyncio.start_server(answer, "127.0.0.1", int(sys.argv[1]))
    if stall:
        asyncio.get_running_loop().create_task(stalls())
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def _serving(mode: str) -> Iterator[tuple[int, int]]:
    port = embedded.free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), mode], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        yield proc.pid, port
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def stalling() -> Iterator[tuple[int, int]]:
    yield from _serving("stall")


@pytest.fixture
def quiet() -> Iterator[tuple[int, int]]:
    yield from _serving("quiet")


def _watched(pid: int, port: int, seconds: float) -> Watch:
    assert get(port, "/health", "127.0.0.1") == 200
    with Watch(pid, port).running() as watch:
        time.sleep(seconds)
    return watch


def test_a_server_whose_own_loop_stalls_is_seen_late(stalling: tuple[int, int]) -> None:
    watch = _watched(*stalling, 3.0)
    print(watch.line(0, 0))
    assert len(watch.health) >= 10
    assert watch.p(0.99) > 0.1, watch.line(0, 0)


def test_a_quiet_server_is_not_blamed_for_a_busy_machine(quiet: tuple[int, int]) -> None:
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(6)
    ]  # six busy processes on the machine's cores, none of them the server's
    try:
        watch = _watched(*quiet, 3.0)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    print(watch.line(0, 0))
    assert len(watch.health) >= 10
    assert watch.p(0.99) < 0.1, watch.line(0, 0)
