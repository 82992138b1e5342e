"""What run_check owns: DNS, the target policy, expiry, the deadline, and never raising."""

import asyncio
import socket

import pytest
from structlog.testing import capture_logs

from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.addresses import is_blocked
from shared.clock import WALL
from shared.messages import MonitorType, encode
from testkit.peers.jobs import make_job
from testkit.peers.scripted import ScriptedPeer

TYPES: list[MonitorType] = ["smtp", "imap", "pop3"]


def free_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("monitor_type", TYPES)
async def test_closed_port_is_refused(monitor_type: MonitorType, ssl_contexts: SslContexts) -> None:
    """The message names the host and the port dialled (and the address, for a name)."""
    port = free_port()
    result = await run_check(make_job(monitor_type, port), "a", True, ssl_contexts, clock=WALL)
    assert (result.status, result.error_kind) == ("down", "refused"), result.message
    assert result.phases.dns_ms is not None and result.phases.connect_ms is None
    assert result.message == f"connection refused by 127.0.0.1 port {port}"
    named = make_job(monitor_type, port, hostname="localhost")
    result = await run_check(named, "a", True, ssl_contexts, clock=WALL)
    assert result.message.startswith(f"connection refused by localhost port {port} (")


@pytest.mark.parametrize("monitor_type", TYPES)
async def test_silent_server_times_out_within_the_deadline(
    monitor_type: MonitorType, ssl_contexts: SslContexts
) -> None:
    async with ScriptedPeer(greeting=None) as peer:
        job = make_job(monitor_type, peer.port, timeout=1.0)
        result = await run_check(job, "a", True, ssl_contexts, clock=WALL)
    assert result.error_kind == "timeout"
    # The job's own deadline ended it (not an OS timeout, nor a phase's budget of its own):
    # one deadline for the whole check, whatever phase it falls in.
    assert result.message == "no answer within 1s (during greeting)"
    assert result.phases.connect_ms is not None and result.phases.greeting_ms is None


async def test_unresolvable_name_is_dns(ssl_contexts: SslContexts) -> None:
    job = make_job("smtp", 25, hostname="nohost.invalid")
    result = await run_check(job, "a", True, ssl_contexts, clock=WALL)
    assert result.error_kind == "dns"
    assert "nohost.invalid" in result.message
    assert result.address is None


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
async def test_loopback_is_blocked_unless_allowed(hostname: str, ssl_contexts: SslContexts) -> None:
    async with ScriptedPeer(b"220 hi\r\n") as peer:
        result = await run_check(
            make_job("smtp", peer.port, hostname=hostname), "a", False, ssl_contexts, clock=WALL
        )
    assert result.error_kind == "blocked_target"
    assert result.address is None
    assert peer.commands == []


async def test_a_blocked_name_is_named_but_its_private_address_is_never_told(
    ssl_contexts: SslContexts,
) -> None:
    """Echoing what a name resolves to would make every agent an oracle for its internal DNS:
    the message names the host, neither the message nor `address` the address."""
    async with ScriptedPeer(b"220 hi\r\n") as peer:
        job = make_job("smtp", peer.port, hostname="localhost")
        result = await run_check(job, "a", False, ssl_contexts, clock=WALL)
    assert result.error_kind == "blocked_target"
    assert result.message.startswith("localhost resolves to a private")
    assert "127.0.0.1" not in encode(result).decode() and "::1" not in result.message


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("10.1.2.3", True),
        ("192.168.0.1", True),
        ("100.64.0.1", True),
        ("169.254.169.254", True),
        ("224.0.0.1", True),
        ("0.0.0.0", True),
        ("240.0.0.1", True),
        ("::1", True),
        ("fe80::1%eth0", True),
        ("fd00::2", True),
        ("::ffff:10.0.0.1", True),
        ("::ffff:127.0.0.1", True),
        # 6to4 (2002::/16) carrying a private, loopback or link-local IPv4 address
        ("2002:a00:1::1", True),
        ("2002:7f00:1::1", True),
        ("2002:a9fe:a9fe::1", True),
        ("2002:c0a8:101::1", True),
        # site-local (fec0::/10), deprecated but routed inside some networks
        ("fec0::1", True),
        ("feff::1", True),
        # Teredo whose client (obfuscated in the last 48 bits) is 10.0.0.1 or 192.0.2.45
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", True),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", True),
        # NAT64 well-known prefix carrying a private, loopback or link-local IPv4 address
        ("64:ff9b::a00:1", True),
        ("64:ff9b::7f00:1", True),
        ("64:ff9b::a9fe:a9fe", True),
        ("64:ff9b:1::a00:1", True),  # local-use NAT64 prefix (RFC 8215): never public
        ("::a00:1", True),  # IPv4-compatible (deprecated)
        ("8.8.8.8", False),
        ("2a00:1450:4001:82a::200e", False),
        ("::ffff:8.8.8.8", False),
        ("2002:808:808::1", False),  # 6to4 of a public address
        ("64:ff9b::808:808", False),  # NAT64 of a public address: what DNS64 agents get
    ],
)
def test_is_blocked(address: str, blocked: bool) -> None:
    assert is_blocked(address) is blocked


async def test_expired_job_is_not_run(ssl_contexts: SslContexts) -> None:
    async with ScriptedPeer(b"220 hi\r\n") as peer:
        job = make_job("smtp", peer.port, expires_in=-1)
        result = await run_check(job, "a", True, ssl_contexts, clock=WALL)
        await asyncio.sleep(0.05)
    assert (result.status, result.error_kind) == ("down", "expired")
    assert result.phases.dns_ms is None
    assert peer.commands == []


async def test_result_echoes_the_job_and_stamps_times(ssl_contexts: SslContexts) -> None:
    job = make_job("pop3", free_port())
    result = await run_check(job, "agent-7", True, ssl_contexts, clock=WALL)
    assert (result.job_id, result.monitor_id, result.monitor_type) == (
        job.job_id,
        job.monitor_id,
        "pop3",
    )
    assert (result.country, result.agent_id, result.scheduled_at) == (
        "DE",
        "agent-7",
        job.scheduled_at,
    )
    assert result.started_at.endswith("Z") and len(result.started_at) == 24
    assert result.finished_at >= result.started_at
    assert result.response_time_ms is not None and result.response_time_ms >= 0


async def test_unexpected_exception_is_internal_logged_never_raised(
    ssl_contexts: SslContexts,
) -> None:
    job = make_job("smtp", 70000)  # the socket layer raises OverflowError: a bug, not an outage
    with capture_logs() as logs:
        result = await run_check(job, "a", True, ssl_contexts, clock=WALL)
    assert result.error_kind == "internal"
    assert "OverflowError" in result.message
    assert [e["event"] for e in logs] == ["probe_internal_error"]
