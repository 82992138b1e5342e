"""A check frees what it made by reference counting alone: none of the agent's objects (a
prober's protocol, its TLS session, the target) is left in a reference cycle for the cyclic
garbage collector, whose passes over the young objects of every check in flight cost an agent
CPU per check (bench/results/agent-tls-cpu.md).

The peers run in the test's own process, so what they leave behind is not counted: only objects
of types or functions defined in the agent's modules."""

import gc
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.clock import WALL
from shared.messages import ImapPopConfig, JobConfig, MonitorType, SmtpConfig
from testkit.peers.base import LoopbackServer
from testkit.peers.imap import ImapPeer
from testkit.peers.jobs import make_job
from testkit.peers.pop3 import Pop3Peer
from testkit.peers.smtp import SmtpPeer
from tests.probers import test_roundtrip_prober as roundtrip


def _agents(objects: list[object]) -> list[str]:
    """The objects of `objects` the agent's code made: instances of its classes, its
    functions."""
    found = []
    for obj in objects:
        module = (
            getattr(obj, "__module__", None)
            if callable(obj) and not isinstance(obj, type)
            else type(obj).__module__
        )
        if isinstance(module, str) and module.startswith(("agent.", "shared.mailclient.")):
            found.append(f"{type(obj).__qualname__} {getattr(obj, '__qualname__', '')}".strip())
    return found


@contextmanager
def garbage() -> Iterator[list[object]]:
    """What became cyclic garbage in the block, as a list filled when it ends."""
    found: list[object] = []
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def _check_twice(
    monitor_type: MonitorType, port: int, config: JobConfig, contexts: SslContexts
) -> None:
    job = make_job(monitor_type, port, config, hostname="localhost")
    for _ in range(2):
        result = await run_check(job, "agent-t", True, contexts, clock=WALL)
        assert result.status == "up", result.message
        assert (result.tls is not None) == (config != SmtpConfig(ignore_tls=True))


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
@pytest.mark.parametrize("implicit", [True, False], ids=["implicit-tls", "starttls"])
async def test_an_imap_or_pop3_check_leaves_no_cycle(
    protocol: MonitorType, implicit: bool, ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    peer: LoopbackServer
    options = {"ssl_context": server_tls} if implicit else {"starttls": server_tls}
    peer = ImapPeer(**options) if protocol == "imap" else Pop3Peer(**options)  # type: ignore[arg-type]
    config = ImapPopConfig(protocol="imap" if protocol == "imap" else "pop3", tls=implicit)
    async with peer:
        with garbage() as found:
            await _check_twice(protocol, peer.port, config, ssl_contexts)
    assert _agents(found) == []


@pytest.mark.parametrize(
    "config",
    [SmtpConfig(secure=True), SmtpConfig(), SmtpConfig(ignore_tls=True)],
    ids=["smtps", "starttls", "plain"],
)
async def test_an_smtp_check_leaves_no_cycle(
    config: SmtpConfig, ssl_contexts: SslContexts, server_tls: ssl.SSLContext
) -> None:
    tls = {"implicit_tls": server_tls} if config.secure else {"starttls": server_tls}
    async with SmtpPeer(**tls) as peer:  # type: ignore[arg-type]
        with garbage() as found:
            await _check_twice("smtp", peer.port, config, ssl_contexts)
    assert _agents(found) == []


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_a_round_trip_leaves_no_cycle(protocol: str, ssl_contexts: SslContexts) -> None:
    async with roundtrip.rig() as r:
        receive = {} if protocol == "imap" else {"folders": ["INBOX"]}
        cfg = roundtrip.config(r, protocol, receive=receive)
        with garbage() as found:
            for _ in range(2):
                result = await roundtrip.run(r, cfg, ssl_contexts)
                assert result.status == "up", result.message
    assert _agents(found) == []
