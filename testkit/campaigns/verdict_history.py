"""Random histories for the verdict campaign (issue 60), drawn from a seed: the same seed gives
the same steps at the same offsets, so a failing history runs again (timing noise aside).

Each target gets its own sequence: a quiet spell, then a fault, then quiet again, ... Faults:
`outage` (the server killed, refused everywhere), `freeze` (SIGSTOP: connections accepted by
the kernel, never answered, a timeout everywhere), `country` (one country's path dropped by
nftables: a timeout there only, `degraded`, never down), `blip` (killed for a second or two,
shorter than a confirmed outage: an incident allowed, not owed); a round trip's targets may
also lose one side (`send`: its SMTP server, `receive`: its mailbox; refused everywhere, down).
Restarts of an agent (kill -9, back a few seconds later), and of the controller (kill -9, every
replica), one controller replica of two (kill -9, the other serving on) and NATS (SIGTERM) where
the campaign has them, fall anywhere. Quiet spells are long enough for the
recovery the rules owe.

Events where the campaign has them: targets created through the API during the history (each
`create` followed at once by a check-now; its faults come after), `apply` of an exported file
unchanged (`apply_same`) and with one monitor's timeout changed (`apply_changed`), and a second
organization saturating a country (`saturate`, `unsaturate` some minutes later).

A **joint** outage (issue 66), where the campaign names its targets: one fault taking them all
down at once and back together (a server killed, a round trip's send side down), first in their
histories, as a host that loses its mail services; with `reports` among the events, a burst of
TLS-RPT reports about their mail domain (`report_burst`) arrives while it lasts, once their
incident is open; the outage's end waits for the burst.

`draw_once` is the short history of `make test`: every case once and at once. The joint outage
and one named fault per target all begin in the first seconds and end within a few seconds of
each other, each long enough to be confirmed; the created targets are created at the start,
an `apply` follows a few seconds later, each restart comes once the outages are confirmed and
before they end. The seed draws the instants and the countries.
"""

import random
from dataclasses import dataclass, replace
from typing import Literal

Action = Literal[
    "kill",
    "start",
    "freeze",
    "thaw",
    "drop",
    "undrop",
    "agent_kill",
    "agent_start",
    "controller_kill",
    "controller_start",
    "nats_stop",
    "nats_start",
    "replica_kill",
    "replica_start",
    "leg_down",
    "leg_up",
    "create",
    "apply_same",
    "apply_changed",
    "saturate",
    "unsaturate",
    "report_burst",
]
# What a restart stops (by PID: kill -9 for the agent, the controller's replicas and one of them,
# SIGTERM for NATS) and starts again a few seconds later.
RESTARTS: dict[str, tuple[Action, Action]] = {
    "agent": ("agent_kill", "agent_start"),
    "controller": ("controller_kill", "controller_start"),
    "nats": ("nats_stop", "nats_start"),
    "replica": ("replica_kill", "replica_start"),
}
FAULTS: tuple[str, ...] = ("outage", "freeze", "country", "blip")
LEGS: tuple[str, ...] = ("send", "receive")  # a round trip's own faults besides FAULTS
EVENTS: tuple[str, ...] = ("apply", "saturate")
# The joint outage's report burst: its turn this long before the outage's drawn end. It waits
# for the incident to open, and the outage's end waits for it (testkit.campaigns.verdicts).
BURST_BEFORE_END = 20.0
# the steps an owner takes through the API
OWNERS = frozenset({"create", "apply_same", "apply_changed", "saturate", "unsaturate"})
# What undoes each fault's first action.
UNDO: dict[str, tuple[Action, Action]] = {
    "outage": ("kill", "start"),
    "blip": ("kill", "start"),
    "freeze": ("freeze", "thaw"),
    "country": ("drop", "undrop"),
    "send": ("leg_down", "leg_up"),
    "receive": ("leg_down", "leg_up"),
}


@dataclass(frozen=True)
class Step:
    at: float  # seconds from the history's start
    action: Action
    target: str = ""
    country: str = ""
    leg: str = ""  # leg_down, leg_up: `send` or `receive`


@dataclass(frozen=True)
class Shape:
    """The history's sizes, in seconds: `interval` and `timeout` of the monitors."""

    interval: float
    timeout: float
    minutes: float
    faults: tuple[str, ...] = FAULTS
    restarts: tuple[str, ...] = ("agent",)
    events: tuple[str, ...] = ()

    @property
    def quiet(self) -> tuple[float, float]:
        # recovery owed (2 rounds + a timeout) and a round more before the next fault
        low = 3 * self.interval + self.timeout + 5
        return low, low + 2 * self.interval

    @property
    def fault(self) -> tuple[float, float]:
        # long enough for two failing rounds and their confirmation, well past the bound
        low = 2 * self.interval + 2 * self.timeout + 10
        return low, low + 3 * self.interval


def draw(
    seed: int,
    targets: list[str],
    countries: tuple[str, ...],
    shape: Shape,
    *,
    legs: frozenset[str] = frozenset(),
    created: tuple[str, ...] = (),
    joint: tuple[str, ...] = (),
) -> list[Step]:
    """The steps of one history, in time order; every fault is undone before the end. Targets
    in `legs` (round trips) may also lose one side; those in `created` are created (and checked
    at once) during the history, their faults after that; those in `joint` go down together
    first (a round trip by its send side), their own faults after that."""
    rng = random.Random(seed)
    span = shape.minutes * 60
    steps: list[Step] = []
    after: dict[str, float] = {}
    if joint:
        steps += _joint(rng, joint, shape, legs)
        end = max(s.at for s in steps)
        after = {t: end + rng.uniform(*shape.quiet) for t in joint}
    for target in [*targets, *created]:
        at = after.get(target, rng.uniform(*shape.quiet) / 2)
        if target in created:
            steps.append(Step(at, "create", target))
            at += rng.uniform(*shape.quiet)
        faults = shape.faults + (LEGS if target in legs else ())
        while True:
            fault = rng.choice(faults)
            length = rng.uniform(1.0, 2.5) if fault == "blip" else rng.uniform(*shape.fault)
            if at + length > span:
                break
            country = rng.choice(countries) if fault == "country" else ""
            leg = fault if fault in LEGS else ""
            on, off = UNDO[fault]
            steps += [
                Step(at, on, target, country, leg),
                Step(at + length, off, target, country, leg),
            ]
            at += length + rng.uniform(*shape.quiet)
    steps += _events(rng, targets, shape)
    windows: list[tuple[float, float]] = []
    if shape.restarts:
        at = rng.uniform(20, 60)
        while at + 10 < span:
            what = rng.choice(shape.restarts)
            country = rng.choice(countries) if what == "agent" else ""
            gone = rng.uniform(2, 8)
            stop, start = RESTARTS[what]
            steps += [Step(at, stop, "", country), Step(at + gone, start, "", country)]
            # an owner's step a round before it: a check-now's last country logs in a login
            # spacing after the first, and a restart loses a deferred login (seed 202)
            windows.append((at - shape.interval - 2, at + gone + 10))
            at += gone + rng.uniform(60, 120)
    steps = [_clear_of(s, windows) if s.action in OWNERS else s for s in steps]
    return sorted(steps, key=lambda s: (s.at, s.target, s.action))


def draw_once(
    seed: int,
    once: tuple[tuple[str, str], ...],
    countries: tuple[str, ...],
    shape: Shape,
    *,
    legs: frozenset[str] = frozenset(),
    created: tuple[str, ...] = (),
    joint: tuple[str, ...] = (),
) -> list[Step]:
    """Every case once, at once (`once`: a target and its one fault); in time order, every
    fault undone before the end. `shape.minutes` is not used: the faults' lengths make it."""
    rng = random.Random(seed)
    low = shape.fault[0]
    steps = [Step(rng.uniform(0, 1), "create", target) for target in created]
    if joint:
        # As long as the others: its burst waits for the incident, and its end for the burst.
        at = rng.uniform(0, 2)
        length = rng.uniform(low, low + 3) - at
        steps += _joint(rng, joint, shape, legs, at, length)
    for target, fault in once:
        at = rng.uniform(0, shape.interval / 2)
        length = rng.uniform(low, low + 3) - at
        country = rng.choice(countries) if fault == "country" else ""
        leg = fault if fault in LEGS else ""
        on, off = UNDO[fault]
        steps += [
            Step(at, on, target, country, leg),
            Step(at + length, off, target, country, leg),
        ]
    if "apply" in shape.events:
        steps.append(Step(rng.uniform(2, 8), "apply_same"))
    # past the outages' confirmation (interval + 2 timeouts + slack from their start, the
    # latest at half an interval), back before the shortest ends
    at = shape.interval * 1.5 + 2 * shape.timeout + 9
    for what in shape.restarts:
        country = rng.choice(countries) if what == "agent" else ""
        gone = rng.uniform(2, 5)
        stop, start = RESTARTS[what]
        steps += [Step(at, stop, "", country), Step(at + gone, start, "", country)]
        at += gone + 2
    return sorted(steps, key=lambda s: (s.at, s.target, s.action))


def _joint(
    rng: random.Random,
    joint: tuple[str, ...],
    shape: Shape,
    legs: frozenset[str],
    at: float | None = None,
    length: float | None = None,
) -> list[Step]:
    """The joint outage: every target of `joint` down at once (a round trip by its send side),
    for at least a confirmed outage's length, back together; the report burst before its end."""
    span = shape.minutes * 60
    if at is None:
        at = rng.uniform(*shape.quiet) / 2
    if length is None:
        length = min(rng.uniform(*shape.fault), span - at - 2)
    steps: list[Step] = []
    for t in joint:
        on, off = UNDO["send" if t in legs else "outage"]
        leg = "send" if t in legs else ""
        steps += [Step(at, on, t, "", leg), Step(at + length, off, t, "", leg)]
    if "reports" in shape.events:
        steps.append(Step(at + length - BURST_BEFORE_END, "report_burst", joint[0]))
    return steps


def _clear_of(step: Step, windows: list[tuple[float, float]]) -> Step:
    """An owner's step moved past a restart (and the few seconds it takes to be back): the
    API, or the agents a check-now needs, are not there to judge it by."""
    for start, end in windows:
        if start <= step.at < end:
            return replace(step, at=end)
    return step


def _events(rng: random.Random, targets: list[str], shape: Shape) -> list[Step]:
    """`apply` of an unchanged export and of one with a target's timeout changed, in turn, a
    minute or two apart; a second organization saturating a country for a minute or two."""
    span = shape.minutes * 60
    steps: list[Step] = []
    if "apply" in shape.events:
        at, same = rng.uniform(20, 50), True
        while at + 10 < span:
            target = "" if same else rng.choice(targets)
            steps.append(Step(at, "apply_same" if same else "apply_changed", target))
            at, same = at + rng.uniform(40, 90), not same
    if "saturate" in shape.events:
        at = rng.uniform(20, 40)
        length = min(rng.uniform(60, 150), span - at - 10)
        steps += [Step(at, "saturate"), Step(at + length, "unsaturate")]
    return steps
