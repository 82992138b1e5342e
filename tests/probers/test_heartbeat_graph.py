"""A heartbeat's mail read from a Microsoft Graph mailbox (the Graph peer on loopback over
HTTPS, testkit/peers/graph.py): each matching message Graph received after `since` an arrival
at its receivedDateTime, others left out, nothing moved or deleted, one listing a folder of at
most the newest `NEWEST`; judged by the arrivals rule, a sender that stops is `down` and `up`
again once it mails again."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
import trustme

from agent.probers.base import Recorder, Target
from agent.probers.heartbeat_box import LISTENER, NEWEST, Sought, graph_arrivals
from controller.arrivals.rules import Rule, judge
from shared.arrivals import Arrival
from shared.clock import WALL
from shared.messages import RoundTripReceive
from shared.secret import Secret
from shared.timefmt import iso_ms, parse_iso
from testkit.peers.graph import GraphPeer, serve_graph
from testkit.trust import trusting

MONITOR = "6c1f0a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
BOX = "reports@contoso.test"
SENDER = "nightly@erp.example.org"
SUBJECT = "Nightly report"


@pytest.fixture
async def graph(ca: trustme.CA) -> AsyncIterator[GraphPeer]:
    async with serve_graph(GraphPeer({BOX}), ca) as peer:
        yield peer


def deliver(
    peer: GraphPeer, at: datetime, name: str, sender: str = SENDER, subject: str = SUBJECT
) -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = f"ERP <{sender}>", BOX, subject
    m["Message-ID"] = f"<{name}@erp.example.org>"
    m.set_content("all good")
    peer.deliver(BOX, m.as_bytes(), received=at.timestamp())


async def look(peer: GraphPeer, ca: trustme.CA, since: datetime) -> list[Arrival]:
    receive = RoundTripReceive(
        api="graph",
        hostname="127.0.0.1",
        port=peer.port,
        user=BOX,
        access_token=Secret(peer.token()),
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
    return await graph_arrivals(target, receive, sought, rec)


def _changes(peer: GraphPeer) -> list[str]:
    return [c for c in peer.calls if not c.startswith("GET ")]


async def test_matching_mail_is_an_arrival_read_only(graph: GraphPeer, ca: trustme.CA) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    deliver(graph, t0, "old")
    deliver(graph, t0 + timedelta(minutes=20), "one")
    deliver(graph, t0 + timedelta(minutes=21), "other-sender", sender="spam@example.net")
    deliver(graph, t0 + timedelta(minutes=22), "other-subject", subject="Invoice")
    deliver(graph, t0 + timedelta(minutes=30), "two", subject="[prod] NIGHTLY REPORT ok")
    found = await look(graph, ca, since=t0 + timedelta(minutes=10))
    assert sorted((a.arrived_at, a.subject) for a in found) == [
        (iso_ms(t0 + timedelta(minutes=20)), SUBJECT),
        (iso_ms(t0 + timedelta(minutes=30)), "[prod] NIGHTLY REPORT ok"),
    ]
    assert {(a.header_from, a.listener, a.monitor_id) for a in found} == {
        (SENDER, LISTENER, MONITOR)
    }
    assert _changes(graph) == [], "a heartbeat's look moves and deletes nothing"
    assert len(graph.folder(BOX, "inbox")) == 5
    again = await look(graph, ca, since=t0 + timedelta(minutes=10))
    assert {a.arrival_id for a in again} == {a.arrival_id for a in found}


async def test_a_sender_that_stops_is_down_and_recovers(graph: GraphPeer, ca: trustme.CA) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    rule = Rule(every=timedelta(minutes=10), sender=SENDER, subject="nightly")
    watched_from = t0 - timedelta(minutes=5)
    arrivals: dict[str, datetime] = {}

    async def look_since(since: datetime) -> None:
        for a in await look(graph, ca, since=since):
            assert rule.matches(a.header_from, a.mail_from, a.subject)
            arrivals[a.arrival_id] = parse_iso(a.arrived_at)

    for n in range(3):
        deliver(graph, t0 + timedelta(minutes=10 * n), f"r{n}")
    await look_since(watched_from)
    now = t0 + timedelta(minutes=25)
    assert judge(rule, list(arrivals.values()), watched_from, now).state == "up"

    await look_since(t0 + timedelta(minutes=25))
    now = t0 + timedelta(minutes=45)
    verdict = judge(rule, list(arrivals.values()), watched_from, now)
    assert (verdict.state, verdict.late_since) == ("down", t0 + timedelta(minutes=30))

    deliver(graph, t0 + timedelta(minutes=50), "r3")
    await look_since(t0 + timedelta(minutes=45))
    now = t0 + timedelta(minutes=52)
    assert judge(rule, list(arrivals.values()), watched_from, now).state == "up"


async def test_a_huge_mailbox_is_one_listing_of_the_newest(
    graph: GraphPeer, ca: trustme.CA
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    many = NEWEST * 10
    for n in range(many):
        deliver(graph, t0 + timedelta(seconds=n), f"m{n:04d}")
    found = await look(graph, ca, since=t0 - timedelta(minutes=1))
    assert {a.arrived_at for a in found} == {
        iso_ms(t0 + timedelta(seconds=n)) for n in range(many - NEWEST, many)
    }
    lists = [c for c in graph.calls if c.startswith("GET ") and "/messages" in c]
    assert len(lists) == 2, lists  # inbox and junkemail, one page each
