"""The round-trip prober against a real delivery path on loopback: aiosmtpd files the message
into a mailbox that the IMAP and POP3 peers serve (testkit/peers/mailstore.py)."""

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import msgspec
import pytest

from agent.check_runner import CheckRunner
from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from shared.clock import WALL, ManualClock
from shared.messages import (
    CheckResult,
    RoundTripConfig,
    RoundTripReceive,
    RoundTripSend,
    SmtpAuth,
)
from shared.secret import Secret
from shared.timefmt import iso_ms
from testkit.peers.jobs import make_job
from testkit.peers.mailstore import (
    DeliveringHandler,
    MailboxImapPeer,
    MailboxPop3Peer,
    Mailstore,
)
from testkit.peers.smtp import SmtpPeer

MONITOR = "0b7e8d3a-6f0e-4a43-9c55-2f1d8e0f6a01"
OTHER_MONITOR = "5d0c3c1e-1a7b-4f4e-8a55-9e4f3b2d1c00"


@dataclass
class Rig:
    store: Mailstore
    handler: DeliveringHandler
    smtp_port: int
    smtp_auths: list[tuple[bool, str]]  # each AUTH the send server received
    imap: MailboxImapPeer
    pop3: MailboxPop3Peer


@asynccontextmanager
async def rig(
    *,
    idle: bool = True,
    auth_results: str | None = "spf=pass smtp.mailfrom=a; dkim=none",
    **imap_options: bool,
) -> AsyncIterator[Rig]:
    store = Mailstore()
    handler = DeliveringHandler(store, auth_results=auth_results)
    async with (
        SmtpPeer(handler=handler, users={"sender": "pw"}, auth_in_clear=True) as smtp,
        MailboxImapPeer(store, idle=idle, **imap_options) as imap,
        MailboxPop3Peer(store) as pop3,
    ):
        yield Rig(store, handler, smtp.port, smtp.auths, imap, pop3)


def config(r: Rig, protocol: str = "imap", **changes: Any) -> RoundTripConfig:
    receive: dict[str, Any] = {
        "protocol": protocol,
        "hostname": "127.0.0.1",
        "port": r.imap.port if protocol == "imap" else r.pop3.port,
        "user": "probe",
        "password": "secret",
        "allow_plaintext_auth": True,
    }
    if protocol == "imap":
        receive.update(folders=["INBOX", "Junk"], spam_folders=["Junk"])
    receive.update(changes.pop("receive", {}))
    send = {"sender": "probe@sender.test", **changes.pop("send", {})}
    return RoundTripConfig(
        send=RoundTripSend(**send),
        to="probe@mail.test",
        receive=RoundTripReceive(**receive),
        **changes,
    )


async def run(
    r: Rig,
    cfg: RoundTripConfig,
    contexts: SslContexts,
    *,
    timeout_s: float = 3.0,
    country: str = "DE",
    monitor_id: str = MONITOR,
    look_only: str = "",
) -> CheckResult:
    job = make_job(
        "roundtrip",
        r.smtp_port,
        cfg,
        timeout=timeout_s,
        country=country,
        monitor_id=monitor_id,
        job_id=f"job-{country}-{time.monotonic_ns()}",
        look_only=look_only,
    )
    return await run_check(job, "agent-t", True, contexts, clock=WALL)


def leftover(
    monitor_id: str,
    country: str,
    age_s: float,
    token: str = "old",
    to: str = "probe@mail.test",
    now_s: float | None = None,
) -> bytes:
    """A probe message sent `age_s` before `now_s` (the wall when not given)."""
    msg = EmailMessage()
    msg["From"], msg["To"] = "probe@mail.test", to
    sent_ms = int(((time.time() if now_s is None else now_s) - age_s) * 1000)
    msg["X-Mailprobe-Probe"] = f"{monitor_id} {country} {sent_ms} {token}"
    msg.set_content("late")
    return msg.as_bytes().replace(b"\n", b"\r\n")


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "polling"])
async def test_delivered_message_is_found_measured_and_deleted(
    ssl_contexts: SslContexts, idle: bool
) -> None:
    async with rig(idle=idle) as r:
        r.store.delay_s = 0.3
        result = await run(r, config(r), ssl_contexts)
        assert (result.status, result.error_kind) == ("up", None), result.message
        assert result.folder == "INBOX"
        assert result.phases.submit_ms is not None and result.phases.fetch_ms is not None
        # accepted by SMTP → visible: at least the server's delivery delay
        assert result.phases.delivery_ms is not None and result.phases.delivery_ms >= 250
        assert result.hops and result.hops[0].by == "mx.mail.test"
        assert result.hops[0].at is not None and result.hops[0].delay_ms is not None
        assert result.auth_results is not None
        assert (result.auth_results.spf, result.auth_results.dkim) == ("pass", "none")
        assert result.auth_results.authserv_id == "mx.mail.test"
        assert r.store.probes() == [], "the probe message is deleted"
        assert ("IDLE" in r.imap.commands) is idle


async def test_uid_after_the_literal_and_uid_expunge(ssl_contexts: SslContexts) -> None:
    """A server that puts the UID after the header literal is understood; with UIDPLUS only
    the probe's own messages are expunged, not what another client flagged for deletion."""
    async with rig(uid_last=True, uidplus=True) as r:
        r.store.deliver(leftover(OTHER_MONITOR, "DE", age_s=60, token="flagged"), "INBOX")
        r.store.folders["INBOX"][0].deleted = True
        r.store.deliver(leftover(MONITOR, "DE", age_s=60), "INBOX")
        result = await run(r, config(r), ssl_contexts)
        assert (result.status, result.folder) == ("up", "INBOX"), result.message
        assert [h.split()[3] for _, h in r.store.probes()] == ["flagged"]
        assert "EXPUNGE" not in r.imap.commands


async def test_pop3_round_trip_finds_and_deletes(ssl_contexts: SslContexts) -> None:
    async with rig() as r:
        r.store.delay_s = 0.3
        result = await run(r, config(r, "pop3", receive={"folders": ["INBOX"]}), ssl_contexts)
        assert (result.status, result.folder) == ("up", "INBOX"), result.message
        assert result.phases.delivery_ms is not None and result.phases.delivery_ms >= 250
        assert r.store.probes() == []


async def test_message_that_never_arrives_is_not_delivered(ssl_contexts: SslContexts) -> None:
    async with rig() as r:
        r.store.hold = True
        result = await run(r, config(r), ssl_contexts, timeout_s=2.0)
        assert (result.status, result.error_kind) == ("down", "not_delivered"), result.message
        assert r.handler.accepted == 1


async def test_junk_placement_is_reported_and_fails_only_when_the_monitor_says_so(
    ssl_contexts: SslContexts,
) -> None:
    async with rig() as r:
        r.store.route = lambda raw: "Junk"
        tolerant = await run(r, config(r), ssl_contexts)
        assert (tolerant.status, tolerant.folder) == ("up", "Junk"), tolerant.message
        strict = await run(r, config(r, spam_is_failure=True), ssl_contexts)
        assert (strict.status, strict.error_kind, strict.folder) == ("down", "spam", "Junk")
        assert r.store.probes() == []


async def test_slow_delivery_fails_when_slower_than_the_monitor_allows(
    ssl_contexts: SslContexts,
) -> None:
    async with rig() as r:
        r.store.delay_s = 0.6
        result = await run(r, config(r, slow_after_seconds=0.2), ssl_contexts)
        assert (result.status, result.error_kind) == ("down", "slow_delivery"), result.message


async def test_send_leg_failing_is_named_and_nothing_is_watched(
    ssl_contexts: SslContexts,
) -> None:
    async with rig() as r:
        cfg = config(
            r,
            send={"auth": SmtpAuth("sender", Secret("wrong")), "allow_plaintext_auth": True},
        )
        result = await run(r, cfg, ssl_contexts)
        assert (result.status, result.error_kind) == ("down", "auth"), result.message
        assert result.message.startswith("send leg:")
        assert "wrong" not in result.message
        assert r.imap.commands == [] and r.handler.accepted == 0


async def test_send_leg_credentials_never_go_without_tls(ssl_contexts: SslContexts) -> None:
    async with rig() as r:
        cfg = config(r, send={"auth": SmtpAuth("sender", Secret("pw"))})
        result = await run(r, cfg, ssl_contexts)
        assert (result.status, result.error_kind) == ("down", "tls_required"), result.message
        assert r.smtp_auths == [] and r.handler.accepted == 0


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_receive_leg_credentials_never_go_without_tls(
    ssl_contexts: SslContexts, protocol: str
) -> None:
    """The mailbox leg is held to the same rule as the send leg: a mailbox that cannot
    upgrade gets no LOGIN / USER+PASS unless its `allowPlaintextAuth` says so."""
    async with rig() as r:
        cfg = config(r, protocol, receive={"allow_plaintext_auth": False})
        result = await run(r, cfg, ssl_contexts)
        assert (result.status, result.error_kind) == ("down", "tls_required"), result.message
        assert result.message.startswith("mailbox leg:")
        said = r.imap.commands if protocol == "imap" else r.pop3.commands
        assert not {"LOGIN", "AUTHENTICATE", "USER", "PASS"} & set(said), said


async def test_receive_leg_failing_is_named(ssl_contexts: SslContexts) -> None:
    async with rig() as r:
        result = await run(r, config(r, receive={"password": "nope"}), ssl_contexts)
        assert (result.status, result.error_kind) == ("down", "auth"), result.message
        assert result.message.startswith("mailbox leg:")
        assert r.handler.accepted == 1


async def test_a_mailbox_leg_refused_names_the_server_and_port_dialled(
    ssl_contexts: SslContexts,
) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    async with rig() as r:
        result = await run(r, config(r, receive={"port": port}), ssl_contexts)
    assert (result.status, result.error_kind) == ("down", "refused"), result.message
    assert result.message == f"mailbox leg: connection refused by 127.0.0.1 port {port}"


async def test_late_arrivals_of_this_monitor_and_country_are_cleaned_up(
    ssl_contexts: SslContexts,
) -> None:
    """A leftover older than a round is deleted; another monitor's or another country's
    message, and one young enough to be another round's in flight, are left alone."""
    async with rig() as r:
        r.store.deliver(leftover(MONITOR, "DE", age_s=60), "INBOX")
        r.store.deliver(leftover(MONITOR, "DE", age_s=60), "Junk")
        r.store.deliver(leftover(MONITOR, "DE", age_s=0.5, token="inflight"), "INBOX")
        r.store.deliver(leftover(MONITOR, "US", age_s=60, token="us"), "INBOX")
        r.store.deliver(leftover(OTHER_MONITOR, "DE", age_s=60, token="other"), "INBOX")
        result = await run(r, config(r), ssl_contexts)
        assert result.status == "up", result.message
        left = sorted(h.split()[1] + " " + h.split()[3] for _, h in r.store.probes())
        assert left == ["DE inflight", "DE other", "US us"]


async def test_pop3_late_arrivals_are_cleaned_up(ssl_contexts: SslContexts) -> None:
    async with rig() as r:
        r.store.deliver(leftover(MONITOR, "DE", age_s=60), "INBOX")
        r.store.deliver(leftover(OTHER_MONITOR, "DE", age_s=60, token="other"), "INBOX")
        result = await run(r, config(r, "pop3"), ssl_contexts)
        assert result.status == "up", result.message
        assert [h.split()[3] for _, h in r.store.probes()] == ["other"]


@pytest.mark.parametrize("top", [True, False], ids=["capa-top", "no-top"])
async def test_pop3_skips_a_message_another_session_deleted(
    ssl_contexts: SslContexts, top: bool
) -> None:
    """A message deleted by another client (a monitor reading the mailbox over IMAP) after
    this session's STAT is answered `-ERR ... expunged` by TOP: it is skipped, not a failure of
    the round, where the server's CAPA lists TOP. A server that does not do TOP fails as
    before."""
    async with rig() as r:
        r.store.deliver(leftover(OTHER_MONITOR, "DE", age_s=1, token="theirs"), "INBOX")
        inbox = r.store.folders["INBOX"]

        def their_round_took_it() -> None:
            inbox[:] = [m for m in inbox if b"theirs" not in m.raw]

        r.pop3.after_stat = their_round_took_it
        if not top:
            r.pop3.capa = ["USER"]
        result = await run(r, config(r, "pop3"), ssl_contexts)
        if top:
            assert (result.status, result.error_kind) == ("up", None), result.message
            assert r.store.probes() == []
        else:
            assert (result.status, result.error_kind) == ("down", "protocol"), result.message
            assert "TOP failed: -ERR Unknown command." in result.message


async def test_two_monitors_and_two_countries_share_one_mailbox(
    ssl_contexts: SslContexts,
) -> None:
    """Rounds running at once in one mailbox each find their own message and delete only it."""
    async with rig() as r:
        r.store.delay_s = 0.2
        results = await asyncio.gather(
            run(r, config(r), ssl_contexts, country="DE"),
            run(r, config(r), ssl_contexts, country="US"),
            run(r, config(r), ssl_contexts, monitor_id=OTHER_MONITOR),
            run(r, config(r, "pop3"), ssl_contexts, country="FR"),
        )
        assert [x.status for x in results] == ["up"] * 4, [x.message for x in results]
        assert r.handler.accepted == 4
        assert r.store.probes() == []


async def test_passwords_of_both_legs_stay_out_of_results(ssl_contexts: SslContexts) -> None:
    async with rig() as r:
        cfg = config(
            r,
            send={"auth": SmtpAuth("sender", Secret("pw-sendleg")), "allow_plaintext_auth": True},
            receive={"password": "pw-mailbox"},
        )
        r.imap.users["probe"] = "other"
        result = await run(r, cfg, ssl_contexts)
        wire = result.message + repr(cfg)
        assert "pw-sendleg" not in wire and "pw-mailbox" not in wire


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_a_look_only_round_sends_nothing_and_finds_an_earlier_message(
    ssl_contexts: SslContexts, protocol: str
) -> None:
    """A held-back round (`lookOnly`) sends nothing: it looks once, deletes this monitor's and
    country's messages of earlier rounds and says the newest addressed to `to` arrived (`up`,
    its folder, hops and Authentication-Results); a message young enough to be another
    round's in flight, another country's and another monitor's stay."""
    async with rig() as r:
        r.store.deliver(leftover(MONITOR, "DE", age_s=90, token="older"), "INBOX")
        r.store.deliver(leftover(MONITOR, "DE", age_s=40, token="newest"), "INBOX")
        r.store.deliver(leftover(MONITOR, "DE", age_s=0.5, token="inflight"), "INBOX")
        r.store.deliver(leftover(MONITOR, "US", age_s=60, token="us"), "INBOX")
        r.store.deliver(leftover(OTHER_MONITOR, "DE", age_s=60, token="other"), "INBOX")
        result = await run(r, config(r, protocol), ssl_contexts, look_only="delivery_backoff")
        assert (result.status, result.error_kind) == ("up", None), result.message
        assert r.handler.accepted == 0 and r.smtp_auths == [], "nothing sent"
        assert result.phases.submit_ms is None and result.phases.delivery_ms is None
        assert result.message.startswith("delivery_backoff: this round sent nothing; 2 message")
        assert "sent 40." in result.message, result.message
        assert result.folder == "INBOX" and result.hops == []
        assert result.logins == 1
        left = sorted(h.split()[3] for _, h in r.store.probes())
        assert left == ["inflight", "other", "us"]


async def test_a_look_only_round_that_finds_nothing_is_its_hold(
    ssl_contexts: SslContexts,
) -> None:
    """Nothing of an earlier round there (a message of this monitor to another address does
    not count, and is deleted all the same): the result is the hold the job names, `down` on
    the wire as an agent's `expired` is, stored `missed`; nothing sent, no waiting: one look,
    not a watch until the round's timeout, which is longer than this test may take."""
    async with rig() as r:
        r.store.deliver(leftover(MONITOR, "DE", age_s=600, to="old@mail.test"), "INBOX")
        result = await run(
            r, config(r), ssl_contexts, timeout_s=120, look_only="mailbox_unconfirmed"
        )
        assert (result.status, result.error_kind) == ("down", "mailbox_unconfirmed")
        assert "this round sent nothing; no message of an earlier round" in result.message
        assert r.handler.accepted == 0 and r.store.probes() == []
        other = await run(r, config(r), ssl_contexts, look_only="some_newer_hold")
        assert (other.status, other.error_kind) == ("down", "delivery_backoff")
        # A mailbox that refuses the login is `down` as in any round, saying it only looked.
        refused = await run(
            r, config(r, receive={"password": "nope"}), ssl_contexts, look_only="delivery_backoff"
        )
        assert (refused.status, refused.error_kind) == ("down", "auth"), refused.message
        assert refused.message.startswith("mailbox leg:")
        assert refused.message.endswith("(delivery_backoff: this round sent nothing)")
        assert r.handler.accepted == 0


async def test_a_look_only_round_grades_what_it_finds(ssl_contexts: SslContexts) -> None:
    """A late message is as slow as it has been on its way, and spam where it landed: graded
    as the monitor says (both kinds show a delivery, which ends a back-off)."""
    async with rig() as r:
        r.store.deliver(leftover(MONITOR, "DE", age_s=60), "INBOX")
        slow = await run(r, config(r, slow_after_seconds=30), ssl_contexts, look_only="x")
        assert (slow.status, slow.error_kind) == ("down", "slow_delivery"), slow.message
        assert slow.message.endswith("slower than 30s")
        r.store.deliver(leftover(MONITOR, "DE", age_s=60), "Junk")
        spam = await run(r, config(r, spam_is_failure=True), ssl_contexts, look_only="x")
        assert (spam.status, spam.error_kind, spam.folder) == ("down", "spam", "Junk")
        assert r.handler.accepted == 0


async def test_a_look_only_round_judges_ages_on_the_agents_clock(ssl_contexts: SslContexts) -> None:
    """A held-back round tells earlier rounds' messages from one in flight, and says how late
    the newest is, by the clock the agent is given (issue 79): here a year's end, with
    messages stamped by that clock, not the wall."""
    clock = ManualClock(datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC))
    at = clock.now().timestamp()
    async with rig() as r:
        r.store.deliver(leftover(MONITOR, "DE", 40, token="newest", now_s=at), "INBOX")
        r.store.deliver(leftover(MONITOR, "DE", 0.5, token="inflight", now_s=at), "INBOX")
        job = make_job(
            "roundtrip", r.smtp_port, config(r, "imap"), timeout=3.0, look_only="delivery_backoff"
        )
        job = msgspec.structs.replace(
            job,
            scheduled_at=iso_ms(clock.now()),
            expires_at=iso_ms(clock.now() + timedelta(minutes=1)),
        )
        runner = CheckRunner("DE-1", allow_private=True, ssl_contexts=ssl_contexts, clock=clock)
        result = await runner.checked(job)
        assert (result.status, result.error_kind) == ("up", None), result.message
        assert "1 message(s)" in result.message and "sent 40.0s ago" in result.message
        left = sorted(h.split()[3] for _, h in r.store.probes())
        assert left == ["inflight"]
