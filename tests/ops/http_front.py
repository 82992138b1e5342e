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
from tests.ops.starting import until_started

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
    rest: tuple[int, int] | None = None  # the lowest baseline taken so far

    def baseline(self) -> tuple[int, int]:
        """What an attack is judged from: the server's RSS (with the send queues of its
        connections) and open fds before its first attack, or now where lower. On a process
        that served tests before, what they left counts against the next, never for it."""
        now = rss_bytes(self.pid) + queued_bytes(self.port), open_fds(self.pid)
        rest = now if self.rest is None else self.rest
        self.rest = min(rest[0], now[0]), min(rest[1], now[1])
        return self.rest

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

            async def healthy() -> bool | None:
                status = await asyncio.to_thread(get, port, "/health", "127.0.0.1", ctx)
                return True if status == 200 else None

            await until_started(proc, healthy, "200 on the API's /health")
            yield Served(proc.pid, port, ctx, log)

    return serving


class Shared:
    """`serving`, where a call with the settings of the call before it gets that call's process
    again (a start costs some 4.5 CPU-s), and a call with other settings, or after a test
    failed, stops it first; `aclose` stops the last. For tests that a shared process cannot
    judge otherwise: each judged from `baseline`, counting only what it adds to the log and
    /metrics, and spending a rate per address only from addresses no test before it on that
    process spent it from."""

    def __init__(self, serving: Serve) -> None:
        self._serving = serving
        self._held: tuple[tuple[object, ...], Served] | None = None
        self._stack = contextlib.AsyncExitStack()

    @contextlib.asynccontextmanager
    async def __call__(
        self, nofile: int | None = None, ctx: ssl.SSLContext | None = None, **env: str
    ) -> AsyncIterator[Served]:
        key = (nofile, ctx, sorted(env.items()))  # ctx by identity: each TLS test makes its own
        if self._held is None or self._held[0] != key:
            await self.aclose()
            served = await self._stack.enter_async_context(self._serving(nofile, ctx, **env))
            self._held = key, served
        try:
            yield self._held[1]
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        self._held = None
        stack, self._stack = self._stack, contextlib.AsyncExitStack()
        await stack.aclose()


def judge(watch: Watch, base: tuple[int, int], what: str) -> None:
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{what}: {watch.line(*base)}; load average {load}")
    assert watch.health, "no /health probe ran"
    assert watch.p(0.99) < P99_S, watch.line(*base)
    assert max(watch.rss) - base[0] < RSS_GROWTH, watch.line(*base)
