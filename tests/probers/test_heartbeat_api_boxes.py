"""A heartbeat's mail read from a mailbox behind an API, Gmail's or Microsoft Graph's (each peer
on loopback over HTTPS: testkit/peers/gmail.py, graph.py): each matching message the mailbox
received after `since` an arrival at its received time (Gmail's internalDate, Graph's
receivedDateTime), others left out, nothing moved, trashed or deleted, one listing of at most
the newest `NEWEST` (a folder each on Graph); judged by the arrivals rule, a sender that stops
is `down` and `up` again once it mails again. On Gmail, the agent's side check spends a look's
units and no more."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import msgspec
import pytest
import trustme

from agent.probers.base import Recorder, Target
from agent.probers.heartbeat_box import (
    LISTENER,
    NEWEST,
    Sought,
    gmail_arrivals,
    graph_arrivals,
)
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
from testkit.peers.graph import GraphPeer, serve_graph
from testkit.trust import trusting

MONITOR = "6c1f0a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
SENDER = "nightly@erp.example.org"
SUBJECT = "Nightly report"

Arrivals = Callable[[Target, RoundTripReceive, Sought, Recorder], Awaitable[list[Arrival]]]


@dataclass(frozen=True)
class Api:
    """What differs between the two APIs' mailboxes, as these tests see them."""

    name: str  # RoundTripReceive.api
    box: str
    serve: Callable[[str, trustme.CA], AbstractAsyncContextManager[Any]]
    arrivals: Arrivals
    token: Callable[[Any, str], str]
    kept: Callable[[Any, str], int]  # the messages in the box, none moved or trashed
    listings: Callable[[Any], list[str]]  # the calls that list messages
    pages: int  # listings a look makes: one a folder it reads


def _gmail_kept(peer: GmailPeer, box: str) -> int:
    return sum("TRASH" not in m.labels for m in peer.mail[box])


GMAIL = Api(
    "gmail",
    "reports@example.test",
    lambda box, ca: serve_gmail(GmailPeer({box}), ca),
    gmail_arrivals,
    lambda peer, box: peer.token(box),
    _gmail_kept,
    lambda peer: [
        c for c in peer.calls if c.startswith("GET ") and c.split("?")[0].endswith("/messages")
    ],
    1,
)
GRAPH = Api(
    "graph",
    "reports@contoso.test",
    lambda box, ca: serve_graph(GraphPeer({box}), ca),
    graph_arrivals,
    lambda peer, box: peer.token(),
    lambda peer, box: len(peer.folder(box, "inbox")),
    lambda peer: [c for c in peer.calls if c.startswith("GET ") and "/messages" in c],
    2,  # inbox and junkemail
)


@dataclass
class Box:
    api: Api
    peer: Any
    ca: trustme.CA

    def deliver(
        self, at: datetime, name: str, sender: str = SENDER, subject: str = SUBJECT
    ) -> None:
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = f"ERP <{sender}>", self.api.box, subject
        m["Message-ID"] = f"<{name}@erp.example.org>"
        m.set_content("all good")
        self.peer.deliver(self.api.box, m.as_bytes(), received=at.timestamp())

    async def look(self, since: datetime) -> list[Arrival]:
        receive = RoundTripReceive(
            api=self.api.name,
            hostname="127.0.0.1",
            port=self.peer.port,
            user=self.api.box,
            access_token=Secret(self.api.token(self.peer, self.api.box)),
        )
        target = Target("127.0.0.1", ("127.0.0.1",), self.peer.port, trusting(self.ca), "127.0.0.1")
        sought = Sought(
            monitor_id=MONITOR,
            country="DE",
            agent_id="agent-t",
            sender=SENDER,
            subject="nightly",
            since=since,
        )
        rec = Recorder(deadline=asyncio.get_running_loop().time() + 10, clock=WALL)
        return await self.api.arrivals(target, receive, sought, rec)

    def changes(self) -> list[str]:
        return [c for c in self.peer.calls if not c.startswith("GET ")]


@pytest.fixture(params=[GMAIL, GRAPH], ids=lambda api: api.name)
async def box(request: pytest.FixtureRequest, ca: trustme.CA) -> AsyncIterator[Box]:
    api: Api = request.param
    async with api.serve(api.box, ca) as peer:
        yield Box(api, peer, ca)


async def test_matching_mail_is_an_arrival_read_only(box: Box) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    box.deliver(t0, "old")
    box.deliver(t0 + timedelta(minutes=20), "one")
    box.deliver(t0 + timedelta(minutes=21), "other-sender", sender="spam@example.net")
    box.deliver(t0 + timedelta(minutes=22), "other-subject", subject="Invoice")
    box.deliver(t0 + timedelta(minutes=30), "two", subject="[prod] NIGHTLY REPORT ok")
    found = await box.look(since=t0 + timedelta(minutes=10))
    assert sorted((a.arrived_at, a.subject) for a in found) == [
        (iso_ms(t0 + timedelta(minutes=20)), SUBJECT),
        (iso_ms(t0 + timedelta(minutes=30)), "[prod] NIGHTLY REPORT ok"),
    ]
    assert {(a.header_from, a.listener, a.monitor_id) for a in found} == {
        (SENDER, LISTENER, MONITOR)
    }
    assert box.changes() == [], "a heartbeat's look moves and deletes nothing"
    assert box.api.kept(box.peer, box.api.box) == 5
    again = await box.look(since=t0 + timedelta(minutes=10))
    assert {a.arrival_id for a in again} == {a.arrival_id for a in found}


async def test_a_sender_that_stops_is_down_and_recovers(box: Box) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    rule = Rule(every=timedelta(minutes=10), sender=SENDER, subject="nightly")
    watched_from = t0 - timedelta(minutes=5)
    arrivals: dict[str, datetime] = {}

    async def look_since(since: datetime) -> None:
        for a in await box.look(since=since):
            assert rule.matches(a.header_from, a.mail_from, a.subject)
            arrivals[a.arrival_id] = parse_iso(a.arrived_at)

    for n in range(3):
        box.deliver(t0 + timedelta(minutes=10 * n), f"r{n}")
    await look_since(watched_from)
    now = t0 + timedelta(minutes=25)
    assert judge(rule, list(arrivals.values()), watched_from, now).state == "up"

    await look_since(t0 + timedelta(minutes=25))
    now = t0 + timedelta(minutes=45)
    verdict = judge(rule, list(arrivals.values()), watched_from, now)
    assert (verdict.state, verdict.late_since) == ("down", t0 + timedelta(minutes=30))

    box.deliver(t0 + timedelta(minutes=50), "r3")
    await look_since(t0 + timedelta(minutes=45))
    now = t0 + timedelta(minutes=52)
    assert judge(rule, list(arrivals.values()), watched_from, now).state == "up"


async def test_a_huge_mailbox_is_one_listing_of_the_newest(box: Box) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    many = NEWEST * 10
    for n in range(many):
        box.deliver(t0 + timedelta(seconds=n), f"m{n:04d}")
    found = await box.look(since=t0 - timedelta(minutes=1))
    assert {a.arrived_at for a in found} == {
        iso_ms(t0 + timedelta(seconds=n)) for n in range(many - NEWEST, many)
    }
    lists = box.api.listings(box.peer)
    assert len(lists) == box.api.pages, lists  # one page a folder


@pytest.fixture
async def gmail(ca: trustme.CA) -> AsyncIterator[Box]:
    async with GMAIL.serve(GMAIL.box, ca) as peer:
        yield Box(GMAIL, peer, ca)


async def test_the_side_check_reads_a_gmail_mailbox_checks_round_within_its_units(
    gmail: Box, ca: trustme.CA
) -> None:
    """The agent's side check `heartbeat_mail` on a Gmail mailbox check's round: the round's
    own user and token, the look's units (`GMAIL_LOOK_UNITS`) and no more, the matching mail
    as the heartbeat's arrivals; a round given no units reads nothing."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    gmail.deliver(t0, "one")
    gmail.deliver(t0 + timedelta(minutes=1), "other", sender="spam@example.net")
    peer: GmailPeer = gmail.peer
    config = ImapPopConfig(api="gmail", user=GMAIL.box, access_token=Secret(peer.token(GMAIL.box)))
    job = ImapCheckJob(
        job_id="8b0b8e9e-9f3c-4d55-9a1b-2f6c7d8e9f01",
        monitor_id="0b9f3c1e-8a42-4d55-9a1b-2f6c7d8e9f01",
        hostname="127.0.0.1",
        port=peer.port,
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
    facts = await runner(ask, Round(job, result, peer.port, None, contexts))
    assert facts is not None
    [looked] = facts.looks
    assert looked.error == "", looked
    assert [(a.monitor_id, a.arrived_at, a.country) for a in looked.arrivals] == [
        (MONITOR, iso_ms(t0), "DE")
    ]
    assert gmail.changes() == []
    calls = len(peer.calls)
    refused = msgspec.structs.replace(job, api_units=0)
    facts = await runner(ask, Round(refused, result, peer.port, None, contexts))
    assert facts is not None and facts.looks[0].arrivals == [] and facts.looks[0].error
    assert len(peer.calls) == calls, "no units, no call"
