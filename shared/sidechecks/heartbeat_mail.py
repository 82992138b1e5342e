"""Heartbeat mail read from a mailbox on the wire (issue 83): the heartbeat monitors whose mail
an IMAP, POP3 or round-trip monitor's mailbox holds ask, on that monitor's rounds, for the
messages matching each heartbeat's sender and subject that arrived after `since`; the agent
answers with them as arrivals (shared.arrivals), listener `mailbox`, which the controller stores
as the heartbeat's own (controller/sidechecks/heartbeat_mail)."""

from typing import Annotated, Final

import msgspec

from shared.arrivals import TEXT_MAX, Arrival
from shared.gmail_units import UNITS
from shared.sidechecks import SideCheckWire

# The heartbeats one job reads for, at most (each a look of its own: a login over IMAP or POP3,
# a listing over an API).
LOOKS_MAX: Final = 4
# A look reads the newest NEWEST messages of each of at most FOLDERS_MAX folders, so it answers
# at most ARRIVALS_MAX arrivals.
NEWEST: Final = 50
FOLDERS_MAX: Final = 3
ARRIVALS_MAX: Final = NEWEST * FOLDERS_MAX
# What one look may spend over a mailbox API, reserved by the controller as the job's other
# calls are (controller.scheduling.api_calls_store): Graph, a listing per folder and the junk
# folder; Gmail, a listing and each listed message's metadata.
GRAPH_LOOK_CALLS: Final = FOLDERS_MAX + 1
GMAIL_LOOK_UNITS: Final = UNITS["messages.list"] + NEWEST * UNITS["messages.get"]
ERROR_CHARS_MAX: Final = 300
ID_CHARS_MAX: Final = 64


class Look(msgspec.Struct, kw_only=True, rename="camel"):
    """One heartbeat's look: its monitor (public id), what its mail says (`sender` in From and
    `subject` in Subject, substrings, any case; "" any), and the instant after which mail
    counts (ISO-8601 UTC)."""

    monitor_id: Annotated[str, msgspec.Meta(max_length=ID_CHARS_MAX)]
    sender: Annotated[str, msgspec.Meta(max_length=TEXT_MAX)] = ""
    subject: Annotated[str, msgspec.Meta(max_length=TEXT_MAX)] = ""
    since: Annotated[str, msgspec.Meta(max_length=40)]


class HeartbeatMailAsk(msgspec.Struct, kw_only=True, rename="camel"):
    looks: Annotated[list[Look], msgspec.Meta(max_length=LOOKS_MAX)] = msgspec.field(
        default_factory=list
    )


class Looked(msgspec.Struct, kw_only=True, rename="camel"):
    """One look's answer: the matching arrivals (at most ARRIVALS_MAX), or why the mailbox
    could not be read (`error`, with the check's error kind: `auth_failed`, `timeout`, ...)."""

    monitor_id: str
    arrivals: list[Arrival] = msgspec.field(default_factory=list)
    error_kind: str = ""
    error: str = ""


class HeartbeatMail(msgspec.Struct, kw_only=True, rename="camel"):
    looks: list[Looked] = msgspec.field(default_factory=list)
    truncated: bool = False


WIRE: Final = SideCheckWire("heartbeat_mail", HeartbeatMailAsk, HeartbeatMail)


def bounded(facts: HeartbeatMail) -> HeartbeatMail:
    """`facts` within the bounds an agent keeps (applied again by the controller at ingest: an
    agent could send more): at most LOOKS_MAX looks of ARRIVALS_MAX arrivals, texts cut to
    their lengths; `truncated` set when anything was cut (`facts` itself when nothing was)."""
    looks = [
        Looked(
            monitor_id=look.monitor_id[:ID_CHARS_MAX],
            arrivals=[_cut(a) for a in look.arrivals[:ARRIVALS_MAX]],
            error_kind=look.error_kind[:32],
            error=look.error[:ERROR_CHARS_MAX],
        )
        for look in facts.looks[:LOOKS_MAX]
    ]
    if looks == facts.looks:
        return facts
    return HeartbeatMail(looks=looks, truncated=True)


def _cut(a: Arrival) -> Arrival:
    out = msgspec.structs.replace(
        a,
        arrival_id=a.arrival_id[:ID_CHARS_MAX],
        monitor_id=a.monitor_id[:ID_CHARS_MAX],
        country=a.country[:8],
        agent_id=a.agent_id[:TEXT_MAX],
        arrived_at=a.arrived_at[:40],
        peer=a.peer[:TEXT_MAX],
        helo=a.helo[:TEXT_MAX],
        mail_from=a.mail_from[:TEXT_MAX],
        listener=a.listener[:16],
        header_from=a.header_from[:TEXT_MAX],
        subject=a.subject[:TEXT_MAX],
    )
    return a if out == a else out
