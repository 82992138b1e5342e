"""Blocklist reputation: which lists are asked (`rules.DEFAULT_LISTS`, the operator's
`BLOCKLISTS`), what their answers mean, whether a list is healthy in a country, and when a
listing becomes a `blocklisted` finding; the answers cached per list, name and country for
every organization that depends on the same name (`store`).

As a side check it rides the first round of each BLOCKLIST_INTERVAL_SECONDS window of every
monitor (its own cadence); its facts go to its own store (answers per list, name and country,
names per monitor: `store`, named in controller/sidechecks/stores.py), and its `blocklisted`
findings are raised by its watch every minute (`watch`), not by posture's pass."""

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

from controller.sidechecks.blocklists import rules
from controller.sidechecks.blocklists.rules import BlockList
from controller.sidechecks.frame import ControllerSideCheck, Planning
from shared.sidechecks.blocklists import WIRE, BlocklistAsk
from shared.sidechecks.blocklists_bound import bounded

if TYPE_CHECKING:
    from controller.monitors.store import Monitor


@dataclass(frozen=True, slots=True)
class ListsRound:
    """What the scheduler holds for a round's blocklists (`Planning.options["blocklists"]`):
    the operator's lists, whether the round is the first of the monitor's window (`due`),
    the names answered per country within the interval (`fresh`) and those the monitor's last
    round in a country found (`known`), when that round asked (`asked_at`), the interval
    (`interval_s`)."""

    lists: tuple[BlockList, ...]
    due: bool
    fresh: Callable[[str], Collection[str]]
    known: Callable[[int, str], Collection[str]]
    asked_at: Callable[[int, str], datetime | None] = lambda monitor_id, cc: None
    interval_s: int = 6 * 3600


def watched(monitor: "Monitor") -> bool:
    return True


def ask(p: Planning) -> BlocklistAsk | None:
    held = p.options.get(WIRE.name)
    if not isinstance(held, ListsRound) or not held.lists:
        return None
    m = p.monitor
    # A check-now, or a round whose monitor never asked from the country lately (a new
    # monitor's first): at once, unless its last asking round is within the floor; else on
    # the monitor's own phase.
    last = held.asked_at(m.id, p.country)
    if p.trigger or last is None:
        if not rules.trigger_lists(p.scheduled_at, last, held.interval_s):
            return None
    elif not held.due:
        return None
    return rules.ask(
        held.lists, m.mail_domain, held.fresh(p.country), m.reputation, held.known(m.id, p.country)
    )


SIDE_CHECK: Final = ControllerSideCheck(
    name=WIRE.name,
    title="Blocklists",
    # `blocklisted` is its watch's, its severity the list's (`rules.severity`): no posture kind
    codes={},
    watched=watched,
    wire=WIRE,
    ask=ask,
    cadence="own",
    bound=bounded,
    legacy_job=lambda ask: {"blocklists": ask},
    console="reputation",
)
