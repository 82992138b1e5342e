"""An IMAP/POP3 monitor's mailbox check over Microsoft Graph and the Gmail API (issue 82): the
real prober against the Graph and Gmail peers on loopback over HTTPS (testkit/peers), never a
tenant. Up with its phases timed; throttled `inconclusive`; a revoked token `auth`; a slow
answer `timeout`; an answer of another shape `protocol`."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest
import trustme

from agent.probers import graph as graph_module
from agent.probers.mailbox_check import LIST_TOP
from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.clock import WALL, ManualClock
from shared.messages import CheckResult, ImapPopConfig
from shared.secret import Secret
from testkit.peers.gmail import GmailPeer, serve_gmail
from testkit.peers.graph import GraphPeer, serve_graph
from testkit.peers.jobs import make_job

BOX = "probe@contoso.test"


@pytest.fixture
async def graph(ca: trustme.CA) -> AsyncIterator[GraphPeer]:
    async with serve_graph(GraphPeer({BOX}), ca) as peer:
        yield peer


@pytest.fixture
async def gmail(ca: trustme.CA) -> AsyncIterator[GmailPeer]:
    async with serve_gmail(GmailPeer({BOX}), ca) as peer:
        yield peer


async def check(
    port: int, api: str, token: str, contexts: SslContexts, timeout_s: float = 3.0
) -> CheckResult:
    config = ImapPopConfig(user=BOX, access_token=Secret(token), api=api)
    job = make_job("imap", port, config, timeout=timeout_s)
    return await run_check(job, "agent-t", True, contexts, clock=WALL)


async def test_a_graph_mailbox_check_reads_the_inbox_and_times_its_steps(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    result = await check(graph.port, "graph", graph.token(), ssl_contexts)
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert result.phases.auth_ms is not None and result.phases.fetch_ms is not None
    assert [c.split("?")[0] for c in graph.calls] == [
        f"GET /v1.0/users/{BOX}/mailFolders/inbox",
        f"GET /v1.0/users/{BOX}/mailFolders/inbox/messages",
    ]
    assert f"$top={LIST_TOP}" in graph.calls[1]
    assert graph.sent == 0 and not graph.folder(BOX, "deleteditems")  # nothing changed


async def test_a_throttled_graph_check_is_inconclusive_and_a_revoked_token_auth(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    token = graph.token()
    graph.throttle = True
    throttled = await check(graph.port, "graph", token, ssl_contexts)
    assert (throttled.status, throttled.error_kind) == ("inconclusive", "inconclusive")
    assert "Retry-After 30" in (throttled.message or "")
    assert len(graph.calls) == 1  # no call after the 429
    graph.throttle, graph.unavailable = False, True
    unavailable = await check(graph.port, "graph", token, ssl_contexts)
    assert unavailable.error_kind == "inconclusive"
    graph.unavailable, graph.expired = False, True
    revoked = await check(graph.port, "graph", token, ssl_contexts)
    assert (revoked.status, revoked.error_kind) == ("down", "auth")
    assert "InvalidAuthenticationToken" in (revoked.message or "")
    assert token not in (revoked.message or "")


async def test_a_slow_or_odd_graph_is_a_timeout_or_a_protocol_error(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    token = graph.token()
    graph.odd = True
    odd = await check(graph.port, "graph", token, ssl_contexts)
    assert (odd.status, odd.error_kind) == ("down", "protocol"), odd.message
    graph.odd, graph.slow_s = False, 3.0
    slow = await check(graph.port, "graph", token, ssl_contexts, timeout_s=1.0)
    assert (slow.status, slow.error_kind) == ("down", "timeout"), slow.message


async def test_a_gmail_mailbox_check_reads_the_profile_and_the_inbox_label(
    gmail: GmailPeer, ssl_contexts: SslContexts
) -> None:
    result = await check(gmail.port, "gmail", gmail.token(BOX), ssl_contexts)
    assert (result.status, result.error_kind) == ("up", None), result.message
    assert result.phases.auth_ms is not None and result.phases.fetch_ms is not None
    assert gmail.calls == [
        f"GET /gmail/v1/users/{BOX}/profile",
        f"GET /gmail/v1/users/{BOX}/labels/INBOX",
    ]


async def test_a_throttled_gmail_check_is_inconclusive_and_a_revoked_token_auth(
    gmail: GmailPeer, ssl_contexts: SslContexts
) -> None:
    token = gmail.token(BOX)
    gmail.throttle = True
    throttled = await check(gmail.port, "gmail", token, ssl_contexts)
    assert (throttled.status, throttled.error_kind) == ("inconclusive", "inconclusive")
    gmail.throttle, gmail.expired = False, True
    revoked = await check(gmail.port, "gmail", token, ssl_contexts)
    assert (revoked.status, revoked.error_kind) == ("down", "auth")


async def test_an_api_this_agent_does_not_know_is_a_protocol_error(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    result = await check(graph.port, "exchange-ews", graph.token(), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "protocol")
    assert graph.calls == []


async def test_the_token_never_goes_to_a_server_whose_certificate_fails(
    ssl_contexts: SslContexts,
) -> None:
    """A Graph host with a certificate the agent does not trust: the check fails on TLS, the
    peer sees no request, and the second look that reads the TLS facts carries no token."""
    async with serve_graph(GraphPeer({BOX}), trustme.CA()) as stranger:
        token = stranger.token()
        result = await check(stranger.port, "graph", token, ssl_contexts)
        assert (result.status, result.error_kind) == ("down", "tls"), result.message
        assert stranger.calls == []
        assert token not in (result.message or "")


async def test_an_agent_sends_no_more_than_graphs_budget_per_mailbox(
    graph: GraphPeer, ssl_contexts: SslContexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph's 10,000 requests per 10 minutes per mailbox, scaled down to 3: the check whose
    call would pass it ends `inconclusive` before sending it (the peer counts what it got); ten
    minutes later the mailbox has its budget again."""
    monkeypatch.setattr(graph_module, "MAILBOX_BUDGET", 3)
    monkeypatch.setattr(graph_module, "_spent", {})
    clock = ManualClock(datetime(2026, 11, 28, tzinfo=UTC), monotonic=1000.0)
    token = graph.token()

    async def at_clock() -> CheckResult:
        config = ImapPopConfig(user=BOX, access_token=Secret(token), api="graph")
        job = make_job("imap", graph.port, config, timeout=3.0)
        return await run_check(job, "agent-t", True, ssl_contexts, clock=clock)

    assert (await at_clock()).status == "up"  # 2 calls
    over = await at_clock()
    assert (over.status, over.error_kind) == ("inconclusive", "inconclusive"), over.message
    assert "throttled, not sent" in (over.message or "")
    assert len(graph.calls) == 3  # the fourth was never sent
    clock.advance(graph_module.BUDGET_WINDOW_S)
    assert (await at_clock()).status == "up"
    assert len(graph.calls) == 5


@pytest.mark.parametrize(
    ("spent", "now_s", "left"),
    [
        ({}, 0.0, True),
        ({0: 3}, 59.0, False),  # 3 this minute: the budget is used
        ({0: 2}, 59.0, True),
        ({0: 3}, 600.0, True),  # minute 0 is out of the 10-minute window at minute 10
        ({0: 1, 5: 1, 9: 1}, 599.0, False),
    ],
)
def test_the_call_budget_counts_the_last_ten_minutes(
    spent: dict[int, int], now_s: float, left: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph_module, "_spent", {("s", "m"): dict(spent)})
    assert graph_module.calls_left(("s", "m"), now_s, 3) is left


async def test_a_check_stops_at_the_calls_the_controller_gave_it(
    graph: GraphPeer, ssl_contexts: SslContexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's `apiCalls` (its share of the mailbox's calls across agents): the call past it
    ends the check `inconclusive` unsent, whatever this agent's own count leaves; 0 sends
    nothing; enough runs the check whole."""
    monkeypatch.setattr(graph_module, "_spent", {})
    token = graph.token()

    async def given(calls: int | None) -> CheckResult:
        config = ImapPopConfig(user=BOX, access_token=Secret(token), api="graph")
        job = make_job("imap", graph.port, config, timeout=3.0)
        job = msgspec.structs.replace(job, api_calls=calls)
        return await run_check(job, "agent-t", True, ssl_contexts, clock=WALL)

    one = await given(1)  # the check needs 2 calls
    assert (one.status, one.error_kind) == ("inconclusive", "inconclusive"), one.message
    assert "throttled, not sent" in (one.message or "")
    assert len(graph.calls) == 1
    none = await given(0)
    assert (none.status, none.error_kind) == ("inconclusive", "inconclusive"), none.message
    assert len(graph.calls) == 1  # nothing sent
    assert (await given(2)).status == "up"
    assert (await given(None)).status == "up"  # no allowance from an older controller
    assert len(graph.calls) == 5
