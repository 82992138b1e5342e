"""Findings, pure: a finding's key (code, country), the finding, a round's verdicts, and every
finding kind's severity and advice, declared once by whoever raises it (posture's core codes in
controller/posture/rules.py, each side check's in its package) through `declare`.

A verdict maps a finding's key to the finding when it holds, or to None when the round could
judge it and it does not hold. A key the round could not judge is absent, so a country whose
check failed neither raises nor clears anything.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from controller.monitors.thresholds import Severity

Key = tuple[str, str]  # (code, country or "")
# code → (severity, what a person can do about it)
Kind = tuple[Severity, str]

# Every finding kind declared, by code: `declare` fills it as the declaring modules load
# (controller.sidechecks.registry loads every side check; posture.rules loads the registry).
KINDS: Final[dict[str, Kind]] = {}
# Facts about the monitor's mail domain rather than its server: one finding of the customer's
# domain, however many of its monitors show it, counted once (controller.posture.store
# `open_counts`).
DOMAIN_FACTS: Final[set[str]] = set()
# What a fact of a mail domain is about, which decides the monitors it concerns (`concerns`).
SENDING = "sending"  # mail sent in the domain's name: SPF, DMARC, DKIM keys, DMARC reports
INBOUND = "inbound"  # mail the domain's MX receives over SMTP: MTA-STS, TLS-RPT, TLS reports
About = str
# The monitor types each is shown on, counted and told for: SMTP monitors and round trips (a
# round trip sends in the domain's name and delivers to its MX), never mailbox access.
SCOPES: Final[Mapping[About, frozenset[str]]] = {
    SENDING: frozenset({"smtp", "roundtrip"}),
    INBOUND: frozenset({"smtp", "roundtrip"}),
}
# Each domain fact's code → what it is about.
ABOUT: Final[dict[str, About]] = {}
# Told by their own notices (`cert_expiry`, once per threshold), not as a finding.
QUIET: Final[set[str]] = set()


def declare(kinds: Mapping[str, Kind], quiet: frozenset[str] = frozenset()) -> Mapping[str, Kind]:
    """Declare finding kinds; returns them. A code declared twice (by two side checks, or a
    side check and the core) is a programming error: each kind is declared in one place."""
    for code, kind in kinds.items():
        if KINDS.get(code, kind) != kind:
            raise ValueError(f"finding code {code!r} is declared twice")
        KINDS[code] = kind
    QUIET.update(quiet)
    return kinds


def domain_facts(about: Mapping[str, About]) -> frozenset[str]:
    """Mark declared codes as facts of the monitor's mail domain (`DOMAIN_FACTS`), each with
    what it is about (`SENDING`, `INBOUND`): what every monitor naming the domain reads alike
    (its records, its reports), not its own server's."""
    unknown = set(about) - set(KINDS)
    if unknown:
        raise ValueError(f"domain facts not declared: {sorted(unknown)}")
    if bad := {code for code, what in about.items() if what not in SCOPES}:
        raise ValueError(f"domain facts about nothing known: {sorted(bad)}")
    DOMAIN_FACTS.update(about)
    ABOUT.update(about)
    return frozenset(about)


def concerns(code: str, monitor_type: str) -> bool:
    """Whether a finding `code` concerns a monitor of `monitor_type`: a fact of a mail domain
    only the types `SCOPES` gives for what it is about; any other finding the monitor it is
    found on. What a monitor is shown, counted and told of follows it."""
    about = ABOUT.get(code)
    return about is None or monitor_type in SCOPES[about]


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    country: str  # "" for the monitor as a whole
    detail: str  # what was seen, in a sentence

    @property
    def key(self) -> Key:
        return (self.code, self.country)

    @property
    def severity(self) -> Severity:
        return KINDS[self.code][0]

    @property
    def advice(self) -> str:
        return KINDS[self.code][1]

    @property
    def notified(self) -> bool:
        """Whether its appearance is told by a finding notice (on the channels its severity is
        chosen for); `certificate_expiring` is told by the expiry notices instead."""
        return self.code not in QUIET


Verdicts = dict[Key, Finding | None]


def judge(verdicts: Verdicts, code: str, country: str, holds: bool, detail: str) -> None:
    verdicts[(code, country)] = Finding(code, country, detail) if holds else None
