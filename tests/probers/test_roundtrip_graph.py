"""A round trip over Microsoft Graph (issue 82): the real prober against the Graph peer on
loopback over HTTPS (testkit/peers/graph.py), never a tenant."""

import asyncio
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest
import trustme

from agent.probers import graph as graph_module
from agent.probers.graph import MAILBOX_CALLS, MESSAGES_MAX, PAGE_SIZE
from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.clock import WALL
from shared.messages import (
    CheckResult,
    RoundTripConfig,
    RoundTripReceive,
    RoundTripSend,
    SmtpAuth,
)
from shared.secret import Secret
from testkit.peers.graph import GraphPeer, serve_graph
from testkit.peers.jobs import make_job

MONITOR = "0b7e8d3a-6f0e-4a43-9c55-2f1d8e0f6a01"
OTHER_MONITOR = "5d0c3c1e-1a7b-4f4e-8a55-9e4f3b2d1c00"
SENDER, PROBE = "sender@contoso.test", "probe@contoso.test"


@pytest.fixture
async def graph(ca: trustme.CA) -> AsyncIterator[GraphPeer]:
    async with serve_graph(GraphPeer({SENDER, PROBE}), ca) as peer:
        yield peer


def config(peer: GraphPeer, *, token: str | None = None, **receive: Any) -> RoundTripConfig:
    token = token if token is not None else peer.token()
    return RoundTripConfig(
        send=RoundTripSend(
            api="graph", sender=SENDER, auth=SmtpAuth(user=SENDER, access_token=Secret(token))
        ),
        to=PROBE,
        receive=RoundTripReceive(
            **{
                "api": "graph",
                "hostname": "127.0.0.1",
                "port": peer.port,
                "user": PROBE,
                "access_token": token,
                **receive,
            }
        ),
    )


async def run(
    peer: GraphPeer,
    cfg: RoundTripConfig,
    contexts: SslContexts,
    *,
    timeout_s: float = 3.0,
    monitor_id: str = MONITOR,
    look_only: str = "",
) -> CheckResult:
    job = make_job(
        "roundtrip",
        peer.port,
        cfg,
        timeout=timeout_s,
        monitor_id=monitor_id,
        job_id=f"job-{time.monotonic_ns()}",
        look_only=look_only,
    )
    return await run_check(job, "agent-t", True, contexts, clock=WALL)


def probe_message(monitor_id: str, age_s: float, token: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = SENDER, PROBE
    msg["Subject"] = f"mailprobe round trip {token[:8]}"
    sent_ms = int((time.time() - age_s) * 1000)
    msg["X-Mailprobe-Probe"] = f"{monitor_id} DE {sent_ms} {token}"
    msg.set_content("probe")
    return msg.as_bytes()


def lists(peer: GraphPeer) -> list[str]:
    return [c for c in peer.calls if c.startswith("GET ") and "/messages" in c]


async def test_sent_with_sendmail_found_recorded_and_moved_to_deleted_items(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    result = await run(graph, config(graph), ssl_contexts)
    assert (result.status, result.error_kind, result.folder) == ("up", None, "inbox"), result
    assert graph.sent == 1
    assert any(c.startswith("POST /v1.0/users/sender@contoso.test/sendMail") for c in graph.calls)
    assert result.auth_results is not None
    assert (result.auth_results.spf, result.auth_results.dkim) == ("pass", "pass")
    assert result.arc is not None and (result.arc.instances, result.arc.cv) == (1, "none")
    assert result.hops and result.hops[-1].by == "mx.contoso.test"
    assert graph.folder(PROBE, "inbox") == []
    assert len(graph.folder(PROBE, "deleteditems")) == 1
    assert result.phases.submit_ms is not None and result.phases.delivery_ms is not None
    # Filtered on the probes' subject, only the fields needed.
    listing = lists(graph)[0]
    assert "$filter=startswith%28subject%2C%27mailprobe%20round%20trip%27%29" in listing
    assert "internetMessageHeaders" in listing


async def test_cleanup_delete_deletes(graph: GraphPeer, ssl_contexts: SslContexts) -> None:
    result = await run(graph, config(graph, cleanup="delete"), ssl_contexts)
    assert result.status == "up", result
    assert graph.folder(PROBE, "inbox") == graph.folder(PROBE, "deleteditems") == []
    assert any(c.startswith("DELETE /v1.0/users/probe@contoso.test/messages/") for c in graph.calls)


async def test_a_busy_inbox_is_read_page_after_page(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    """The probe message is on page 3: 2 pages of another monitor's newer probes lie above
    it. Those are left where they are."""
    later = time.time() + 600
    for n in range(2 * PAGE_SIZE + 5):
        graph.deliver(PROBE, probe_message(OTHER_MONITOR, 1, f"other{n:04d}"), received=later)
    result = await run(graph, config(graph), ssl_contexts)
    assert result.status == "up", result
    pages = [c for c in lists(graph) if "/mailFolders/inbox/" in c]
    assert len(pages) >= 3 and "skip=" in pages[2]
    assert len(graph.folder(PROBE, "inbox")) == 2 * PAGE_SIZE + 5  # others' untouched


async def test_paging_is_bounded(graph: GraphPeer, ssl_contexts: SslContexts) -> None:
    for n in range(MESSAGES_MAX + 1):
        graph.deliver(PROBE, probe_message(OTHER_MONITOR, 1, f"o{n:05d}"))
    result = await run(graph, config(graph), ssl_contexts, timeout_s=20)
    assert (result.status, result.error_kind) == ("down", "protocol"), result
    assert "past 20 pages" in result.message
    assert len(lists(graph)) == 20


@pytest.mark.parametrize("spam_is_failure", [False, True])
async def test_junk_email_is_read_for_the_spam_verdict(
    graph: GraphPeer, ssl_contexts: SslContexts, spam_is_failure: bool
) -> None:
    graph.junk = True
    cfg = config(graph)
    cfg.spam_is_failure = spam_is_failure
    result = await run(graph, cfg, ssl_contexts)
    assert result.folder == "junkemail"
    if spam_is_failure:
        assert (result.status, result.error_kind) == ("down", "spam"), result
    else:
        assert result.status == "up", result
    assert graph.folder(PROBE, "junkemail") == []


async def test_leftovers_of_earlier_rounds_are_cleaned_up(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    graph.deliver(PROBE, probe_message(MONITOR, 3600, "old-round-token"))
    graph.deliver(PROBE, probe_message(OTHER_MONITOR, 3600, "other-monitor"))
    result = await run(graph, config(graph), ssl_contexts)
    assert result.status == "up", result
    left = [m.subject for m in graph.folder(PROBE, "inbox")]
    assert left == ["mailprobe round trip other-mo"]
    assert len(graph.folder(PROBE, "deleteditems")) == 2


@pytest.mark.parametrize("fault", ["throttle", "unavailable"])
async def test_throttling_is_inconclusive_and_honoured(
    graph: GraphPeer, ssl_contexts: SslContexts, fault: str
) -> None:
    cfg = config(graph)
    setattr(graph, fault, True)
    result = await run(graph, cfg, ssl_contexts)
    assert (result.status, result.error_kind) == ("inconclusive", "inconclusive"), result
    assert "throttled" in result.message and "Retry-After 30" in result.message
    assert len(graph.calls) == 1  # nothing more asked before Retry-After


async def test_throttled_mailbox_leg_is_inconclusive_too(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    """Sent fine, then the listing is throttled: no verdict, never `not_delivered`."""
    cfg = config(graph)
    original = graph._list

    def throttled(
        user: str, folder: str, query: dict[str, list[str]], path: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        graph.throttle = True
        return original(user, folder, query, path)

    graph._list = throttled  # type: ignore[method-assign]
    # The first listing goes through; the throttle starts with the next call.
    result = await run(graph, cfg, ssl_contexts)
    assert result.status == "inconclusive", result
    assert result.message.startswith("mailbox leg: throttled"), result.message


async def test_an_expired_token_is_auth(graph: GraphPeer, ssl_contexts: SslContexts) -> None:
    graph.expired = True
    result = await run(graph, config(graph), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "auth"), result
    assert "send leg" in result.message and "InvalidAuthenticationToken" in result.message


async def test_a_token_of_nobody_is_auth_on_the_mailbox_leg(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    cfg = config(graph)
    cfg.receive.access_token = "not-issued"  # type: ignore[assignment]
    cfg.receive.__post_init__()
    result = await run(graph, cfg, ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "auth"), result
    assert result.message.startswith("mailbox leg: ")


async def test_a_mailbox_outside_the_apps_scope_is_auth(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    graph.scoped = {SENDER}
    result = await run(graph, config(graph), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "auth"), result
    assert "ErrorAccessDenied" in result.message and PROBE in result.message


@pytest.mark.parametrize(
    ("fault", "said"),
    [("oversized", "over 1048576 bytes"), ("odd", "is not a message list")],
)
async def test_odd_answers_are_protocol_errors_with_their_reason(
    graph: GraphPeer, ssl_contexts: SslContexts, fault: str, said: str
) -> None:
    setattr(graph, fault, True)
    result = await run(graph, config(graph), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "protocol"), result
    assert said in result.message and result.message.startswith("mailbox leg: ")


async def test_slow_answers_end_at_the_deadline(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    graph.slow_s = 5
    started = time.monotonic()
    result = await run(graph, config(graph), ssl_contexts, timeout_s=1.0)
    assert (result.status, result.error_kind) == ("down", "timeout"), result
    assert time.monotonic() - started < 3


async def test_a_next_link_elsewhere_is_not_followed(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    for n in range(PAGE_SIZE + 1):
        graph.deliver(PROBE, probe_message(OTHER_MONITOR, 1, f"o{n:04d}"))
    graph.url = "https://127.0.0.2:1"  # the links it writes point at another host
    result = await run(graph, config(graph), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "protocol"), result
    assert "points elsewhere" in result.message
    assert not any("127.0.0.2" in c for c in graph.calls)


async def test_the_token_stays_out_of_results(graph: GraphPeer, ssl_contexts: SslContexts) -> None:
    token = graph.token()
    graph.expired = True
    result = await run(graph, config(graph, token=token), ssl_contexts)
    assert token not in str(result) and token not in result.message


@pytest.mark.parametrize("leg", ["send", "receive"])
async def test_an_api_the_agent_does_not_know_is_named(
    graph: GraphPeer, ssl_contexts: SslContexts, leg: str
) -> None:
    cfg = config(graph)
    if leg == "send":
        cfg.send.api = "ews"
    else:
        cfg.receive.api = "ews"
    result = await run(
        graph, cfg, ssl_contexts, look_only="" if leg == "send" else "delivery_backoff"
    )
    assert (result.status, result.error_kind) == ("down", "protocol"), result
    assert "api 'ews' is not one this agent knows" in result.message
    assert graph.calls == []


async def test_an_agents_calls_to_one_mailbox_are_at_most_four_at_once(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    """Graph's limit of 4 concurrent requests per mailbox: six round trips of six monitors on
    one mailbox at once, each call slow, never have more than 4 calls in flight to it."""
    graph.slow_s = 0.2
    monitors = [f"0b7e8d3a-6f0e-4a43-9c55-2f1d8e0f6a{n:02d}" for n in range(6)]
    results = await asyncio.gather(
        *(run(graph, config(graph), ssl_contexts, timeout_s=10, monitor_id=m) for m in monitors)
    )
    assert [r.status for r in results] == ["up"] * 6, [r.message for r in results]
    assert graph.most_in_flight[PROBE] == MAILBOX_CALLS
    assert graph.most_in_flight[SENDER] == MAILBOX_CALLS
    assert not graph_module._mailboxes  # nothing kept once the checks are done


async def test_a_round_trip_stops_at_the_calls_the_controller_gave_it(
    graph: GraphPeer, ssl_contexts: SslContexts
) -> None:
    """`apiCalls` counts the job's calls over both legs: given 1, the send goes and the mailbox
    leg's first call is not sent; the round is `inconclusive` (throttled), never `down`."""
    job = make_job(
        "roundtrip",
        graph.port,
        config(graph),
        timeout=3.0,
        monitor_id=MONITOR,
        job_id=f"job-{time.monotonic_ns()}",
        api_calls=1,
    )
    result = await run_check(job, "agent-t", True, ssl_contexts, clock=WALL)
    assert (result.status, result.error_kind) == ("inconclusive", "inconclusive"), result.message
    assert "throttled, not sent" in (result.message or "")
    assert len(graph.calls) == 1 and graph.sent == 1
