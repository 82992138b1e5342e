"""Which side checks a monitor's rounds ask: one rule, read by the planner (`asking`: what a
round asks, from the monitor's configuration and each side check's cadence) and by the
ingester (`unasked`: facts of a side check no round of the monitor asks are an agent's own,
refused).

The ingester holds a result to the monitor's configuration, not to its round: whether a round
was on the `dns` cadence cannot be told again at ingest (a triggered round's depends on when
the monitor's DNS was last resolved as it was planned, a scheduled round's on the interval and
DNS window as they were then), so it takes the most any round asks (`dns_due`)."""

from collections.abc import Iterable
from typing import TYPE_CHECKING

from controller.sidechecks.frame import AnySideCheck
from controller.sidechecks.registry import WIRED

if TYPE_CHECKING:  # the types only: the rule reads no store
    from controller.monitors.store import Monitor


def asks(check: AnySideCheck, monitor: "Monitor", dns_due: bool) -> bool:
    """Whether a round of `monitor` may ask `check` something: it rides jobs, watches the
    monitor, and, on the `dns` cadence, the round resolves DNS (`dns_due`)."""
    return check.ask is not None and (check.cadence != "dns" or dns_due) and check.watched(monitor)


def asking(monitor: "Monitor", dns_due: bool) -> list[AnySideCheck]:
    """The side checks a round of `monitor` may ask something of, in the registry's order."""
    return [check for check in WIRED.values() if asks(check, monitor, dns_due)]


def unasked(monitor: "Monitor | None", names: Iterable[str]) -> list[str]:
    """Those of `names` (the side checks whose facts a result of `monitor` carries) that no
    round of it asks; every one when the monitor is None (gone, or its config does not fit:
    its rounds send nothing)."""
    return [
        name
        for name in names
        if monitor is None or (check := WIRED.get(name)) is None or not asks(check, monitor, True)
    ]
