"""Where each name a monitor depends on stands on each list, per country, as its page and
`GET …/blocklists` show it. Pure: the answers, healths and listings are read by the caller.

A cell is `listed` (a healthy list says so there: since the monitor's listing opened, else since
that answer), `not_listed` (a healthy list does not list it there), `list_unhealthy` (the list
lists everything, says nothing or answers errors there, now or in the round that answered: its
answers say nothing about the name) or `unknown` (no usable answer within two intervals, the
list's health there is not known, or the answer's own round did not answer the list's test
entries; the monitor's own round's failed lookup says why).

What is shown reveals nothing about who else asked or when: an answer is shared by every
monitor that meets its name, so a cell is dated by the monitor's own round there (`checked_at`,
the answer at most one interval older), never by the shared answer's time.
"""

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from controller.sidechecks.blocklists.rules import BlockList, ListHealth, Listing, Verdict, read

Standing = Literal["listed", "not_listed", "list_unhealthy", "unknown"]


@dataclass(frozen=True, slots=True)
class Seen:
    """One list's stored (real) answer about one name in one country, its TXT text, and the
    list's health as its own round's test entries showed it (`rules.vouch`)."""

    a: list[str]
    txt: str | None = None
    vouch: ListHealth = field(default_factory=lambda: ListHealth("healthy"))


@dataclass(frozen=True, slots=True)
class Own:
    """The monitor's own last round in one country: when it ran, and its failed lookups
    (name → zone → why)."""

    at: datetime
    errors: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Cell:
    country: str
    state: Standing
    reason: str = ""
    since: datetime | None = None  # listed: since when
    checked_at: datetime | None = None  # when the list last answered about it there


@dataclass(frozen=True, slots=True)
class OnList:
    """One name on one list: every country's cell, and the monitor's open listing."""

    list: BlockList
    cells: tuple[Cell, ...]
    listing: Listing | None = None


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    kind: str  # ip or domain
    sources: tuple[str, ...]  # host, mx:<host>, listed (the monitor's `reputation`)
    countries: tuple[str, ...]  # where the monitor's rounds found it
    lists: tuple[OnList, ...] = field(default=())


def cell(
    b: BlockList,
    country: str,
    seen: Seen | None,
    health: ListHealth,
    listing: Listing | None,
    own: Own | None = None,
    name: str = "",
) -> Cell:
    """One name on list `b` in `country`."""
    at = own.at if own is not None else None
    if health.state == "unhealthy":
        return Cell(country, "list_unhealthy", health.reason, checked_at=at)
    if seen is None:
        failed = own.errors.get(name, {}).get(b.zone) if own is not None else None
        if failed:
            return Cell(country, "unknown", f"its last lookup failed: {failed}", checked_at=at)
        return Cell(country, "unknown", "not asked from here within two intervals")
    if health.state != "healthy":
        return Cell(country, "unknown", health.reason, checked_at=at)
    if seen.vouch.state == "unhealthy":
        why = f"when it answered, the list {seen.vouch.reason}"
        return Cell(country, "list_unhealthy", why, checked_at=at)
    if seen.vouch.state != "healthy":
        return Cell(country, "unknown", seen.vouch.reason, checked_at=at)
    verdict = read(b, seen.a)
    if verdict.state == "listed":
        since = listing.since if listing is not None else at
        return Cell(country, "listed", reason(verdict, seen.txt), since, at)
    if verdict.state == "clean":
        return Cell(country, "not_listed", checked_at=at)
    return Cell(country, "unknown", verdict.reason, checked_at=at)


def reason(verdict: Verdict, txt: str | None) -> str:
    """A listing's why: the codes' meanings with the codes, then the list's own TXT text when
    it gave one."""
    codes = ", ".join(verdict.codes)
    why = verdict.reason if verdict.reason == codes else f"{verdict.reason} ({codes})"
    text = " ".join((txt or "").split())
    return f"{why}; the list says: {text}" if text else why


def kind_of(name: str) -> str:
    """`ip` for an address, else `domain` (as the agent tells them apart)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return "domain"
    return "ip"


def standing(
    lists: Iterable[BlockList],
    names: Mapping[str, Mapping[str, str]],
    listed: Iterable[str],
    seen: Mapping[tuple[str, str, str], Seen],
    health: Mapping[tuple[str, str], ListHealth],
    listings: Mapping[tuple[str, str], Listing],
    own: Mapping[str, Own] | None = None,
) -> list[Name]:
    """Every name the monitor depends on (`names`: country → name → where it came from, its
    rounds' own; `listed`: the names its `reputation` lists, shown before any round found
    them), each on every list of its kind, per country (`seen`: (zone, name, country) → the
    answer; `health`: (zone, country) → the list's health there; `listings`: (zone, name) →
    the monitor's open listing; `own`: country → the monitor's own last round there). The
    lists' own test entries are not the monitor's names."""
    chosen = tuple(lists)
    tests = {t for b in chosen for t in b.tests}
    mine = list(dict.fromkeys(listed))
    sources: dict[str, set[str]] = {n: {"listed"} for n in mine}
    countries: dict[str, set[str]] = {n: set() for n in mine}
    for cc, found in names.items():
        for name, source in found.items():
            if source == "listed" and name in tests and name not in mine:
                continue
            sources.setdefault(name, set()).add(source)
            countries.setdefault(name, set()).add(cc)
    out = []
    for name in sorted(sources, key=lambda n: (kind_of(n), n)):
        kind = kind_of(name)
        on_lists = tuple(
            OnList(
                b,
                tuple(
                    cell(
                        b,
                        cc,
                        seen.get((b.zone, name, cc)),
                        health.get((b.zone, cc), ListHealth("unknown", "not asked yet")),
                        listings.get((b.zone, name)),
                        (own or {}).get(cc),
                        name,
                    )
                    for cc in sorted(countries[name])
                ),
                listings.get((b.zone, name)),
            )
            for b in chosen
            if b.kind == kind
        )
        out.append(
            Name(name, kind, tuple(sorted(sources[name])), tuple(sorted(countries[name])), on_lists)
        )
    return out
