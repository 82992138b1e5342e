"""The served API the HTTP front's tests attack (tests/ops/test_http_front*.py): `controller
serve` with the `api` role as a process of its own on loopback, and the judge of what an attack
cost it (`/health` p99, RSS)."""

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from shared import embedded
from testkit.front_attacks import MIB, Watch, get, open_fds, queued_bytes, rss_bytes
from tests.ops.controller_process import controller_serving

P99_S = 0.1
PROBE_S = 0.02
RSS_GROWTH = 100 * MIB
WRITE_S = 2  # API_WRITE_SECONDS of the servers here
ATTACKERS = [f"127.0.0.{i}" for i in range(10, 18)]  # eight source addresses


@dataclass
class Served:
    pid: int
    port: int
    ctx: ssl.SSLContext | None = None
    log: list[bytes] = field(default_factory=list)  # the lines it has logged so far

    def baseline(self) -> tuple[int, int]:
        return rss_bytes(self.pid) + queued_bytes(self.port), open_fds(self.pid)

    def watch(self) -> Watch:
        # A probe every 20 ms: some 300 in an attack's 6 s, so the p99 is the 99th percentile,
        # not the single slowest probe (with 80 probes it was).
        return Watch(self.pid, self.port, every_s=PROBE_S, ctx=self.ctx)


Serve = Callable[..., contextlib.AbstractAsyncContextManager[Served]]


def server(database_url: str, nats_url: str) -> Serve:
    """What the `serve` fixture (tests/ops/conftest.py) gives: a served API per call."""

    @contextlib.asynccontextmanager
    async def serving(
        nofile: int | None = None, ctx: ssl.SSLContext | None = None, **env: str
    ) -> AsyncIterator[Served]:
        port = embedded.free_port()
        settings = {
            "API_PORT": str(port),
            "API_WRITE_SECONDS": str(WRITE_S),
            # the other bounds measured alone, unless a test sets the rate
            "API_REQUESTS_PER_SECOND_PER_ADDRESS": "0",
            **env,
        }
        log: list[bytes] = []
        async with controller_serving(
            database_url, nats_url, "api", embedded.free_port(), nofile, log, **settings
        ) as proc:
            for _ in range(1500):  # the interpreter starting, the streams made
                if await asyncio.to_thread(get, port, "/health", "127.0.0.1", ctx) == 200:
                    break
                assert proc.returncode is None, "the controller exited"
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the API never answered /health")
            yield Served(proc.pid, port, ctx, log)

    return serving


def judge(watch: Watch, base: tuple[int, int], what: str) -> None:
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{what}: {watch.line(*base)}; load average {load}")
    assert watch.health, "no /health probe ran"
    assert watch.p(0.99) < P99_S, watch.line(*base)
    assert max(watch.rss) - base[0] < RSS_GROWTH, watch.line(*base)
