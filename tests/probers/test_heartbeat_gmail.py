"""A heartbeat's mail read from a Gmail mailbox (the Gmail peer on loopback over HTTPS,
testkit/peers/gmail.py): each matching message Gmail received after `since` an arrival at its
internalDate, others left out, nothing trashed or deleted, one listing of at most the newest
`NEWEST`; judged by the arrivals rule, a sender that stops is `down` and `up` again once it
mails again."""

import asyncio
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
import trustme

from agent.probers.base import Recorder, Target
from agent.probers.heartbeat_box import LISTENER, NEWEST, Sought, gmail_arrivals
from controller.arrivals.rules import Rule, judge
from shared.arrivals import Arrival
from shared.messages import RoundTripReceive
from shared.secret import Secret
from shared.timefmt import iso_ms, parse_iso
from testkit.peers.gmail import GmailPeer, serve_gmail

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
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    target = Target("127.0.0.1", ("127.0.0.1",), peer.port, ctx, "127.0.0.1")
    sought = Sought(
        monitor_id=MONITOR,
        country="DE",
        agent_id="agent-t",
        sender=SENDER,
        subject="nightly",
        since=since,
    )
    rec = Recorder(deadline=asyncio.get_running_loop().time() + 10)
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
