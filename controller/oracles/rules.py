"""Oracle rules, pure: a resolver's health from its canaries (shared.dns_canary) and what an
operator sets when an oracle is unhealthy (when a change is told: controller.operator_health).

A round's mail DNS and reverse DNS facts are believed only when the canaries the agent asked
beside them came back right (controller/sidechecks/dns_canary.py, `resolver_health`, which the
DNS side checks' `judge` asks); each country's resolver is moved by the same rule here. The
lists asked through that resolver are not judged apart from it (`root_cause`).
"""

from collections.abc import Collection, Mapping
from typing import Final

from controller.sidechecks.dns_canary import Health, resolver_health
from controller.sidechecks.oracle_fixes import own_fix

# The oracle name of the agents' resolver for mail DNS and reverse DNS (a list's is its zone).
RESOLVER: Final = "dns"


# What the operator sets, by oracle kind and what is wrong (docs/operating.md).
RESOLVER_FIX: Final = (
    "point AGENT_DNS_RESOLVER of that country's agents at a resolver that answers truthfully"
    " (one of your own, e.g. unbound on the agent's host), or set AGENT_DNS_CANARIES to names"
    " that resolver must and must not know"
)


# Why a list is not judged on its own in a country (`root_cause`).
BEHIND: Final = "asked through the agents' DNS resolver there, which is not believed"

Key = tuple[str, str]  # (oracle, country)


def root_cause(
    judged: Mapping[Key, Health], through: Collection[str]
) -> tuple[dict[Key, Health], frozenset[Key]]:
    """Root cause first: in a country whose resolver is not believed (its canaries failed) and
    whose lists are asked through it (`through`: `Reputation.resolver` "dns"), no list is
    judged on its own: each is `unknown` for that reason, and not told (the keys returned), so
    the resolver's one notice is the country's. Elsewhere, `judged` as it is."""
    bad = {cc for (oracle, cc), h in judged.items() if oracle == RESOLVER and not h.believed}
    out = dict(judged)
    quiet: set[Key] = set()
    for oracle, cc in judged:
        if oracle != RESOLVER and cc in bad and cc in through:
            out[(oracle, cc)] = Health("unknown", f"{BEHIND} ({judged[(RESOLVER, cc)].reason})")
            quiet.add((oracle, cc))
    return out, frozenset(quiet)


def fix(oracle: str, reason: str = "") -> str:
    """What to set when `oracle` is unhealthy or unknown, for `reason`: the resolver's fix for
    the resolver, and for an oracle behind a resolver that is not believed; else what the side
    check whose oracle it is says (controller.sidechecks.oracle_fixes)."""
    if oracle == RESOLVER or reason.startswith(BEHIND):
        return RESOLVER_FIX
    return own_fix(oracle) or RESOLVER_FIX


__all__ = ["BEHIND", "RESOLVER", "Health", "fix", "resolver_health", "root_cause"]
