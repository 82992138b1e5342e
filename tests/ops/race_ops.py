"""`python -m tests.ops.race_ops PORT START_AT`: at wall time START_AT, start the ops server on
127.0.0.1:PORT on the loop the agent runs on, and print `listening`, `none` or `crashed: ...`.
Two of these started together race for one port as two agents on one host do. A listening one
keeps the port until its standard input closes: the test closes it once the other has answered,
however late a loaded host started that one."""

import asyncio
import sys
import time

from shared import ops
from shared.loop import run_loop


async def main(port: int) -> str:
    try:
        server = await ops.start("127.0.0.1", port, lambda: None)
    except Exception as exc:
        return f"crashed: {exc!r}"
    if server is None:
        return "none"
    print("listening", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()
    return "closed"


if __name__ == "__main__":
    port, start_at = int(sys.argv[1]), float(sys.argv[2])
    time.sleep(max(0.0, start_at - time.time() - 0.01))
    while time.time() < start_at:  # the last moment spinning: lines the two up closely
        pass
    print(run_loop(main(port)))  # last: after the log lines
