"""The agent's canaries against real loopback listeners: what each reports, that failures at
once share one run, that a port turning blocked or unblocked is one log line, and that what the
heartbeat carries of them is bounded. (Dropped packets, a `timeout connecting`, come from the
network namespaces of testkit/netns.py.)"""

import asyncio
from datetime import UTC, datetime

from prometheus_client import REGISTRY

from agent.selfcheck import SelfChecks
from shared.clock import WALL, ManualClock
from shared.messages import AgentHeartbeat, CanaryState, encode
from testkit.peers.scripted import ScriptedPeer
from tests.agent.helpers import SmtpLikePeer, capture, closed_port


def by_target(checks: SelfChecks) -> dict[str, CanaryState]:
    return {s.target: s for s in checks.states}


async def test_a_canary_that_answers_is_ok_and_a_closed_port_is_refused_and_blocked(
    country: str,
) -> None:
    closed = closed_port()
    async with SmtpLikePeer() as peer:
        checks = SelfChecks(
            country,
            [("127.0.0.1", peer.port), ("127.0.0.1", closed)],
            "localhost",
            greeting_ports=frozenset({peer.port}),
            clock=WALL,
        )
        await checks.recheck()
    states = by_target(checks)
    good, bad = states[f"127.0.0.1:{peer.port}"], states[f"127.0.0.1:{closed}"]
    assert (good.ok, good.error, good.checked_at is not None) == (True, "", True)
    assert good.latency_ms is not None
    assert (bad.ok, bad.error, bad.latency_ms) == (False, "refused", None)
    assert states["localhost"].ok is True
    assert checks.blocked == [closed]
    assert checks.snapshot().resolver_ok is True
    sample = REGISTRY.get_sample_value
    assert sample("mailprobe_agent_port_blocked", {"country": country, "port": str(closed)}) == 1
    assert sample("mailprobe_agent_port_blocked", {"country": country, "port": str(peer.port)}) == 0
    ok = {"country": country, "kind": "port", "target": f"127.0.0.1:{peer.port}"}
    assert sample("mailprobe_agent_canary_ok", ok) == 1


async def test_a_listener_that_never_greets_fails_a_plain_text_canary(country: str) -> None:
    """Something on the path that accepts connections (a port-25 interceptor) is not a mail
    server: on a plain-text port the canary waits for the greeting line."""
    async with ScriptedPeer(greeting=None) as silent:
        checks = SelfChecks(
            country,
            [("127.0.0.1", silent.port)],
            timeout=0.3,
            greeting_ports=frozenset({silent.port}),
            clock=WALL,
        )
        await checks.recheck()
    (state,) = checks.states
    assert (state.ok, state.error) == (False, "no greeting")


async def test_a_name_that_does_not_resolve_fails_the_resolver_check(country: str) -> None:
    checks = SelfChecks(country, [], "canary.invalid", clock=WALL)
    await checks.recheck()
    (state,) = checks.states
    assert state.ok is False
    assert state.error
    assert checks.snapshot().resolver_ok is False
    assert checks.blocked == []


async def test_failures_at_once_share_one_run_and_a_recheck_soon_after_runs_none(
    country: str,
) -> None:
    async with SmtpLikePeer(delay=0.2) as peer:
        checks = SelfChecks(
            country, [("127.0.0.1", peer.port)], greeting_ports=frozenset({peer.port}), clock=WALL
        )
        await asyncio.gather(*(checks.recheck() for _ in range(20)))
        assert peer.connections == 1
        await checks.recheck()  # within the recheck gap: the states are fresh enough
        assert peer.connections == 1
    (state,) = checks.states
    assert state.ok is True


async def test_a_port_turning_blocked_or_unblocked_is_one_log_line(country: str) -> None:
    port = closed_port()
    checks = SelfChecks(country, [("127.0.0.1", port)], "canary.invalid", recheck_gap=0, clock=WALL)
    with capture() as logs:
        for _ in range(3):
            await checks.recheck()
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        try:
            for _ in range(2):
                await checks.recheck()
        finally:
            server.close()
            await server.wait_closed()
    events = [(e["event"], e.get("port")) for e in logs]
    assert events.count(("port_blocked", port)) == 1
    assert events.count(("port_unblocked", port)) == 1
    assert events.count(("resolver_check_failing", None)) == 1
    assert len(events) == 3  # nothing per check


async def test_the_heartbeat_lists_failing_canaries_first_and_stays_small(country: str) -> None:
    """Sixteen canaries with the longest names and errors still fit the controller's 4 KiB
    limit for a beat: the beat lists a few, failing first, with cut targets."""
    hosts = [(f"{'a' * 60}.{'b' * 60}.{'c' * 60}.{n:02}.example", 25) for n in range(16)]
    checks = SelfChecks(country, hosts, "r" * 250, clock=WALL)
    for n, state in enumerate(checks.states):
        state.ok, state.error = n % 2 == 0, "x" * 80
    snapshot = checks.snapshot()
    assert all(c.ok is False for c in snapshot.canaries[:8])
    beat = AgentHeartbeat(
        agent_id="A" * 64,
        country=country,
        version="1.0.0",
        capacity=200,
        in_flight=200,
        started_at="2026-11-23T06:00:00.000Z",
        seen_at="2026-11-23T06:00:00.000Z",
        self_check=snapshot,
    )
    assert len(encode(beat)) < 4096


async def test_the_recheck_gap_and_the_checked_time_follow_the_clock_given(country: str) -> None:
    """The recheck gap is kept on the monotonic clock the agent is given, and a canary's
    `checkedAt` is its wall instant (issue 79): a manual clock at a year's end, moved by hand."""
    clock = ManualClock(datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC), monotonic=100.0)
    async with SmtpLikePeer() as peer:
        checks = SelfChecks(
            country,
            [("127.0.0.1", peer.port)],
            greeting_ports=frozenset({peer.port}),
            recheck_gap=5.0,
            clock=clock,
        )
        await checks.recheck()
        assert peer.connections == 1
        assert checks.states[0].checked_at == "2026-12-31T23:59:58.000Z"
        await asyncio.sleep(0.1)  # the wall runs on; the clock given stands
        clock.advance(4.9)  # within the gap: the states are fresh enough
        await checks.recheck()
        assert peer.connections == 1
        clock.advance(0.1)  # the gap has passed, in the new year
        await checks.recheck()
        assert peer.connections == 2
    assert checks.states[0].checked_at == "2027-01-01T00:00:03.000Z"
