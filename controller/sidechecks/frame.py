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
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal
from uuid import UUID

from controller.jobs.result_kinds import INCONCLUSIVE
from controller.sidechecks.findings import KINDS, Kind, Verdicts
from shared.dns_canary import DnsCanary
from shared.messages import JobConfig
from shared.sidechecks import AskT, FactsT, SideCheckWire

if TYPE_CHECKING:  # types only: posture's facts are read, never made, here
    from controller.monitors.store import Monitor
    from controller.posture.facts import Observation, StoredFacts

# How often a side check is asked: `dns`, on the rounds that resolve DNS (one per
# DNS_INTERVAL_SECONDS window of the monitor, and a check-now when that window's was not asked);
# `own`, whenever its `ask` says (its own cadence).
Cadence = Literal["dns", "own"]


@dataclass(frozen=True, slots=True)
class Planning:
    """A round being planned, as a side check's `ask` sees it, for one of its countries:
    `config` is the monitor's opened config (credentials included: read, never put in an ask),
    `dns_due` whether the round is on the DNS cadence, `options` what the scheduler holds for
    side checks by name (the blocklists' lists and fresh names)."""

    monitor: "Monitor"
    config: JobConfig
    scheduled_at: datetime
    trigger: bool
    dns_due: bool
    country: str
    options: Mapping[str, object] = field(default_factory=dict)


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

    def __post_init__(self) -> None:
        if self.wire is not None and self.wire.name != self.name:
            raise ValueError(f"side check {self.name} has the wire of {self.wire.name}")
        if self.wire is not None and self.ask is None:
            raise ValueError(f"side check {self.name} rides jobs: it needs `ask`")
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
