"""What every side check of the agent is: its wire types (shared/sidechecks) and how it is
built from the agent's settings into a `Runner`, which the worker calls after the core check
with what the job asks of it and the round (`Round`).

A runner gathers what is served and judges nothing (the controller does); it returns its facts,
or None when the round gives it nothing to look at (the check reached no server, the agent's
own path failed). It never raises for what the network does: a lookup that fails is its facts'
`error`. The worker runs the side checks a job names concurrently, under one deadline, and
reports any that raises or overstays in the result's `sideCheckErrors` instead of its facts
(logged), so a side check never spoils the core check's result.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic

from agent.probers.tls import SslContexts
from agent.resolver import TargetResolver
from agent.settings import SideCheckSettings, TargetSettings
from shared.clock import Clock
from shared.messages import CheckJob, CheckResult
from shared.sidechecks import AskT, FactsT, SideCheckWire


@dataclass(frozen=True, slots=True)
class Round:
    """What a side check may read of its round: the job (its config opened), the core check's
    result, the port it checked, the agent's resolver for check targets (fair between
    tenants) and its TLS contexts."""

    job: CheckJob
    result: CheckResult
    port: int
    resolver: TargetResolver | None
    # The agent's TLS contexts, for a side check that reaches a server of the job's itself (a
    # heartbeat's mailbox); None: the system's.
    contexts: SslContexts | None = None


Runner = Callable[[AskT, Round], Awaitable[FactsT | None]]


@dataclass(frozen=True, slots=True)
class AgentSideCheck(Generic[AskT, FactsT]):
    """One side check as the agent registers it: `wire`, and `build`, its runner from the
    agent's side check settings, the targets it may reach and the agent's clock. `prepare`:
    only for a side check that runs inside the core check's own session (the open relay
    test): the job as the prober must see it, asked (its ask) or not (None)."""

    wire: SideCheckWire[AskT, FactsT]
    build: Callable[[SideCheckSettings, TargetSettings, Clock], Runner[AskT, FactsT]]
    prepare: Callable[[CheckJob, AskT | None], CheckJob] | None = None


# The registry's and the worker's view: side checks of every ask and facts type.
AnySideCheck = AgentSideCheck[Any, Any]
AnyRunner = Runner[Any, Any]
