"""How much a slow reader's stream queues from a fast peer, on each event loop: anyio's TCP
stream (httpcore's own backend) and the product's (shared/http_backend.py, which the HTTPS
clients reading strangers' answers use).

    python -m bench.read_bursts [--mib 64]

A peer thread sends `--mib` MiB as fast as loopback takes it; the reader takes 64 KiB at a time
with a millisecond between reads and records the most bytes its stream held unread. anyio's
stream pauses its transport only once its reader runs again: asyncio's loop reads once per
wake, uvloop (libuv) up to 32 times. The product's stream pauses its transport within the read
that crosses its bound. bench/results/suite.md has the figures.
"""

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop
from httpcore import AnyIOBackend, AsyncNetworkStream

from shared.http_backend import FlowBackend, FlowStream
from testkit.peers.flood import flooding


async def _most_queued(mib: int, product: bool) -> int:
    with flooding(mib) as port:
        stream = await (FlowBackend() if product else AnyIOBackend()).connect_tcp("127.0.0.1", port)
        most = got = 0
        while got < mib << 20:
            got += len(await stream.read(65536))
            most = max(most, _queued(stream))
            await asyncio.sleep(0.001)  # a reader slower than loopback
        await stream.aclose()
    return most


def _queued(stream: AsyncNetworkStream) -> int:
    """The bytes the stream holds unread (its internals, looked at)."""
    if isinstance(stream, FlowStream):
        return len(stream._reader._buffer)  # type: ignore[union-attr]
    queue = stream._stream._protocol.read_queue  # type: ignore[attr-defined]
    return sum(len(chunk) for chunk in queue)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="MiB the peer sends")
    args = parser.parse_args()
    runners: dict[str, Callable[[Coroutine[Any, Any, int]], int]] = {
        "asyncio": asyncio.run,
        "uvloop": uvloop.run,
    }
    print("| loop | stream | most bytes queued unread |")
    print("|---|---|---|")
    for name, run in runners.items():
        for product, stream in ((False, "anyio (httpcore's)"), (True, "shared.http_backend")):
            print(f"| {name} | {stream} | {run(_most_queued(args.mib, product)) / 2**20:.2f} MiB |")


if __name__ == "__main__":
    main()
