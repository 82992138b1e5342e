"""`python -m controller serve` as a process of its own, for tests of what a replica with some
roles does: started with the roles and ports given, stopped with SIGTERM, which it must take
cleanly (exit 0)."""

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from controller.secrets.box import generate_key


@asynccontextmanager
async def controller_serving(
    database_url: str, nats_url: str, roles: str, ops_port: int, **env: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The controller serving `roles`, its ops endpoints on 127.0.0.1:`ops_port`; `env`: more
    settings."""
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
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
