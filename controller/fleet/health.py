"""The fleet's health per country, pure (issue 66): what an operator alerts on about its own
agents, as Datadog's default monitors for private locations do. Three checks per country:

- `agents`: it has a live agent (controller.fleet.live) while monitors run there;
- `saturation`: the share of its rounds lately recorded `saturated` stays at most a threshold
  (`FLEET_SATURATED_RATIO_MAX`);
- `features`: each of its live agents announces every feature the scheduler uses
  (`shared.messages.AGENT_FEATURES`): an older agent makes its whole country go without them.

Each is moved by the operator health rule (`controller.operator_health.rules.step`): a change
is told once it has held, and only once; a country no check can judge now is `unchecked`,
never told.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from controller.operator_health.rules import Health, Stored

AGENTS: Final = "agents"
SATURATION: Final = "saturation"
FEATURES: Final = "features"
CHECKS: Final = (AGENTS, SATURATION, FEATURES)
# Rounds a country must have had in the window before its saturated share is judged.
SATURATION_MIN_ROUNDS: Final = 10
# Agents named in a `features` reason at most (the rest counted).
NAMED_MAX: Final = 5
# A country served once stays the fleet's this long after its last agent went.
FORGET: Final = timedelta(days=7)

# What the operator does, by check (docs/operating.md).
FIXES: Final = {
    AGENTS: "start an agent for that country (or look why its agents stopped beating: their"
    " logs, their NATS credentials), or take the country out of the monitors' countries",
    SATURATION: "add agents (or AGENT_CONCURRENCY) in that country, or spread its monitors'"
    " rounds over more countries",
    FEATURES: "upgrade that country's agents to this controller's version",
}


def served(stored: Mapping[tuple[str, str], Stored], at: datetime) -> frozenset[str]:
    """The countries the fleet serves: those with a live agent now or within FORGET before
    `at`. A `features` health is judged only where agents beat (`features_health`) and is
    `unchecked` since they went, so its stored row says it; a country a monitor lists and no
    agent ever served has none, whatever its `agents` health."""
    return frozenset(
        cc
        for (check, cc), s in stored.items()
        if check == FEATURES and (s.state != "unchecked" or at - s.since < FORGET)
    )


@dataclass(frozen=True, slots=True)
class Rounds:
    """A country's rounds in the window: all of them, and those recorded `saturated`."""

    total: int
    saturated: int


def agents_health(country: str, expected: bool, live: frozenset[str]) -> Health | None:
    """`healthy` with a live agent, `unhealthy` without one where monitors run; None (not
    judged) for a country no monitor runs in and no agent serves."""
    if country in live:
        return Health("healthy", "")
    if not expected:
        return None
    return Health("unhealthy", f"no live agent in {country}: its rounds are recorded no_agent")


def saturation_health(rounds: Rounds | None, ratio_max: float) -> Health | None:
    """`unhealthy` when more than `ratio_max` of the window's rounds were `saturated`;
    `healthy` when none was, however few (no round waited: a saturation told is over once its
    country is quiet); None (not judged) when some were, of fewer than SATURATION_MIN_ROUNDS."""
    if rounds is None or not rounds.saturated:
        return Health("healthy", "")
    if rounds.total < SATURATION_MIN_ROUNDS:
        return None
    share = rounds.saturated / rounds.total
    if share > ratio_max:
        return Health(
            "unhealthy",
            f"{rounds.saturated} of {rounds.total} rounds saturated ({share:.0%}, over"
            f" {ratio_max:.0%})",
        )
    return Health("healthy", "")


def features_health(agents: Mapping[str, Iterable[str]], needed: Sequence[str]) -> Health | None:
    """`unhealthy` when a live agent (id → its announced features) lacks one of `needed`,
    naming the first NAMED_MAX of them and what they lack; None without live agents."""
    if not agents:
        return None
    lacking = {
        agent: missing
        for agent in sorted(agents)
        if (missing := [f for f in needed if f not in set(agents[agent])])
    }
    if not lacking:
        return Health("healthy", "")
    named = "; ".join(f"{a} lacks {', '.join(m)}" for a, m in list(lacking.items())[:NAMED_MAX])
    more = len(lacking) - NAMED_MAX
    return Health(
        "unhealthy",
        f"{len(lacking)} of {len(agents)} agents too old: {named}"
        + (f"; and {more} more" if more > 0 else ""),
    )


def judge(
    *,
    expected: frozenset[str],
    agents: Mapping[str, Mapping[str, Iterable[str]]],
    rounds: Mapping[str, Rounds],
    ratio_max: float,
    needed: Sequence[str],
) -> dict[tuple[str, str], Health]:
    """(check, country) → its health now, for the countries monitors run in (`expected`),
    those with live agents (`agents`: country → agent id → features) and those with rounds;
    a check that cannot judge a country now is left out (the caller makes it `unchecked`)."""
    live = frozenset(cc for cc, a in agents.items() if a)
    out: dict[tuple[str, str], Health] = {}
    for cc in sorted(expected | live | rounds.keys()):
        found = {
            AGENTS: agents_health(cc, cc in expected, live),
            SATURATION: saturation_health(rounds.get(cc), ratio_max),
            FEATURES: features_health(agents.get(cc, {}), needed),
        }
        out |= {(check, cc): h for check, h in found.items() if h is not None}
    return out
