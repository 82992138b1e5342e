"""The resolver canaries' rule, pure: a resolver's health from the canaries the agent asked
beside one round's mail DNS or reverse DNS lookups (shared.dns_canary).

A round's facts are believed only when its canaries came back right: a resolver that answers
NXDOMAIN for a name that must exist, or records for one that must not, is `unhealthy`, and one
whose canaries got no answer is `unknown`; either way that country's facts of that round are
unknown, never a finding about the monitored domain. Facts without canaries (older agents,
`AGENT_DNS_CANARIES=""`) are `unchecked` and believed as before. The DNS side checks' `judge`
asks it; controller/oracles moves each country's resolver health by it.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from controller.sidechecks.findings import Verdicts
from controller.sidechecks.frame import Judging
from shared.dns_canary import DnsCanary
from shared.sidechecks.mail_dns import MailDns
from shared.sidechecks.reverse_dns import ReverseDns

State = Literal["healthy", "unhealthy", "unknown", "unchecked"]


@dataclass(frozen=True, slots=True)
class Health:
    state: State
    reason: str = ""

    @property
    def believed(self) -> bool:
        """Whether the facts it vouches for may be judged."""
        return self.state in ("healthy", "unchecked")


def resolver_health(canaries: Sequence[DnsCanary] | None) -> Health:
    """A resolver's health from the canaries asked beside one round's lookups."""
    if not canaries:
        return Health("unchecked")
    for c in canaries:
        if c.found is not None and c.found != c.exists:
            said = "records" if c.found else "that it does not exist (NXDOMAIN or no record)"
            must = "must exist" if c.exists else "must not exist"
            return Health("unhealthy", f"it answered {said} for {c.name} {c.type}, which {must}")
    for c in canaries:
        if c.found is None:
            return Health("unknown", f"its canary {c.name} {c.type} got no answer: {c.error}")
    return Health("healthy")


# The facts of the side checks whose lookups the canaries vouch for.
CanariedT = TypeVar("CanariedT", MailDns, ReverseDns)


def if_believed(
    judge: Callable[[Judging[CanariedT]], Verdicts],
) -> Callable[[Judging[CanariedT]], Verdicts]:
    """A DNS side check's `judge`, asked only when the round's resolver passed its canaries:
    otherwise what it answered is unknown, no verdict either way."""

    def believed_judge(j: Judging[CanariedT]) -> Verdicts:
        return judge(j) if resolver_health(j.facts.canaries).believed else {}

    return believed_judge
