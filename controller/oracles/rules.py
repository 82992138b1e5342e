"""Oracle rules, pure: a resolver's health from its canaries (shared.dns_canary) and what an
operator sets when an oracle is unhealthy (when a change is told: controller.operator_health).

A round's mail DNS and reverse DNS facts are believed only when the canaries the agent asked
beside them came back right (controller/sidechecks/dns_canary.py, `resolver_health`, which the
DNS side checks' `judge` asks); each country's resolver is moved by the same rule here.
"""

from typing import Final

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


__all__ = ["RESOLVER", "Health", "fix", "resolver_health"]
