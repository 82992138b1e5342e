"""The probers' TCP connect on the agent's own event loop (uvloop): an address the resolver
already gave is connected as it is, never looked up again in the loop's thread pool (issue 24),
and a refused or unreachable one fails as the loop's own connect failed."""

import asyncio
import socket
from typing import Any

import uvloop

from agent.probers.base import Recorder, Target, connect_socket
from agent.probers.run import run_check
from agent.probers.tls import build_ssl_contexts
from shared.clock import WALL
from shared.messages import SmtpConfig
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer


class CountingLoop(uvloop.Loop):
    lookups = 0

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        self.lookups += 1
        return await super().getaddrinfo(*args, **kwargs)


def _run(coro: Any) -> tuple[Any, int]:
    with asyncio.Runner(loop_factory=CountingLoop) as runner:
        result = runner.run(coro)
        loop = runner.get_loop()
        assert isinstance(loop, CountingLoop)
        return result, loop.lookups


def test_a_check_connects_without_a_lookup_in_the_loops_thread_pool() -> None:
    async def check() -> str:
        async with SmtpPeer() as peer:
            job = make_job("smtp", peer.port, SmtpConfig(ignore_tls=True), hostname="127.0.0.1")
            result = await run_check(job, "agent-t", True, build_ssl_contexts(), clock=WALL)
        assert result.address == "127.0.0.1"
        return result.status

    status, lookups = _run(check())
    assert status == "up"
    assert lookups == 0


def test_refused_and_unreachable_connects_fail_as_the_loop_reported_them() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
        port = held.getsockname()[1]

        async def connect(addresses: tuple[str, ...]) -> BaseException | None:
            ctx = build_ssl_contexts().verified
            target = Target("refused.example", addresses, port, ctx, "refused.example")
            rec = Recorder(clock=WALL)
            try:
                (await connect_socket(target, rec)).close()
            except OSError as exc:
                return exc
            return None

        refused, _ = _run(connect(("127.0.0.1",)))
        assert isinstance(refused, ConnectionRefusedError)
        assert str(refused) == f"[Errno 111] Connect call failed ('127.0.0.1', {port})"
        # The first address refuses, so the second is tried, and its error is the one raised.
        both, _ = _run(connect(("127.0.0.1", "::1")))
        assert isinstance(both, OSError)
        assert str(both).startswith("[Errno ") and f"('::1', {port}, 0, 0)" in str(both)
