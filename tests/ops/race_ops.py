"""`python -m tests.ops.race_ops`: one side of races for a port, on the loop the agent runs on.

It prints `ready` once loaded, then for each line `PORT START_AT` on its standard input starts
the ops server on 127.0.0.1:PORT at wall time START_AT and prints `listening`, `none` or
`crashed: ...`; a line `close` closes the server it won, if any, and prints `closed`. Two of
these given the same lines race for one port as two agents on one host do, lined up on one
instant by processes already loaded, however slowly a loaded host starts a process."""

import asyncio
import sys
import time

from shared import ops
from shared.loop import run_loop


def until_instant(start_at: float) -> None:
    """Block (the loop has nothing else to do) until wall time `start_at`."""
    time.sleep(max(0.0, start_at - time.time() - 0.01))
    while time.time() < start_at:  # the last moment spinning: lines the two up closely
        pass


async def race(port: int, start_at: float) -> tuple[str, asyncio.Server | None]:
    until_instant(start_at)
    try:
        server = await ops.start("127.0.0.1", port, lambda: None)
    except Exception as exc:
        return f"crashed: {exc!r}", None
    return ("none" if server is None else "listening"), server


async def main() -> None:
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    server: asyncio.Server | None = None
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        if line == "close":
            if server is not None:
                server.close()
                await server.wait_closed()
                server = None
            print("closed", flush=True)
            continue
        port, start_at = line.split()
        outcome, server = await race(int(port), float(start_at))
        print(outcome, flush=True)  # last: after the log lines


if __name__ == "__main__":
    run_loop(main())
