"""Blocklist reputation: which lists are asked (`rules.DEFAULT_LISTS`, the operator's
`BLOCKLISTS`), what their answers mean, whether a list is healthy in a country, and when a
listing becomes a `blocklisted` finding; the answers cached per list, name and country for
every organization that depends on the same name (`store`).

As a side check it rides the first round of each BLOCKLIST_INTERVAL_SECONDS window of every
monitor (its own cadence); its facts go to its own store (answers per list, name and country,
names per monitor: `store`, named in controller/sidechecks/stores.py), and its `blocklisted`
findings are raised by its watch every minute (`watch`), not by posture's pass."""

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Final, Protocol

from controller.sidechecks.blocklists import rules
from controller.sidechecks.blocklists.asked import within_ask
from controller.sidechecks.blocklists.rules import BlockList
from controller.sidechecks.frame import ControllerSideCheck, Planning, PlanState
from shared.sidechecks.blocklists import WIRE, BlocklistAsk
from shared.sidechecks.blocklists_bound import bounded

if TYPE_CHECKING:
    from controller.monitors.store import Monitor


class Answers(Protocol):
    """What the scheduler knows of the lists' answers when it plans a round: the operator's
    lists (`lists`, none: no round asks) and their interval (`interval_s`), what each list
    answered in a country within it and the lists dead there (`fresh`, skipped), those the
    monitor's last asking round in a country found (`known`) and when that round asked
    (`asked_at`). `watch.FreshNames` reads them from the store."""

    @property
    def lists(self) -> tuple[BlockList, ...]: ...

    @property
    def interval_s(self) -> int: ...

    def fresh(self, country: str) -> rules.Fresh: ...

    def known(self, monitor_id: int, country: str) -> Collection[str]: ...

    def asked_at(self, monitor_id: int, country: str) -> datetime | None: ...


# Its planning state: what the scheduler knows of the lists' answers (none: no round asks).
ANSWERS: Final[PlanState[Answers]] = PlanState(WIRE.name)


def watched(monitor: "Monitor") -> bool:
    return True


def ask(p: Planning) -> BlocklistAsk | None:
    answers = p.state(ANSWERS)
    if answers is None or not answers.lists:
        return None
    m = p.monitor
    # A check-now, or a round whose monitor never asked from the country lately (a new
    # monitor's first): at once, unless its last asking round is within the floor; else on
    # the monitor's own phase.
    last = answers.asked_at(m.id, p.country)
    if p.trigger or last is None:
        if not rules.trigger_lists(p.scheduled_at, last, answers.interval_s):
            return None
    elif not p.first_of(WIRE.name, answers.interval_s):
        return None
    fresh, known = answers.fresh(p.country), answers.known(m.id, p.country)
    return rules.ask(answers.lists, m.mail_domain, fresh, m.reputation, known)


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
    within_ask=within_ask,
    legacy_job=lambda ask: {"blocklists": ask},
    console="reputation",
    plans=ANSWERS,
)
