"""A heartbeat's mail read from a Gmail mailbox (the Gmail peer on loopback over HTTPS,
testkit/peers/gmail.py): each matching message Gmail received after `since` an arrival at its
internalDate, others left out, nothing trashed or deleted, one listing of at most the newest
`NEWEST`; judged by the arrivals rule, a sender that stops is `down` and `up` again once it
mails again."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import msgspec
import pytest
import trustme

from agent.probers.base import Recorder, Target
from agent.probers.heartbeat_box import LISTENER, NEWEST, Sought, gmail_arrivals
from agent.probers.run import build_result
from agent.probers.tls import build_ssl_contexts
from agent.settings import SideCheckSettings, TargetSettings
from agent.sidechecks import heartbeat_mail
from agent.sidechecks.base import Round
from controller.arrivals.rules import Rule, judge
from shared.arrivals import Arrival
from shared.clock import WALL
from shared.messages import ImapCheckJob, ImapPopConfig, RoundTripReceive
from shared.secret import Secret
from shared.sidechecks.heartbeat_mail import GMAIL_LOOK_UNITS, HeartbeatMailAsk, Look
from shared.timefmt import iso_ms, parse_iso
from testkit.peers.gmail import GmailPeer, serve_gmail
from testkit.trust import trusting

MONITOR = "6c1f0a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
BOX = "reports@example.test"
SENDER = "nightly@erp.example.org"
SUBJECT = "Nightly report"


@pytest.fixture
async def gmail(ca: trustme.CA) -> AsyncIterator[GmailPeer]:
    async with serve_gmail(GmailPeer({BOX}), ca) as peer:
        yield peer


def deliver(
    peer: GmailPeer, at: datetime, name: str, sender: str = SENDER, subject: str = SUBJECT
) -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = f"ERP <{sender}>", BOX, subject
    m["Message-ID"] = f"<{name}@erp.example.org>"
    m.set_content("all good")
    peer.deliver(BOX, m.as_bytes(), received=at.timestamp())


async def look(peer: GmailPeer, ca: trustme.CA, since: datetime) -> list[Arrival]:
    receive = RoundTripReceive(
        api="gmail",
        hostname="127.0.0.1",
        port=peer.port,
        user=BOX,
        access_token=Secret(peer.token(BOX)),
    )
    ctx = trusting(ca)
    target = Target("127.0.0.1", ("127.0.0.1",), peer.port, ctx, "127.0.0.1")
    sought = Sought(
        monitor_id=MONITOR,
        country="DE",
        agent_id="agent-t",
        sender=SENDER,
        subject="nightly",
        since=since,
    )
    rec = Recorder(deadline=asyncio.get_running_loop().time() + 10, clock=WALL)
    return await gmail_arrivals(target, receive, sought, rec)


def _changes(peer: GmailPeer) -> list[str]:
    return [c for c in peer.calls if not c.startswith("GET ")]


async def test_matching_mail_is_an_arrival_read_only(gmail: GmailPeer, ca: trustme.CA) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    deliver(gmail, t0, "old")
    deliver(gmail, t0 + timedelta(minutes=20), "one")
    deliver(gmail, t0 + timedelta(minutes=21), "other-sender", sender="spam@example.net")
    deliver(gmail, t0 + timedelta(minutes=22), "other-subject", subject="Invoice")
    deliver(gmail, t0 + timedelta(minutes=30), "two", subject="[prod] NIGHTLY REPORT ok")
    found = await look(gmail, ca, since=t0 + timedelta(minutes=10))
    assert sorted((a.arrived_at, a.subject) for a in found) == [
        (iso_ms(t0 + timedelta(minutes=20)), SUBJECT),
        (iso_ms(t0 + timedelta(minutes=30)), "[prod] NIGHTLY REPORT ok"),
    ]
    assert {(a.header_from, a.listener, a.monitor_id) for a in found} == {
        (SENDER, LISTENER, MONITOR)
    }
    assert _changes(gmail) == [], "a heartbeat's look moves and deletes nothing"
    assert len(gmail.mail[BOX]) == 5
    assert not any("TRASH" in m.labels for m in gmail.mail[BOX])
    again = await look(gmail, ca, since=t0 + timedelta(minutes=10))
    assert {a.arrival_id for a in again} == {a.arrival_id for a in found}


async def test_a_sender_that_stops_is_down_and_recovers(gmail: GmailPeer, ca: trustme.CA) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    rule = Rule(every=timedelta(minutes=10), sender=SENDER, subject="nightly")
    watched_from = t0 - timedelta(minutes=5)
    arrivals: dict[str, datetime] = {}

    async def look_since(since: datetime) -> None:
        for a in await look(gmail, ca, since=since):
            assert rule.matches(a.header_from, a.mail_from, a.subject)
            arrivals[a.arrival_id] = parse_iso(a.arrived_at)

    for n in range(3):
        deliver(gmail, t0 + timedelta(minutes=10 * n), f"r{n}")
    await look_since(watched_from)
    now = t0 + timedelta(minutes=25)
    assert judge(rule, list(arrivals.values()), watched_from, now).state == "up"

    await look_since(t0 + timedelta(minutes=25))
    now = t0 + timedelta(minutes=45)
    verdict = judge(rule, list(arrivals.values()), watched_from, now)
    assert (verdict.state, verdict.late_since) == ("down", t0 + timedelta(minutes=30))

    deliver(gmail, t0 + timedelta(minutes=50), "r3")
    await look_since(t0 + timedelta(minutes=45))
    now = t0 + timedelta(minutes=52)
    assert judge(rule, list(arrivals.values()), watched_from, now).state == "up"


async def test_a_huge_mailbox_is_one_listing_of_the_newest(
    gmail: GmailPeer, ca: trustme.CA
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    many = NEWEST * 10
    for n in range(many):
        deliver(gmail, t0 + timedelta(seconds=n), f"m{n:04d}")
    found = await look(gmail, ca, since=t0 - timedelta(minutes=1))
    assert {a.arrived_at for a in found} == {
        iso_ms(t0 + timedelta(seconds=n)) for n in range(many - NEWEST, many)
    }
    lists = [
        c for c in gmail.calls if c.startswith("GET ") and c.split("?")[0].endswith("/messages")
    ]
    assert len(lists) == 1, lists  # one page


async def test_the_side_check_reads_a_gmail_mailbox_checks_round_within_its_units(
    gmail: GmailPeer, ca: trustme.CA
) -> None:
    """The agent's side check `heartbeat_mail` on a Gmail mailbox check's round: the round's
    own user and token, the look's units (`GMAIL_LOOK_UNITS`) and no more, the matching mail
    as the heartbeat's arrivals; a round given no units reads nothing."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    deliver(gmail, t0, "one")
    deliver(gmail, t0 + timedelta(minutes=1), "other", sender="spam@example.net")
    config = ImapPopConfig(api="gmail", user=BOX, access_token=Secret(gmail.token(BOX)))
    job = ImapCheckJob(
        job_id="8b0b8e9e-9f3c-4d55-9a1b-2f6c7d8e9f01",
        monitor_id="0b9f3c1e-8a42-4d55-9a1b-2f6c7d8e9f01",
        hostname="127.0.0.1",
        port=gmail.port,
        country="DE",
        scheduled_at=iso_ms(t0),
        expires_at=iso_ms(t0 + timedelta(hours=1)),
        api_units=GMAIL_LOOK_UNITS,
        config=config,
    )
    contexts = build_ssl_contexts(cadata=ca.cert_pem.bytes().decode())
    runner = heartbeat_mail.build(
        SideCheckSettings(), TargetSettings(agent_allow_private_targets=True), clock=WALL
    )
    result = build_result(job, "DE-1", None, "ok", t0)
    ask = HeartbeatMailAsk(
        looks=[Look(monitor_id=MONITOR, sender=SENDER, since=iso_ms(t0 - timedelta(minutes=5)))]
    )
    facts = await runner(ask, Round(job, result, gmail.port, None, contexts))
    assert facts is not None
    [looked] = facts.looks
    assert looked.error == "", looked
    assert [(a.monitor_id, a.arrived_at, a.country) for a in looked.arrivals] == [
        (MONITOR, iso_ms(t0), "DE")
    ]
    assert _changes(gmail) == []
    calls = len(gmail.calls)
    refused = msgspec.structs.replace(job, api_units=0)
    facts = await runner(ask, Round(refused, result, gmail.port, None, contexts))
    assert facts is not None and facts.looks[0].arrivals == [] and facts.looks[0].error
    assert len(gmail.calls) == calls, "no units, no call"
