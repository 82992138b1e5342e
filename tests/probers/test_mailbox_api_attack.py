"""A hostile mailbox API (issue 82): a Gmail peer answering with 8 MiB bodies, or with 20 pages of
padded listings, checked again and again by the real prober. The peer runs in a process of its
own (its server's buffers are not the prober's); measured on this process, where the prober
runs: the peak resident size grows by less than RSS_GROWTH_MAX, no file descriptor is left
open, and each check ends within its deadline. Loops are bounded."""

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from agent.probers import gmail as gmail_module
from agent.probers.tls import SslContexts
from shared import embedded
from testkit.peers.gmail import GmailPeer
from tests.probers.test_roundtrip_gmail import PROBE, SENDER, config, run

CHECKS = 20
RSS_GROWTH_MAX = 16 * 2**20


def _peak_reset() -> int:
    """The resident size now, its peak (VmHWM) starting again from it."""
    Path("/proc/self/clear_refs").write_text("5")
    return _peak()


def _peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


TOKEN = "ya29.attack"
# The peer's process: its faults set, the test's token known, HTTPS with the test CA's cert.
PEER = """
import sys, uvicorn
from testkit.peers.gmail import GmailPeer
peer = GmailPeer({sys.argv[5], sys.argv[6]})
peer.tokens[sys.argv[7]] = ""
attack = sys.argv[3]
if attack == "oversized":
    peer.oversized = True
else:
    peer.echoes, peer.padding = int(sys.argv[4]), 400 * 1024
uvicorn.run(peer, host="127.0.0.1", port=int(sys.argv[1]), ssl_certfile=sys.argv[2],
            ssl_keyfile=sys.argv[2], log_config=None, access_log=False, lifespan="off")
"""


@pytest.fixture
async def hostile(
    ca: trustme.CA, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[GmailPeer]:
    """The attack's peer in its own process; a local GmailPeer names its port."""
    attack: str = request.param
    both = tmp_path / "peer.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(both))
    port = embedded.free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PEER,
        str(port),
        str(both),
        attack,
        str(gmail_module.PAGES_MAX),
        SENDER,
        PROBE,
        TOKEN,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                assert time.monotonic() < deadline, "the peer's process never listened"
                await asyncio.sleep(0.1)
                continue
            writer.close()
            break
        peer = GmailPeer({SENDER, PROBE}, port=port)
        yield peer
    finally:
        proc.terminate()
        await proc.wait()


@pytest.mark.parametrize("hostile", ["oversized", "padded_pages"], indirect=True)
async def test_a_hostile_gmail_costs_bounded_memory_and_no_descriptors(
    hostile: GmailPeer, ssl_contexts: SslContexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the agent's loop (uvloop), which reads a socket megabytes ahead of a slow reader
    unless the stream pauses it (shared/http_backend.py): with httpcore's own stream, oversized
    answers grew the peak by 73 to 87 MiB on a loaded host."""
    gmail = hostile
    # Padded pages: 20 of one message and 400 KiB each, past a look's 8 MiB on its 20th page.
    monkeypatch.setattr(gmail_module, "PAGE_SIZE", 1)
    fds, grown, slowest = await _checks(gmail, ssl_contexts)
    print(
        f"\n{CHECKS} checks, peak RSS +{grown / 2**20:.1f} MiB, fds {fds} -> {_fds()},"
        f" slowest check {slowest * 1000:.0f} ms, {os.getloadavg()[0]:.1f} load"
    )
    assert grown < RSS_GROWTH_MAX
    assert _fds() <= fds
    assert slowest < 10


async def _checks(gmail: GmailPeer, ssl_contexts: SslContexts) -> tuple[int, int, float]:
    """CHECKS checks after a warm one: the open descriptors before, the peak RSS's growth and
    the slowest check's seconds."""
    await run(gmail, config(gmail, token=TOKEN), ssl_contexts)  # warm: imports, TLS contexts
    fds = _fds()
    start = _peak_reset()
    slowest = 0.0
    for _ in range(CHECKS):
        began = time.perf_counter()
        result = await run(gmail, config(gmail, token=TOKEN), ssl_contexts, timeout_s=10)
        slowest = max(slowest, time.perf_counter() - began)
        assert (result.status, result.error_kind) == ("down", "protocol"), result
    return fds, _peak() - start, slowest
