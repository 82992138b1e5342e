"""A round trip over the Gmail API (issue 82): the real prober against the Gmail peer on loopback
over HTTPS (testkit/peers/gmail.py), never a real mailbox."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme

from agent.probers import gmail as gmail_module
from agent.probers import graph as graph_module
from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.clock import WALL
from shared.messages import CheckResult, RoundTripConfig, RoundTripReceive, RoundTripSend, SmtpAuth
from shared.secret import Secret
from testkit.peers.gmail import GmailPeer, serve_gmail
from testkit.peers.jobs import make_job

MONITOR = "0b7e8d3a-6f0e-4a43-9c55-2f1d8e0f6a01"
SENDER, PROBE = "sender@example.test", "probe@example.test"


@pytest.fixture
async def gmail(ca: trustme.CA) -> AsyncIterator[GmailPeer]:
    async with serve_gmail(GmailPeer({SENDER, PROBE}), ca) as peer:
        yield peer


def config(peer: GmailPeer, *, token: str | None = None, **receive: Any) -> RoundTripConfig:
    return RoundTripConfig(
        send=RoundTripSend(
            api="gmail",
            sender=SENDER,
            auth=SmtpAuth(user=SENDER, access_token=Secret(token or peer.token(SENDER))),
        ),
        to=PROBE,
        receive=RoundTripReceive(
            **{
                "api": "gmail",
                "hostname": "127.0.0.1",
                "port": peer.port,
                "user": PROBE,
                "access_token": token or peer.token(PROBE),
                **receive,
            }
        ),
    )


async def run(
    peer: GmailPeer,
    cfg: RoundTripConfig,
    contexts: SslContexts,
    *,
    timeout_s: float = 3.0,
    monitor_id: str = MONITOR,
) -> CheckResult:
    job = make_job(
        "roundtrip",
        peer.port,
        cfg,
        timeout=timeout_s,
        monitor_id=monitor_id,
        job_id=f"job-{time.monotonic_ns()}",
    )
    return await run_check(job, "agent-t", True, contexts, clock=WALL)


def lists(peer: GmailPeer) -> list[str]:
    return [c for c in peer.calls if c.startswith("GET /gmail/v1/users/") and "/messages?" in c]


async def test_sent_raw_found_by_its_token_and_trashed(
    gmail: GmailPeer, ssl_contexts: SslContexts
) -> None:
    result = await run(gmail, config(gmail), ssl_contexts)
    assert (result.status, result.error_kind, result.folder) == ("up", None, "INBOX"), result
    assert gmail.sent == 1
    assert any(c == "POST /gmail/v1/users/sender@example.test/messages/send" for c in gmail.calls)
    assert result.auth_results is not None and result.auth_results.spf == "pass"
    assert result.phases.submit_ms is not None and result.phases.delivery_ms is not None
    [message] = gmail.mailbox(PROBE)
    assert message.labels == ["TRASH"]
    # Searched by the round's token (not in the trash, spam included); only the candidate's
    # headers fetched.
    listing = lists(gmail)[0]
    assert "q=" in listing and "-in%3Atrash" in listing and "includeSpamTrash=true" in listing
    gets = [c for c in gmail.calls if c.startswith("GET ") and "format=metadata" in c]
    assert len(gets) == 1


async def test_cleanup_delete_deletes(gmail: GmailPeer, ssl_contexts: SslContexts) -> None:
    result = await run(gmail, config(gmail, cleanup="delete"), ssl_contexts)
    assert result.status == "up", result
    assert gmail.mailbox(PROBE) == []


@pytest.mark.parametrize("spam_is_failure", [False, True])
async def test_the_spam_label_is_the_spam_verdict(
    gmail: GmailPeer, ssl_contexts: SslContexts, spam_is_failure: bool
) -> None:
    gmail.spam = True
    cfg = config(gmail)
    cfg.spam_is_failure = spam_is_failure
    result = await run(gmail, cfg, ssl_contexts)
    assert result.folder == "SPAM"
    if spam_is_failure:
        assert (result.status, result.error_kind) == ("down", "spam"), result
    else:
        assert result.status == "up", result


async def test_every_next_page_token_is_followed(
    gmail: GmailPeer, ssl_contexts: SslContexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search finds 4 newer messages quoting the probe: with 2 a page, the probe is on
    page 3."""
    monkeypatch.setattr(gmail_module, "PAGE_SIZE", 2)
    gmail.echoes = 4
    result = await run(gmail, config(gmail), ssl_contexts)
    assert result.status == "up", result
    pages = lists(gmail)
    assert len(pages) >= 3 and "pageToken=4" in pages[2]
    # Every candidate's headers are read; only the probe is trashed.
    assert len(gmail.mailbox(PROBE, "TRASH")) == 1 and len(gmail.mailbox(PROBE, "INBOX")) == 4


async def test_paging_is_bounded(
    gmail: GmailPeer, ssl_contexts: SslContexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gmail_module, "PAGE_SIZE", 1)
    gmail.echoes = gmail_module.PAGES_MAX + 1
    result = await run(gmail, config(gmail), ssl_contexts, timeout_s=10)
    assert (result.status, result.error_kind) == ("down", "protocol"), result
    assert f"past {gmail_module.PAGES_MAX} pages" in result.message
    assert len(lists(gmail)) == gmail_module.PAGES_MAX


async def test_candidates_fetched_are_bounded(gmail: GmailPeer, ssl_contexts: SslContexts) -> None:
    gmail.echoes = gmail_module.CANDIDATES_MAX + 1
    result = await run(gmail, config(gmail), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "protocol"), result
    assert "over the 20 a look fetches" in result.message
    assert not any("format=metadata" in c for c in gmail.calls)


async def test_throttling_is_inconclusive(gmail: GmailPeer, ssl_contexts: SslContexts) -> None:
    gmail.throttle = True
    result = await run(gmail, config(gmail), ssl_contexts)
    assert (result.status, result.error_kind) == ("inconclusive", "inconclusive"), result
    assert "rateLimitExceeded" in result.message and "Retry-After 30" in result.message
    assert len(gmail.calls) == 1


async def test_the_users_quota_spent_is_inconclusive_never_down(
    gmail: GmailPeer, ssl_contexts: SslContexts
) -> None:
    """The mailbox has 10 of its 15,000 units a minute left: the list (5) and the get (5) fit,
    the trash (5) does not: 429 `userRateLimitExceeded`, no verdict."""
    gmail.units[PROBE] = [(time.monotonic(), gmail.units_per_minute - 10)]
    result = await run(gmail, config(gmail), ssl_contexts)
    assert (result.status, result.error_kind) == ("inconclusive", "inconclusive"), result
    assert "userRateLimitExceeded" in result.message and "mailbox leg" in result.message
    assert gmail.used(SENDER) == 100 and gmail.used(PROBE) == gmail.units_per_minute


async def test_a_revoked_token_is_auth(gmail: GmailPeer, ssl_contexts: SslContexts) -> None:
    token = gmail.token(SENDER)
    gmail.expired = True
    result = await run(gmail, config(gmail, token=token), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "auth"), result
    assert "send leg" in result.message and "UNAUTHENTICATED" not in result.message
    assert "401" in result.message and token not in str(result)


@pytest.mark.parametrize(
    ("fault", "said"), [("odd", "not a message list"), ("oversized", "is over 1048576 bytes")]
)
async def test_odd_answers_are_protocol_errors_with_their_reason(
    gmail: GmailPeer, ssl_contexts: SslContexts, fault: str, said: str
) -> None:
    setattr(gmail, fault, True)
    result = await run(gmail, config(gmail), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "protocol"), result
    assert result.message.startswith("mailbox leg: ") and said in result.message


async def test_an_agents_calls_to_one_mailbox_are_at_most_four_at_once(
    gmail: GmailPeer, ssl_contexts: SslContexts
) -> None:
    """Six round trips of six monitors on one mailbox at once, each call slow, never have more
    than 4 calls in flight to it (the Graph session's bound, which Gmail legs share)."""
    gmail.slow_s = 0.2
    monitors = [f"0b7e8d3a-6f0e-4a43-9c55-2f1d8e0f6a{n:02d}" for n in range(6)]
    results = await asyncio.gather(
        *(run(gmail, config(gmail), ssl_contexts, timeout_s=10, monitor_id=m) for m in monitors)
    )
    assert [r.status for r in results] == ["up"] * 6, [r.message for r in results]
    assert gmail.most_in_flight[PROBE] == graph_module.MAILBOX_CALLS
    assert gmail.most_in_flight[SENDER] == graph_module.MAILBOX_CALLS
    assert not graph_module._mailboxes
