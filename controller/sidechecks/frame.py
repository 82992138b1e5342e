"""What every side check of the controller is (`ControllerSideCheck`), and what each of its parts
is handed: a round being planned (`Planning`), a stored result being judged (`Judging`), facts
being stored (`Arrived`).

A side check that rides the core check's jobs has a `wire` (shared/sidechecks): the planner asks
its `ask` per job, the ingester bounds its facts (`bound`) and stores them (one row per job in
its own table, `side_<name>`, controller.sidechecks.facts_store, unless
controller.sidechecks.stores names a store of its own), and posture judges them (`judge`) into
findings of the codes it declared (`codes`). A side check of the controller alone (the report
findings) has no wire: it raises its findings itself.

Every side check's facts are kept the same way (`keeps_facts`, controller/ingest/store.py
`_store_side`): none of an `inconclusive` result, those of the result that stands for its job
(a redelivered one stores and counts nothing); a DNS side check's canaries (`canaries`) move
the resolver's health whichever side check carried them.

Every part is pure (the registry is read by the planner's pure rules). None of them is called
for a monitor the side check does not `watch`: its open findings then clear.

What a side check needs of the frame beyond that are its capabilities, each typed and iterated
by the frame, never named by it: its own planning state (`plans`, a `PlanState` the scheduler
binds a value to with `Held`, read by its `ask` with `Planning.state`), a budget admission
reserves and releases for its jobs (`Budget`, in controller.sidechecks.budgets, apart from the
registry so that it stays pure), the canaries its facts carry (`canaries`), oracles of its own
(`Oracles`, which the runtime gives the oracle watch), work inside the core check's session
(`session_config`), reads of the round's mailbox that logins and API budgets count
(`mailbox_reads`), and heartbeats' mail found there (`arrivals`).
"""

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, cast
from uuid import UUID

from controller.jobs.result_kinds import INCONCLUSIVE
from controller.sidechecks.findings import KINDS, Kind, Verdicts
from shared.arrivals import Arrival
from shared.dns_canary import DnsCanary
from shared.messages import CheckJob, JobConfig
from shared.sidechecks import AskT, FactsT, SideCheckWire

if TYPE_CHECKING:  # types only: posture's facts are read, never made, here; no I/O either
    from controller.db.pool import Conn
    from controller.monitors.store import Monitor
    from controller.posture.facts import Observation, StoredFacts
    from controller.settings.checks import SchedulingSettings

StateT = TypeVar("StateT")

# How often a side check is asked: `dns`, on the rounds that resolve DNS (one per
# DNS_INTERVAL_SECONDS window of the monitor, and a check-now when that window's was not asked);
# `own`, whenever its `ask` says (its own cadence).
Cadence = Literal["dns", "own"]


@dataclass(frozen=True, slots=True)
class Held:
    """A value the scheduler holds for a side check's planning, by its side check's name: made
    by its key (`PlanState.held`), so of the type the side check reads."""

    name: str
    value: object


@dataclass(frozen=True, slots=True)
class PlanState(Generic[StateT]):
    """The key of a side check's own planning state, typed: what the scheduler holds for it
    (the blocklists' answers), bound by `held` and read by its `ask` with `Planning.state`."""

    name: str

    def held(self, value: StateT) -> Held:
        return Held(self.name, value)


def _never_first(salt: str, every_s: int) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Planning:
    """A round being planned, as a side check's `ask` sees it, for one of its countries:
    `config` is the monitor's opened config (credentials included: read, never put in an ask),
    `dns_due` whether the round is on the DNS cadence; `held` what the scheduler holds for
    side checks (read typed: `state`); `first_of(salt, every_s)` whether the round is the first
    of each window of `every_s` seconds of the monitor, at a phase of its own for `salt`
    (a side check of its own cadence: the scheduling grid's rule)."""

    monitor: "Monitor"
    config: JobConfig
    scheduled_at: datetime
    trigger: bool
    dns_due: bool
    country: str
    held: Mapping[str, object] = field(default_factory=dict)
    first_of: Callable[[str, int], bool] = _never_first

    def state(self, key: PlanState[StateT]) -> StateT | None:
        """What the scheduler holds for `key` (None: nothing, no round of it asks)."""
        return cast(StateT | None, self.held.get(key.name))


@dataclass(frozen=True, slots=True)
class WorldGauges:
    """A side check's part of the world gauges (controller.oracles.metrics), read when
    `/metrics` is scraped: `show` reads its counts (since the instant given, a day back) and
    sets its own gauges, returning what it adds to the open findings by (code, severity);
    `clear` empties its gauges before each read."""

    show: Callable[["Conn", datetime], Awaitable[Mapping[tuple[str, str], float]]]
    clear: Callable[[], None]


@dataclass(frozen=True, slots=True)
class Budget:
    """A side check's share of something scarce per organization (readiness's DNS queries),
    taken as admission lets its jobs go: `reserve` (in the rounds' transaction, for the jobs
    going out, waiting for a slot or logging in later) returns by job id those it holds, the
    job with its ask replaced by a held one; `release` gives back what jobs that will never
    run reserved. Each is one statement a pass at most, none for jobs that ask it nothing."""

    reserve: Callable[
        ["Conn", Sequence[CheckJob], datetime, "SchedulingSettings"],
        Awaitable[Mapping[str, CheckJob]],
    ]
    release: Callable[["Conn", Sequence[CheckJob]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Judging(Generic[FactsT]):
    """One stored result's facts of a side check, as its `judge` sees them: the monitor, the
    core check's stored facts of the same result (`row`: banner, address, country...) and what
    posture observed of them (`seen`: TLS, certificate)."""

    monitor: "Monitor"
    row: "StoredFacts"
    seen: "Observation"
    facts: FactsT


@dataclass(frozen=True, slots=True)
class Arrived(Generic[FactsT]):
    """One result's facts of a side check, to store: its job, monitor, country and times."""

    job_id: str
    monitor_id: UUID
    country: str
    scheduled_at: datetime
    finished_at: datetime
    facts: FactsT


@dataclass(frozen=True, slots=True)
class OracleHealth:
    """An oracle's health in a country as its side check judges it: `healthy`, `unhealthy`
    or `unknown`, and why."""

    state: Literal["healthy", "unhealthy", "unknown"]
    reason: str = ""


class Oracles(Protocol):
    """A side check whose answers come from oracles of their own, checked before they are
    believed (the blocklists: each list by its RFC 5782 test entries), which the oracle watch
    moves beside the resolver's canaries: `what` its oracles decide (a notice's words),
    `through` what a notice of the resolver adds where they are asked through it."""

    @property
    def what(self) -> str: ...

    @property
    def through(self) -> str: ...

    async def healths(self, conn: "Conn", at: datetime) -> dict[tuple[str, str], OracleHealth]:
        """(oracle, country) → its health there at `at`."""
        ...

    async def asked_through_resolver(self, conn: "Conn", at: datetime) -> Collection[str]:
        """The countries whose rounds asked its oracles through the agents' resolver lately:
        the resolver's canaries vouch for them there."""
        ...

    def label(self, oracle: str) -> str | None:
        """How people are told of `oracle` (None: not one of its oracles)."""
        ...

    async def affected(self, conn: "Conn", country: str, at: datetime) -> list[int]:
        """The organizations whose monitors its oracles decide in `country` lately."""
        ...


@dataclass(frozen=True, slots=True)
class ControllerSideCheck(Generic[AskT, FactsT]):
    """One side check as the controller registers it.

    `name`: its wire name (its table is `side_<name>`, its metric label the name); `title`: how
    people are told of it (the console, the API's description); `codes`: the findings it raises
    (declared by its package: `findings.declare`); `watched`: whether it applies to a monitor. With
    a `wire`: `ask`, what a job asks of it (None: nothing this round), on its `cadence`; `judge`, a
    stored result's verdicts (None: its findings are raised otherwise); `bound`, its facts cut to
    their bounds (an agent is a stranger: the ingester applies it before storing), the facts
    themselves when nothing was cut (any other answer is logged as a cut); `legacy_job`, the
    job fields that ask the same of an agent that predates `sideChecks` (only the side checks older
    than the frame have one); `session_config`, for a side check run inside the core check's session
    (the open relay test), the job's config as such an agent must see it, asked or not."""

    name: str
    title: str
    codes: Mapping[str, Kind]
    watched: Callable[["Monitor"], bool]
    wire: SideCheckWire[AskT, FactsT] | None = None
    ask: Callable[[Planning], AskT | None] | None = None
    cadence: Cadence = "dns"
    judge: Callable[[Judging[FactsT]], Verdicts] | None = None
    bound: Callable[[FactsT], FactsT] | None = None
    legacy_job: Callable[[AskT], Mapping[str, object]] | None = None
    # The monitor page's section that shows it (its `id`), for a side check that keeps no
    # rows of facts (the console shows those itself: the last answer per country).
    console: str | None = None
    session_config: Callable[[JobConfig, bool], JobConfig] | None = None
    # Its facts cut to what the job asked (the job's ask, sealed with it; None from an agent
    # older than sealed asks), the facts themselves when all was asked: for a side check whose
    # facts other organizations read (the blocklists' shared answers).
    within_ask: Callable[[AskT | None, FactsT], FactsT] | None = None
    # For a side check whose lookups the resolver canaries vouch for (shared.dns_canary): the
    # canaries its facts carry, which move the country's resolver health (controller/oracles).
    canaries: Callable[[FactsT], list[DnsCanary] | None] | None = None
    # Its own planning state's key, for a side check whose `ask` reads what the scheduler
    # holds for it (`Planning.state`); the planner takes no value of an undeclared key.
    plans: PlanState[Any] | None = None
    # For a side check that reads the round's mailbox again (heartbeat mail): how many times a
    # job asking this reads it, each a login over IMAP or POP3 and a look's calls over an API,
    # which the login cap and the API budgets count as the check's own.
    mailbox_reads: Callable[[AskT], int] | None = None
    # What one such read may spend over each mailbox API, by the API's name (`graph`: calls,
    # `gmail`: quota units), reserved as the check's own calls are.
    read_calls: Mapping[str, int] = field(default_factory=dict)
    # For a side check that reads heartbeats' mail (heartbeat mail): the arrivals one result's
    # facts found, which the ingester stores as those heartbeats' and wakes their judge, in the
    # results' transaction.
    arrivals: Callable[[Arrived[FactsT]], list[Arrival]] | None = None

    def __post_init__(self) -> None:
        if self.wire is not None and self.wire.name != self.name:
            raise ValueError(f"side check {self.name} has the wire of {self.wire.name}")
        if self.wire is not None and self.ask is None:
            raise ValueError(f"side check {self.name} rides jobs: it needs `ask`")
        if self.plans is not None and self.plans.name != self.name:
            raise ValueError(f"side check {self.name} plans with the state of {self.plans.name}")
        if set(self.codes) - set(KINDS):
            raise ValueError(f"side check {self.name}: its codes are not declared (`declare`)")


AnySideCheck = ControllerSideCheck[Any, Any]


def keeps_facts(status: str) -> bool:
    """Whether a result's side facts are kept (stored, judged): not those of a result whose
    agent's own path failed (`inconclusive`), which are that path's; the job's conclusive
    result, which replaces its core row, brings its own, and those stand."""
    return status != INCONCLUSIVE


def of_mail_domain(monitor: "Monitor", domain: str) -> bool:
    """Whether facts about `domain` are about the monitor's mail domain now (DNS names: case
    and a final dot aside): facts of a round planned before `mailDomain` changed, or of an
    agent's own choosing, are about another domain and judge nothing."""
    now = (monitor.mail_domain or "").lower().rstrip(".")
    return bool(now) and domain.lower().rstrip(".") == now


def on_dns_rounds(
    watched: Callable[["Monitor"], bool], asking: Callable[["Monitor"], AskT]
) -> Callable[[Planning], AskT | None]:
    """The `ask` of a side check on the `dns` cadence: `asking(monitor)` on the rounds that
    resolve DNS of a monitor it watches, nothing on the others."""

    def ask(p: Planning) -> AskT | None:
        return asking(p.monitor) if p.dns_due and watched(p.monitor) else None

    return ask
