"""Random histories for the verdict campaign (issue 60), drawn from a seed: the same seed gives
the same steps at the same offsets, so a failing history runs again (timing noise aside).

Each target gets its own sequence: a quiet spell, then a fault, then quiet again, ... Faults:
`outage` (the server killed, refused everywhere), `freeze` (SIGSTOP: connections accepted by
the kernel, never answered, a timeout everywhere), `country` (one country's path dropped by
nftables: a timeout there only, `degraded`, never down), `blip` (killed for a second or two,
shorter than a confirmed outage: an incident allowed, not owed). Restarts of an agent (kill -9,
back a few seconds later), and of the controller (kill -9) and NATS (SIGTERM) where the
campaign has them, fall anywhere. Quiet spells are long enough for the recovery the rules owe.
"""

import random
from dataclasses import dataclass
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
]
# What a restart stops (by PID: kill -9 for the agent and controller, SIGTERM for NATS) and
# starts again a few seconds later.
RESTARTS: dict[str, tuple[Action, Action]] = {
    "agent": ("agent_kill", "agent_start"),
    "controller": ("controller_kill", "controller_start"),
    "nats": ("nats_stop", "nats_start"),
}
FAULTS: tuple[str, ...] = ("outage", "freeze", "country", "blip")
# What undoes each fault's first action.
UNDO: dict[str, tuple[Action, Action]] = {
    "outage": ("kill", "start"),
    "blip": ("kill", "start"),
    "freeze": ("freeze", "thaw"),
    "country": ("drop", "undrop"),
}


@dataclass(frozen=True)
class Step:
    at: float  # seconds from the history's start
    action: Action
    target: str = ""
    country: str = ""


@dataclass(frozen=True)
class Shape:
    """The history's sizes, in seconds: `interval` and `timeout` of the monitors."""

    interval: float
    timeout: float
    minutes: float
    faults: tuple[str, ...] = FAULTS
    restarts: tuple[str, ...] = ("agent",)

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


def draw(seed: int, targets: list[str], countries: tuple[str, ...], shape: Shape) -> list[Step]:
    """The steps of one history, in time order; every fault is undone before the end."""
    rng = random.Random(seed)
    span = shape.minutes * 60
    steps: list[Step] = []
    for target in targets:
        at = rng.uniform(*shape.quiet) / 2
        while True:
            fault = rng.choice(shape.faults)
            length = rng.uniform(1.0, 2.5) if fault == "blip" else rng.uniform(*shape.fault)
            if at + length > span:
                break
            country = rng.choice(countries) if fault == "country" else ""
            on, off = UNDO[fault]
            steps += [Step(at, on, target, country), Step(at + length, off, target, country)]
            at += length + rng.uniform(*shape.quiet)
    if shape.restarts:
        at = rng.uniform(20, 60)
        while at + 10 < span:
            what = rng.choice(shape.restarts)
            country = rng.choice(countries) if what == "agent" else ""
            gone = rng.uniform(2, 8)
            stop, start = RESTARTS[what]
            steps += [Step(at, stop, "", country), Step(at + gone, start, "", country)]
            at += gone + rng.uniform(60, 120)
    return sorted(steps, key=lambda s: (s.at, s.target, s.action))
