"""A heartbeat's mail read from a real mailbox (Debian's Dovecot over IMAPS and POP3S, Maildir):
each matching message after `since` an arrival at the time the server took it (IMAP's
INTERNALDATE, POP3's newest Received line), others left out, the mailbox left as it was, a look
bounded to the newest `NEWEST`; the arrivals judged by the
heartbeat rule the receiver's arrivals are judged by (controller.arrivals.rules): a sender
that stops for longer than the period is `down`, and `up` again once it mails again."""

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
import trustme

from agent.probers.base import Recorder, Target
from agent.probers.heartbeat_box import (
    LISTENER,
    NEWEST,
    Sought,
    imap_arrivals,
    pop3_arrivals,
)
from controller.arrivals.rules import Rule, judge
from shared.arrivals import Arrival
from shared.clock import WALL
from shared.messages import RoundTripReceive
from shared.secret import Secret
from shared.timefmt import iso_ms, parse_iso
from testkit.oauth2 import dovecot
from testkit.oauth2.dovecot import Dovecot, client_context

USER = "alice@example.com"
PASSWORD = "heartbeat-box-password"
MONITOR = "6c1f0a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
SENDER = "nightly@erp.example.org"
SUBJECT = "Nightly report"


@pytest.fixture(scope="module")
def mail_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
async def box(mail_ca: trustme.CA) -> AsyncIterator[Dovecot]:
    if (why := dovecot.missing()) is not None:
        pytest.skip(why)
    async with Dovecot(mail_ca, {USER: PASSWORD}) as server:
        yield server


def _maildir(dc: Dovecot) -> Path:
    home = dc.homes / "alice"
    maildir = home / "Maildir"
    for made in (home, maildir, maildir / "cur", maildir / "tmp", maildir / "new"):
        made.mkdir(exist_ok=True)
        os.chown(made, *dc.owner)
    return maildir


def _empty(dc: Dovecot) -> None:
    """A fresh mailbox: Dovecot's index is dropped with the messages."""
    maildir = _maildir(dc)
    for path in sorted(maildir.rglob("*"), reverse=True):
        if path.is_file():
            path.unlink()


def deliver(
    dc: Dovecot, at: datetime, name: str, sender: str = SENDER, subject: str = SUBJECT
) -> None:
    """A message filed into the inbox as the server took it at `at`: its INTERNALDATE is the
    file's mtime, and the delivering server's Received line says so (the sender's Date an hour
    earlier, a clock that is off)."""
    m = EmailMessage()
    m["Received"] = f"from erp.example.org by mail.example.com; {format_datetime(at)}"
    m["Date"] = format_datetime(at - timedelta(hours=1))
    m["From"], m["To"], m["Subject"] = f"ERP <{sender}>", USER, subject
    m["Message-ID"] = f"<{name}@erp.example.org>"
    m.set_content("all good")
    path = _maildir(dc) / "new" / f"{int(at.timestamp())}.{name}.localhost"
    path.write_bytes(m.as_bytes().replace(b"\n", b"\r\n"))
    os.chown(path, *dc.owner)
    os.utime(path, (at.timestamp(), at.timestamp()))


async def look(
    dc: Dovecot, ca: trustme.CA, since: datetime, protocol: str = "imap", **match: str
) -> list[Arrival]:
    receive = RoundTripReceive(
        protocol="pop3" if protocol == "pop3" else "imap",
        hostname="127.0.0.1",
        user=USER,
        password=Secret(PASSWORD),
        tls=True,
    )
    port = dc.ports[f"{protocol}s"]
    target = Target("127.0.0.1", ("127.0.0.1",), port, client_context(ca), "127.0.0.1")
    sought = Sought(
        monitor_id=MONITOR,
        country="DE",
        agent_id="agent-t",
        sender=match.get("sender", SENDER),
        subject=match.get("subject", "nightly"),
        since=since,
    )
    rec = Recorder(deadline=asyncio.get_running_loop().time() + 10, clock=WALL)
    read = pop3_arrivals if protocol == "pop3" else imap_arrivals
    return await read(target, receive, sought, rec)


def _flags(dc: Dovecot) -> list[str]:
    maildir = _maildir(dc)
    return sorted(p.name.partition(":2,")[2] for p in (maildir / "cur").iterdir())


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_matching_mail_is_an_arrival_read_only(
    box: Dovecot, mail_ca: trustme.CA, protocol: str
) -> None:
    _empty(box)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    deliver(box, t0, "old")  # before `since`
    deliver(box, t0 + timedelta(minutes=20), "one")
    deliver(box, t0 + timedelta(minutes=21), "other-sender", sender="spam@example.net")
    deliver(box, t0 + timedelta(minutes=22), "other-subject", subject="Invoice")
    deliver(box, t0 + timedelta(minutes=30), "two", subject="[prod] NIGHTLY REPORT ok")
    found = await look(box, mail_ca, protocol=protocol, since=t0 + timedelta(minutes=10))
    assert sorted((a.arrived_at, a.subject) for a in found) == [
        (iso_ms(t0 + timedelta(minutes=20)), SUBJECT),
        (iso_ms(t0 + timedelta(minutes=30)), "[prod] NIGHTLY REPORT ok"),
    ]
    assert {a.header_from for a in found} == {SENDER}
    assert {(a.monitor_id, a.country, a.listener, a.peer) for a in found} == {
        (MONITOR, "DE", LISTENER, "127.0.0.1")
    }
    # Read-only: every message still there, none marked seen or deleted.
    assert len(_flags(box)) + len(list((_maildir(box) / "new").iterdir())) == 5
    assert not any("S" in f or "T" in f for f in _flags(box))
    # The same message on the next look is the same arrival (stored and counted once).
    again = await look(box, mail_ca, protocol=protocol, since=t0 + timedelta(minutes=10))
    assert {a.arrival_id for a in again} == {a.arrival_id for a in found}
    assert len({a.arrival_id for a in found}) == 2


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_a_sender_that_stops_is_down_and_recovers(
    box: Dovecot, mail_ca: trustme.CA, protocol: str
) -> None:
    """Every 10 minutes, no grace: three reports, then nothing for 30 minutes, then one."""
    _empty(box)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    rule = Rule(every=timedelta(minutes=10), sender=SENDER, subject="nightly")
    watched_from = t0 - timedelta(minutes=5)
    arrivals: dict[str, datetime] = {}

    async def look_at(now: datetime, since: datetime) -> None:
        for a in await look(box, mail_ca, protocol=protocol, since=since):
            assert rule.matches(a.header_from, a.mail_from, a.subject)
            arrivals[a.arrival_id] = parse_iso(a.arrived_at)

    for n in range(3):
        deliver(box, t0 + timedelta(minutes=10 * n), f"r{n}")
    await look_at(t0 + timedelta(minutes=25), watched_from)
    verdict = judge(rule, list(arrivals.values()), watched_from, t0 + timedelta(minutes=25))
    assert verdict.state == "up"

    # The sender stops: a look 25 minutes after its last report finds nothing new.
    await look_at(t0 + timedelta(minutes=45), t0 + timedelta(minutes=25))
    assert len(arrivals) == 3
    verdict = judge(rule, list(arrivals.values()), watched_from, t0 + timedelta(minutes=45))
    assert verdict.state == "down"
    assert verdict.late_since == t0 + timedelta(minutes=30)

    # It mails again: the next look finds it and the heartbeat is up.
    deliver(box, t0 + timedelta(minutes=50), "r3")
    await look_at(t0 + timedelta(minutes=52), t0 + timedelta(minutes=45))
    assert len(arrivals) == 4
    verdict = judge(rule, list(arrivals.values()), watched_from, t0 + timedelta(minutes=52))
    assert verdict.state == "up"


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_a_huge_mailbox_is_read_to_the_newest_only(
    box: Dovecot, mail_ca: trustme.CA, protocol: str
) -> None:
    """A stranger's mailbox with 10 times the bound of matching messages: one look reads the
    newest NEWEST of them."""
    _empty(box)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    many = NEWEST * 10
    for n in range(many):
        deliver(box, t0 + timedelta(seconds=n), f"m{n:04d}")
    found = await look(box, mail_ca, protocol=protocol, since=t0 - timedelta(minutes=1))
    assert len(found) == NEWEST
    newest = {iso_ms(t0 + timedelta(seconds=n)) for n in range(many - NEWEST, many)}
    assert {a.arrived_at for a in found} == newest


def file_many(dc: Dovecot, first: datetime, n: int, step: timedelta, tag: str) -> None:
    """`n` matching messages filed as read mail (Maildir's cur/), `step` apart from `first`:
    each `deliver`'s message, written from one template."""
    cur = _maildir(dc) / "cur"
    for i in range(n):
        at = first + i * step
        text = (
            f"Received: from erp.example.org by mail.example.com; {format_datetime(at)}\r\n"
            f"From: ERP <{SENDER}>\r\nTo: {USER}\r\nSubject: {SUBJECT}\r\n"
            f"Message-ID: <{tag}{i}@erp.example.org>\r\n\r\nall good\r\n"
        )
        path = cur / f"{int(at.timestamp())}.{tag}{i}.localhost:2,S"
        path.write_text(text)
        os.chown(path, *dc.owner)
        os.utime(path, (at.timestamp(), at.timestamp()))


async def test_a_folder_whose_matches_overflow_one_search_answer_is_read_to_its_newest(
    box: Dovecot, mail_ca: trustme.CA
) -> None:
    """14,000 matching messages of the last hours (a heartbeat's mail nobody deletes, or a busy
    shared inbox read for any mail): their UIDs (1 to 14,000) take 73 KB in one SEARCH answer,
    past the session's 64 KiB line bound. Searched newest first a window at a time, the look
    reads the newest NEWEST."""
    _empty(box)
    many = 14_000
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    file_many(box, t0, many, timedelta(seconds=1), "m")
    found = await look(box, mail_ca, since=t0 - timedelta(minutes=1))
    newest = {iso_ms(t0 + timedelta(seconds=n)) for n in range(many - NEWEST, many)}
    assert {a.arrived_at for a in found} == newest


async def test_old_mail_ends_the_walk_and_recent_mail_is_found(
    box: Dovecot, mail_ca: trustme.CA
) -> None:
    """5,000 matching messages of ten days ago, then 3 of the last hour: the look finds the 3
    (the walk ends at the first window that begins before `since`)."""
    _empty(box)
    now = datetime.now(UTC).replace(microsecond=0)
    file_many(box, now - timedelta(days=10), 5_000, timedelta(seconds=1), "old")
    file_many(box, now - timedelta(minutes=30), 3, timedelta(minutes=10), "new")
    found = await look(box, mail_ca, since=now - timedelta(hours=1))
    assert sorted(a.arrived_at for a in found) == [
        iso_ms(now - timedelta(minutes=30 - 10 * n)) for n in range(3)
    ]
