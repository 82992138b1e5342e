"""Oracle rules, pure: a resolver's health from its canaries (shared.dns_canary), what an
operator sets when an oracle is unhealthy, and when a health change is told.

A round's mail DNS and reverse DNS facts are believed only when the canaries the agent asked
beside them came back right (controller/sidechecks/dns_canary.py, `resolver_health`, which the
DNS side checks' `judge` asks); each country's resolver is moved by the same rule here.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from controller.sidechecks.dns_canary import Health, resolver_health

# The oracle name of the agents' resolver for mail DNS and reverse DNS (a list's is its zone).
RESOLVER: Final = "dns"


# What the operator sets, by oracle kind and what is wrong (docs/operating.md).
RESOLVER_FIX: Final = (
    "point AGENT_DNS_RESOLVER of that country's agents at a resolver that answers truthfully"
    " (one of your own, e.g. unbound on the agent's host), or set AGENT_DNS_CANARIES to names"
    " that resolver must and must not know"
)
LIST_FIX: Final = (
    "point AGENT_BLOCKLIST_RESOLVER of that country's agents at a resolver of your own (not a"
    " public one), or take the list out of BLOCKLISTS"
)
SPAMHAUS_FIX: Final = (
    "give that country's agents a Spamhaus DQS key (AGENT_SPAMHAUS_DQS_KEY), or point"
    " AGENT_BLOCKLIST_RESOLVER at a resolver of your own that Spamhaus answers"
)


def fix(oracle: str) -> str:
    """What to set when `oracle` (RESOLVER, or a list's zone) is unhealthy or unknown."""
    if oracle == RESOLVER:
        return RESOLVER_FIX
    if oracle.endswith("spamhaus.org"):
        return SPAMHAUS_FIX
    return LIST_FIX


# A new state is told once it has held this long: a resolver's bad minute is no notice.
HOLD: Final = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Stored:
    """An oracle's health in one country as last written: its `state` since `since`, and the
    state its organizations were last `told` of."""

    state: str
    reason: str
    since: datetime
    told: str


Change = Literal["unhealthy", "recovered"]


def step(
    before: Stored | None, now: Health, at: datetime, hold: timedelta = HOLD
) -> tuple[Stored, Change | None]:
    """Move one oracle in one country to `now` at `at`: the state and reason as judged, `since`
    kept while the state stays; told (`unhealthy`: it is not healthy any more, `recovered`:
    healthy again) once the new state has held `hold`, and only when the organizations were
    told otherwise: one notice per change, none for a flap shorter than `hold`. `unknown`
    counts as not healthy (nothing it says is believed); `unchecked` is never told."""
    if before is None:
        before = Stored("healthy", "", at, "healthy")
    since = before.since if before.state == now.state else at
    stored = Stored(now.state, now.reason, since, before.told)
    if now.state == "unchecked" or at - since < hold:
        return stored, None
    bad = now.state != "healthy"
    if bad and before.told == "healthy":
        return Stored(now.state, now.reason, since, now.state), "unhealthy"
    if not bad and before.told != "healthy":
        return Stored(now.state, now.reason, since, "healthy"), "recovered"
    return stored, None


__all__ = ["RESOLVER", "Health", "Stored", "fix", "resolver_health", "step"]
