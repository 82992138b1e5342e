"""Which heartbeats a round's mailbox is read for, and from when (pure): every heartbeat monitor
that names the round's monitor as its mailbox (`mailboxMonitorId`) and is not disabled, at most
LOOKS_MAX, each from one of its windows back (its period and its grace), so consecutive looks
overlap and a message read twice is one arrival (its id is its Message-ID's); what an agent
answers is kept only for the heartbeats its job asked for, each arrival as its heartbeat's."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from controller.sidechecks.frame import Arrived
from shared.arrivals import MAILBOX_LISTENER, Arrival
from shared.sidechecks.heartbeat_mail import (
    LOOKS_MAX,
    HeartbeatMail,
    HeartbeatMailAsk,
    Look,
)
from shared.timefmt import iso_ms


@dataclass(frozen=True, slots=True)
class Reader:
    """A heartbeat monitor reading a mailbox monitor's mailbox: its public id, what its mail
    says, and its window (`everyMinutes` as stored, a day for a time of day; `graceMinutes`)."""

    heartbeat_id: str
    sender: str
    subject: str
    every_minutes: int
    grace_minutes: int


def since(reader: Reader, scheduled_at: datetime) -> datetime:
    """The instant after which a round's look counts mail: one window back."""
    return scheduled_at - timedelta(minutes=reader.every_minutes + reader.grace_minutes)


def ask(readers: Sequence[Reader], scheduled_at: datetime) -> HeartbeatMailAsk | None:
    """A round's ask: a look for each reader (the first LOOKS_MAX by id), None for none."""
    chosen = sorted(readers, key=lambda r: r.heartbeat_id)[:LOOKS_MAX]
    if not chosen:
        return None
    return HeartbeatMailAsk(
        looks=[
            Look(
                monitor_id=r.heartbeat_id,
                sender=r.sender,
                subject=r.subject,
                since=iso_ms(since(r, scheduled_at)),
            )
            for r in chosen
        ]
    )


def within_ask(asked: HeartbeatMailAsk | None, facts: HeartbeatMail) -> HeartbeatMail:
    """`facts` cut to the heartbeats its job asked for (none without an ask: an agent that
    does not echo it is not believed about whose mail it read), `facts` itself when all
    were."""
    wanted = {look.monitor_id for look in asked.looks} if asked is not None else set()
    kept = [look for look in facts.looks if look.monitor_id in wanted]
    if len(kept) == len(facts.looks):
        return facts
    return HeartbeatMail(looks=kept, truncated=facts.truncated)


def reads(asked: HeartbeatMailAsk) -> int:
    """How many times a job asking `asked` reads its mailbox besides its check: once a look."""
    return len(asked.looks)


def arrivals(arrived: Arrived[HeartbeatMail]) -> list[Arrival]:
    """The arrivals a result's looks found, each the heartbeat's its look was for, received in
    the result's country, read from a mailbox (listener `mailbox`). Its id is the agent's within
    that heartbeat: the same message read again is one arrival, and an id an agent makes up
    cannot take the place of another monitor's arrival."""
    return [
        msgspec.structs.replace(
            a,
            arrival_id=str(uuid.uuid5(uuid.UUID(look.monitor_id), a.arrival_id)),
            monitor_id=look.monitor_id,
            country=arrived.country,
            listener=MAILBOX_LISTENER,
        )
        for look in arrived.facts.looks
        if _is_uuid(look.monitor_id)
        for a in look.arrivals
    ]


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
