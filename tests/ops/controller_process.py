"""`python -m controller serve` as a process of its own, for tests of what a replica with some
roles does: started with the roles and ports given, stopped with SIGTERM, which it must take
cleanly (exit 0)."""

import asyncio
import collections
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from controller.secrets.box import generate_key

TAIL_LINES = 200  # of the process's log kept for the failure message
STOP_S = 20  # from SIGTERM to its exit


@asynccontextmanager
async def controller_serving(
    database_url: str,
    nats_url: str,
    roles: str,
    ops_port: int,
    nofile: int | None = None,
    log: list[bytes] | None = None,
    **env: str,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The controller serving `roles`, its ops endpoints on 127.0.0.1:`ops_port`; `nofile`: its
    limit of open files (RLIMIT_NOFILE); `log`: given, every line it logs is added to it;
    `env`: more settings."""

    def limits() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller",
        "serve",
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "SECRETS_KEY": generate_key(),
            "CONTROLLER_ROLES": roles,
            "CONTROLLER_METRICS_HOST": "127.0.0.1",
            "CONTROLLER_METRICS_PORT": str(ops_port),
            "LOG_FORMAT": "json",
            **env,
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=limits,
    )
    # read as it comes (its last lines kept), so a chatty process never blocks on a full pipe
    tail: collections.deque[bytes] = collections.deque(maxlen=TAIL_LINES)
    reading = asyncio.create_task(_read_into(proc, tail, log))
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_S)
        except TimeoutError:
            proc.kill()  # never left running past the test
            await proc.wait()
            await reading
            raise AssertionError(
                f"not stopped {STOP_S} s after SIGTERM: killed\n" + b"".join(tail).decode()
            ) from None
        await reading
    assert proc.returncode == 0, b"".join(tail).decode()


async def _read_into(
    proc: asyncio.subprocess.Process, tail: collections.deque[bytes], log: list[bytes] | None
) -> None:
    assert proc.stderr is not None
    async for line in proc.stderr:
        tail.append(line)
        if log is not None:
            log.append(line)
