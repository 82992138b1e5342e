"""The report findings (issues 45, 50): what the world's senders report about a monitor's mail
domain (TLS-RPT, DMARC aggregate reports), judged per organization's window (`rules`). A side
check of the controller alone: no job asks it, the report intake (controller/reports) raises its
findings as reports arrive and hourly, on every monitor whose `mailDomain` is the domain."""

from typing import TYPE_CHECKING, Final

from controller.sidechecks.frame import AnySideCheck, ControllerSideCheck
from controller.sidechecks.reports import rules

if TYPE_CHECKING:
    from controller.monitors.store import Monitor


def watched(monitor: "Monitor") -> bool:
    return bool(monitor.mail_domain)


SIDE_CHECK: Final[AnySideCheck] = ControllerSideCheck(
    name="reports",
    title="Reports from senders (TLS-RPT, DMARC)",
    codes=rules.CODES,
    watched=watched,
    console="reports",
)
