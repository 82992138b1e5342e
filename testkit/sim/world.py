"""The simulation's world, drawn from a seed: pure, no I/O (issue 79).

A world is what the simulated control plane is held against: its mail servers (one per target),
each country's agent, and what goes wrong and when, in seconds from the history's start:

| fault | what the checks see | truth (`verdict_truth.Fact`) |
| --- | --- | --- |
| `outage` | refused in every country | the server failing |
| `freeze` | a timeout in every country (the result comes `timeout` s later) | the server failing |
| `country` | refused in one country only (its path) | that country's path failing |
| `blip` | refused everywhere for a few seconds | the server failing |
| `flap` | short outages (under an interval) and recoveries in turn | the server failing, in turn |
| agent `gone` | the country's agent beats no more and runs nothing | that country's agent gone |
| agent `stall` | it beats on but runs nothing (its jobs are lost) | its agent gone |
| controller restart | nothing scheduled, stored or judged for up to 60 s; a new process | `away` |
| failover | every database connection dropped within a pass (`Failover`) | none: no change |
| kill | the controller dies mid-pass, between two statements, and starts again (`Kill`) | none |

Some monitors have a maintenance window (`windows`, a one-off window of 5 to 40 intervals):
their outages are recorded as ever, their notices held by docs/alerts.md's rule
(testkit.sim.windows judges them).

The monitors belong to two organizations: `a` (all but the last) spends its hourly budget of
outage e-mails in a busy world, `b` (the last monitor) rarely does (testkit.sim.budgets judges
both).

Besides the faults, each result may be published twice (the second copy later: a redelivery)
or late (past its round's close: the alerter has stored `expired` for it and judges it again);
both are drawn from the seed per monitor, country and round (a round off the grid, as a
confirmation, by the grid round it follows), not per job id: a triggered round sent a second
later draws the same. Neither changes the truth. The history starts at an
hour the seed picks among month ends and midnights (`ANCHORS`), so rounds, days and months
turn over during it. A shape's `at` (`HH:MM:SS`, UTC) starts it at that time of day instead, on
the drawn anchor's date: `make clock-sweep` runs the hours `tools/clock_sweep.py` moves the
clock to.

The same seed gives the same world; `World.facts()` is the truth the campaigns' judge
(testkit.campaigns.verdict_truth) holds the product against."""

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from testkit.campaigns.verdict_truth import Fact, FactKind

FaultKind = Literal["outage", "freeze", "country", "blip", "flap"]
FAULTS: tuple[FaultKind, ...] = ("outage", "freeze", "country", "blip", "flap")

# Where histories start: the last hours of a month (a leap February among them) and a plain
# midnight, so a history crosses UTC midnight and a month's end.
ANCHORS = (
    datetime(2031, 1, 31, 22, 0, tzinfo=UTC),
    datetime(2031, 2, 28, 23, 0, tzinfo=UTC),
    datetime(2032, 2, 29, 22, 30, tzinfo=UTC),
    datetime(2031, 4, 30, 23, 40, tzinfo=UTC),
    datetime(2031, 12, 31, 22, 50, tzinfo=UTC),
    datetime(2031, 6, 15, 23, 15, tzinfo=UTC),
)


@dataclass(frozen=True)
class Shape:
    """The world's sizes: targets (monitors, one server each), countries, its length, and the
    monitors' interval and timeout (seconds)."""

    monitors: int = 10
    countries: tuple[str, ...] = ("DE", "FR", "US")
    hours: float = 24.0
    interval: int = 60
    timeout: int = 10
    # how often things go wrong: quiet spells between a target's faults, in intervals
    quiet_intervals: tuple[float, float] = (4.0, 90.0)
    agent_faults_per_day: float = 6.0
    restarts_per_day: float = 4.0  # the controller killed and started again
    failovers_per_day: float = 2.0  # every database connection dropped at once
    kills_per_day: float = 4.0  # the controller killed mid-pass and started again at once
    window_share: float = 0.3  # the monitors with a maintenance window
    budget: int = 8  # outage e-mails per organization and clock hour (the outbox's budget)
    duplicate_rate: float = 0.01
    late_rate: float = 0.003
    at: str | None = None  # the time of day (UTC, HH:MM:SS) the history starts at

    @property
    def seconds(self) -> float:
        return self.hours * 3600

    @property
    def busy(self) -> bool:
        return self.quiet_intervals == BUSY.quiet_intervals

    @property
    def calm(self) -> bool:
        return self.quiet_intervals == CALM.quiet_intervals

    def made_busy(self) -> "Shape":
        """This shape with a fault every few intervals and agents failing often (`make
        test`'s short histories)."""
        return self._faults_of(BUSY)

    def made_calm(self) -> "Shape":
        """This shape with a server's faults days apart and an agent away about once a day
        (the speed target's month of 1,000 monitors: most rounds settled)."""
        return self._faults_of(CALM)

    def _faults_of(self, other: "Shape") -> "Shape":
        """This shape's sizes with `other`'s faults."""
        return replace(
            self,
            quiet_intervals=other.quiet_intervals,
            agent_faults_per_day=other.agent_faults_per_day,
            restarts_per_day=other.restarts_per_day,
            failovers_per_day=other.failovers_per_day,
            kills_per_day=other.kills_per_day,
            window_share=other.window_share,
        )


BUSY = Shape(
    quiet_intervals=(4.0, 12.0),
    agent_faults_per_day=48.0,
    restarts_per_day=48.0,
    failovers_per_day=48.0,
    kills_per_day=192.0,
)

# A fault every 1 to 10 days of one-minute intervals per server.
CALM = Shape(
    quiet_intervals=(1440.0, 14400.0),
    agent_faults_per_day=1.0,
    restarts_per_day=1.0,
    failovers_per_day=1.0,
    kills_per_day=4.0,
    # A few monitors have a maintenance window (a third of them in the other worlds).
    window_share=0.03,
)

# Where in a pass a failover comes: before the scheduler's next statement, inside the results'
# record's transaction (its statements run, its commit not: the first store of results from its
# instant on) or before the alerter's next statement. The pass it strikes in fails.
FailoverPart = Literal["scheduler", "record", "alerter"]
FAILOVER_PARTS: tuple[FailoverPart, ...] = ("scheduler", "record", "alerter")


# The parts a kill strikes in: the scheduler's pass, the results' record (the ingester's
# transaction) and the alerter's pass (its evaluator and its flow incidents' teller).
KillPart = Literal["scheduler", "record", "alerter"]
KILL_PARTS: tuple[KillPart, ...] = ("scheduler", "record", "alerter")


def started_at(anchor: datetime, at: str) -> datetime:
    """`anchor`'s date at the time of day `at` (`HH:MM:SS`, UTC)."""
    hour, minute, second = (int(part) for part in at.split(":"))
    return anchor.replace(hour=hour, minute=minute, second=second, microsecond=0)


@dataclass(frozen=True)
class Spell:
    """A fault from `start` to `end` (seconds from the history's start)."""

    start: float
    end: float
    kind: str
    country: str | None = None  # `country` faults and agent faults: whose


@dataclass(frozen=True)
class Failover:
    """The database's every connection dropped at `at` (seconds from the history's start),
    at `part` of that pass (`FAILOVER_PARTS`): the parts before it have committed."""

    at: float
    part: FailoverPart


@dataclass(frozen=True)
class Kill:
    """The controller killed at `at` (seconds from the history's start) in place of the
    `statement`-th statement `part` sends from then, counted over its passes (a part left idle
    strikes later), and started again at once: what the pass had not committed is gone."""

    at: float
    part: KillPart
    statement: int


@dataclass
class World:
    seed: int
    shape: Shape
    start: datetime
    targets: tuple[str, ...]
    servers: dict[str, list[Spell]] = field(default_factory=dict)
    agents: list[Spell] = field(default_factory=list)
    restarts: list[Spell] = field(default_factory=list)  # the controller away
    failovers: list[Failover] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    windows: dict[str, list[Spell]] = field(default_factory=dict)  # maintenance, per target

    @classmethod
    def of(cls, seed: int, shape: Shape) -> "World":
        rnd = random.Random(seed)
        start = rnd.choice(ANCHORS) + timedelta(seconds=rnd.randrange(0, 3600))
        if shape.at is not None:
            start = started_at(start, shape.at)
        targets = tuple(f"m{n:04d}" for n in range(shape.monitors))
        w = cls(seed, shape, start, targets)
        span, step = shape.seconds, float(shape.interval)
        confirmed = 2 * step + 2 * shape.timeout + 10  # long enough to be an incident
        recovered = 2 * step + shape.timeout + 10  # up long enough for a recovery
        for t in targets:
            spells: list[Spell] = []
            at = rnd.uniform(0, shape.quiet_intervals[1] * step)
            while True:
                kind = rnd.choice(FAULTS)
                if kind == "blip":
                    length = rnd.uniform(1.0, 20.0)
                elif kind == "flap":
                    length = rnd.uniform(3 * step, 15 * step)
                else:
                    length = rnd.uniform(confirmed, confirmed + 30 * step)
                if at + length > span - 10 * step:  # every fault over well before the end
                    break
                country = rnd.choice(shape.countries) if kind == "country" else None
                if kind == "flap":
                    # Down too briefly to be owed an incident (one may open), up long enough
                    # between for a recovery to be owed: each piece is an outage of its own to
                    # the judge, which joins pieces closer than that.
                    on = at
                    while on < at + length:
                        down = rnd.uniform(5.0, step - 5)
                        spells.append(Spell(on, min(on + down, at + length), "flap"))
                        on += down + rnd.uniform(recovered, recovered + 2 * step)
                else:
                    spells.append(Spell(at, at + length, kind, country))
                at += length + rnd.uniform(*shape.quiet_intervals) * step
            w.servers[t] = spells
        faults = int(shape.agent_faults_per_day * shape.hours / 24 + 0.5)
        for _ in range(faults):
            cc = rnd.choice(shape.countries)
            begin = rnd.uniform(0, span - 20 * step)
            how = rnd.choice(("gone", "stall"))
            spell = Spell(begin, begin + rnd.uniform(5.0, 15 * step), how, cc)
            # One agent away at a time, an interval apart: the truth counts a country without
            # an agent as not failing, so two away make an outage of a frozen server look over
            # while the product, by its rule, keeps the incident open (a `degraded` round no
            # country passed closes nothing: docs/alerts.md) - the campaigns' judge was made
            # for one agent restarted at a time.
            if not any(a.start < spell.end + step and spell.start < a.end + step for a in w.agents):
                w.agents.append(spell)
        w.agents.sort(key=lambda s: s.start)
        at = 0.0
        for _ in range(int(shape.restarts_per_day * shape.hours / 24 + 0.5)):
            at = rnd.uniform(at, span - 20 * step)
            end = at + rnd.uniform(0.0, 60.0)
            # Apart from the agents' spells by a few intervals: the judge's bounds allow one
            # round held to its close near a restart, not an agent's and a restart's together.
            if not any(a.start - 4 * step < end and at < a.end + 4 * step for a in w.agents):
                w.restarts.append(Spell(at, end, "restart"))
            at = end + step
        # Drawn from a generator of their own, so a seed's other faults stay as they were.
        drops = random.Random(f"{seed}:failovers")
        count = int(shape.failovers_per_day * shape.hours / 24 + 0.5)
        instants = sorted(drops.uniform(step, span - 20 * step) for _ in range(count))
        w.failovers = [Failover(at, drops.choice(FAILOVER_PARTS)) for at in instants]
        deaths = random.Random(f"{seed}:kills")
        count = int(shape.kills_per_day * shape.hours / 24 + 0.5)
        instants = sorted(deaths.uniform(step, span - 20 * step) for _ in range(count))
        w.kills = [Kill(at, deaths.choice(KILL_PARTS), deaths.randint(1, 8)) for at in instants]
        held = random.Random(f"{seed}:windows")
        for t in targets:
            if held.random() < shape.window_share and span > 40 * step:
                begin = held.uniform(0, span - 50 * step)
                w.windows[t] = [Spell(begin, begin + held.uniform(5, 40) * step, "maintenance")]
        return w

    def organization(self, target: str) -> str:
        """`b` for the last monitor (when there are two or more), `a` for the others."""
        return "b" if len(self.targets) > 1 and target == self.targets[-1] else "a"

    # -- what the checks see ---------------------------------------------------------------

    def at(self, offset: float) -> datetime:
        return self.start + timedelta(seconds=offset)

    def offset(self, at: datetime) -> float:
        return (at - self.start).total_seconds()

    def answer(self, target: str, country: str, offset: float) -> str | None:
        """What a check of `target` from `country` started at `offset` meets: None (up),
        `refused` or `timeout`."""
        for s in self.servers.get(target, ()):
            if s.start <= offset < s.end and (s.country is None or s.country == country):
                return "timeout" if s.kind == "freeze" else "refused"
            if s.start > offset:
                break
        return None

    def agent_down(self, country: str, offset: float) -> str | None:
        """`gone` (no beat, no checks) or `stall` (beats, no checks) when the country's agent
        is either at `offset`; else None."""
        for s in self.agents:
            if s.country == country and s.start <= offset < s.end:
                return s.kind
        return None

    def edges(self) -> list[float]:
        """Every instant an agent goes away or comes back: the driver wakes at each (its beats
        stop or resume, the jobs waiting for it run). A server's fault needs no wake: a check
        meets what its server is at the check's start."""
        return sorted({t for s in self.agents for t in (s.start, s.end)})

    def delivery(self, key: str) -> tuple[float, float | None]:
        """For one job (`key`: its monitor, country and round, `Driver.delivery_key`): how much
        later than its check's end its result is published (a late one past the round's close),
        and when a second copy follows (None: none)."""
        rnd = random.Random(f"{self.seed}:{key}")
        shape = self.shape
        late = 0.0
        if rnd.random() < shape.late_rate:
            late = shape.interval + shape.timeout + rnd.uniform(10.0, 8 * shape.interval)
        again = rnd.uniform(0.5, 60.0) if rnd.random() < shape.duplicate_rate else None
        return late, again

    # -- the truth ---------------------------------------------------------------------------

    def facts(self) -> list[Fact]:
        """The world as the campaigns' judge reads it, in absolute seconds (epoch). A stalled
        agent is a gone one for the truth: its country reports nothing, which is not failing."""
        base = self.start.timestamp()
        found: list[Fact] = []
        for t, spells in self.servers.items():
            for s in spells:
                what: FactKind = "path" if s.country is not None else "server"
                found.append(Fact(base + s.start, what, t, s.country, True))
                found.append(Fact(base + s.end, what, t, s.country, False))
        for s in self.restarts:
            found.append(Fact(base + s.start, "away", "", None, True))
            found.append(Fact(base + s.end, "away", "", None, False))
        for s in self.agents:
            found.append(Fact(base + s.start, "agent", "", s.country, True))
            found.append(Fact(base + s.end, "agent", "", s.country, False))
        return sorted(found, key=lambda f: f.at)

    def described(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for spells in self.servers.values():
            for s in spells:
                kinds[s.kind] = kinds.get(s.kind, 0) + 1
        for s in self.agents:
            kinds[f"agent {s.kind}"] = kinds.get(f"agent {s.kind}", 0) + 1
        kinds["controller restart"] = len(self.restarts)
        kinds["database failover"] = len(self.failovers)
        kinds["controller killed mid-pass"] = len(self.kills)
        kinds["maintenance window"] = sum(len(ws) for ws in self.windows.values())
        return kinds
