"""The canaries where the network really drops packets (testkit/netns.py): an agent in a network
namespace whose egress to port 25 is dropped and whose resolver never answers sees its port-25
canary time out and its resolver check fail, while a canary on another port greets; that is,
port 25 blocked, and nothing else."""

import asyncio
import os
import sys
from pathlib import Path

import pytest

from shared.messages import SelfCheck, decode_heartbeat
from testkit.netns import DEAD_RESOLVER, Namespaces, missing

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))

ROOT = Path(__file__).resolve().parents[2]
# Run inside the namespace: one round of the canaries, then the heartbeat's view of them.
SELF_CHECK = """
import asyncio, sys
from agent.selfcheck import SelfChecks
from shared.clock import WALL
from shared.messages import AgentHeartbeat, encode

async def main() -> None:
    host = sys.argv[1]
    checks = SelfChecks(
        "DE", [(host, 25), (host, 587)], "canary.example", timeout=2.0, clock=WALL
    )
    await checks.recheck()
    beat = AgentHeartbeat(agent_id="a", country="DE", started_at="", seen_at="",
                          self_check=checks.snapshot())
    print(encode(beat).decode())

asyncio.run(main())
"""


async def test_dropped_port_25_and_a_dead_resolver_fail_their_canaries_and_587_greets(
    netns: Namespaces,
) -> None:
    ns = await netns.new(drop_tcp=[25], nameserver=DEAD_RESOLVER)

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 canary ESMTP\r\n")
        await writer.drain()
        writer.close()

    servers = [await asyncio.start_server(greet, ns.host_ip, port) for port in (25, 587)]
    try:
        code, out = await ns.run(
            sys.executable,
            "-c",
            SELF_CHECK,
            ns.host_ip,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            within=20,
        )
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
    assert code == 0, out
    beat = decode_heartbeat(out.strip().splitlines()[-1].encode())
    check = beat.self_check
    assert isinstance(check, SelfCheck)
    states = {c.target: c for c in check.canaries}
    assert (states[f"{ns.host_ip}:25"].ok, states[f"{ns.host_ip}:25"].error) == (
        False,
        "timeout connecting",
    )
    assert (states[f"{ns.host_ip}:587"].ok, states[f"{ns.host_ip}:587"].error) == (True, "")
    assert states["canary.example"].ok is False
    assert (check.blocked_ports, check.resolver_ok) == ([25], False)
