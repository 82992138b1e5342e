"""Heartbeat mail read from a mailbox (issue 83): a heartbeat monitor may name an IMAP, POP3 or
round-trip monitor whose mailbox holds its mail (`mailboxMonitorId`); that monitor's rounds then
ask its agents to read the matching messages (`rules`), with the round's own credentials, and
each one found is stored by the ingester as the heartbeat's arrival (listener `mailbox`) and
wakes its judge, as the receiver's arrivals do. It raises no finding: a late heartbeat is an outage
(controller.alerting.heartbeats). The scheduler holds who reads which mailbox (`Readers`,
refreshed every minute)."""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

from controller.monitors.kinds import MAILBOX_TYPES
from controller.sidechecks.frame import ControllerSideCheck, Planning, PlanState
from controller.sidechecks.heartbeat_mail import rules
from controller.sidechecks.heartbeat_mail.rules import Reader
from shared.sidechecks.heartbeat_mail import (
    GMAIL_LOOK_UNITS,
    GRAPH_LOOK_CALLS,
    WIRE,
    HeartbeatMailAsk,
    bounded,
)

if TYPE_CHECKING:
    from controller.monitors.store import Monitor


class Readers(Protocol):
    """What the scheduler knows of the heartbeats that read mailboxes: those reading the
    mailbox of the monitor `monitor_id` (its internal id)."""

    def of(self, monitor_id: int) -> Sequence[Reader]: ...


READERS: Final[PlanState[Readers]] = PlanState(WIRE.name)


def watched(monitor: "Monitor") -> bool:
    return monitor.type in MAILBOX_TYPES


def ask(p: Planning) -> HeartbeatMailAsk | None:
    readers = p.state(READERS)
    if readers is None or not watched(p.monitor):
        return None
    return rules.ask(readers.of(p.monitor.id), p.scheduled_at)


SIDE_CHECK: Final = ControllerSideCheck(
    name=WIRE.name,
    title="Heartbeat mail in this mailbox",
    codes={},
    watched=watched,
    wire=WIRE,
    ask=ask,
    cadence="own",
    bound=bounded,
    within_ask=rules.within_ask,
    plans=READERS,
    mailbox_reads=rules.reads,
    read_calls={"graph": GRAPH_LOOK_CALLS, "gmail": GMAIL_LOOK_UNITS},
    arrivals=rules.arrivals,
)
