"""DMARC's DNS Tree Walk (RFC 9989 section 4.10), pure: the names a walk asks, where it stops,
and from its answers the Organizational Domain and the DMARC Policy Record that applies.

The agent walks (`walk`, for readiness and mail DNS alike) and asks the report destinations of
the record that applies for their authorization (agent/sidechecks/readiness.py); the controller
judges the same walk (controller/sidechecks/readiness/rules.py and mail_dns/rules.py): all read
it here, so they agree on which record that is; each record is read by
shared/sidechecks/dmarc_record.py.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from shared.sidechecks.dmarc_record import applied, tags
from shared.sidechecks.readiness import DmarcLookup

# RFC 9989 4.10 step 4: a name of 8 labels or more is cut to its last 7 after the first query,
# so a walk asks at most 8 names.
WALK_LABELS: Final = 7


def targets(domain: str) -> list[str]:
    """The names a walk from `domain` asks, in order: the domain; then, for a domain of 8
    labels or more, its last 7; then one label fewer each time, down to the top-level label."""
    labels = domain.split(".")
    out = [domain]
    rest = labels[-WALK_LABELS:] if len(labels) > WALK_LABELS else labels[1:]
    while rest:
        out.append(".".join(rest))
        rest = rest[1:]
    return out


async def walk(
    domain: str, lookup: Callable[[str], Awaitable[DmarcLookup]], above: bool = False
) -> list[DmarcLookup]:
    """The Tree Walk's lookups from `domain` (from the name above it, `above`), in order:
    `lookup(name)` of each name it asks (the `_dmarc.<name>` DMARC records, or why they could
    not be had), until one stops the walk or fails."""
    out: list[DmarcLookup] = []
    names = targets(domain)
    start = 1 if above else 0
    for i, name in enumerate(names[start:], start=start):
        found = await lookup(name)
        out.append(found)
        if found.records is None or stops(i, single(found)):
            break
    return out


def single(w: DmarcLookup) -> str | None:
    """The one DMARC record of a lookup (RFC 9989 4.10 step 2: several are all discarded)."""
    return w.records[0] if w.records is not None and len(w.records) == 1 else None


def stops(index: int, record: str | None) -> bool:
    """Whether the walk ends at the `index`th name asked, which holds `record`: a `psd=n`
    there, or a `psd=y` above the domain the walk started from (RFC 9989 4.10.2: a `psd=y` at
    the starting domain decides nothing)."""
    if record is None:
        return False
    psd = tags(record).get("psd", "u").lower()
    return psd == "n" or (psd == "y" and index > 0)


@dataclass(frozen=True, slots=True)
class Walked:
    """What a walk found: the Organizational Domain, and the record that applies to the
    domain (`policy_at`, where it was found; None for none), its text and its policy; and the
    record that applies to the Organizational Domain's subdomains (`parent_at`: its own, else a
    PSD's; None for none) with the policy it asks for those that do not exist (`np`, else
    `sp`, else `p`) and for the others (`sp`, else `p`)."""

    organizational: str
    policy_at: str | None
    policy: str | None
    record: str | None
    parent_at: str | None = None
    nonexistent: str | None = None
    subdomains: str | None = None


def tree_walk(domain: str, walk: Sequence[DmarcLookup]) -> Walked | None:
    """The Organizational Domain and the applicable record from the walk's answers (RFC 9989
    sections 4.10.1 and 4.10.2), None when a lookup it needed failed."""
    found: list[tuple[str, dict[str, str], str]] = []
    org: str | None = None
    for i, w in enumerate(walk):
        if w.records is None:
            return None  # a lookup failed before the walk could stop
        record = single(w)
        if record is None:
            continue
        t = tags(record)
        found.append((w.name, t, record))
        if stops(i, record):
            psd_n = t.get("psd", "").lower() == "n"
            org = w.name if psd_n else ".".join(domain.split(".")[-(w.name.count(".") + 2) :])
            break
    else:
        if walk and walk[-1].name.count(".") > 0:
            return None  # the walk did not reach the top-level label
    if org is None:
        org = found[-1][0] if found else domain
    # The record for the Organizational Domain's subdomains: its own, else the PSD's.
    parent = next((f for f in found if f[0] == org), None) or next(
        (f for f in found if f[1].get("psd", "").lower() == "y"), None
    )
    below = applied(parent[1]) if parent is not None else None
    subdomains = (below.get("sp") or below.get("p")) if below is not None else None
    nonexistent = (below.get("np") or subdomains) if below is not None else None
    under = (parent[0] if parent is not None else None, nonexistent, subdomains)
    own = next((f for f in found if f[0] == domain), None)
    if own is not None:
        mine = applied(own[1])
        return Walked(org, domain, mine.get("p") if mine else None, own[2], *under)
    # A subdomain without a record of its own: the Organizational Domain's, or the PSD's.
    if parent is None:
        return Walked(org, None, None, None)
    return Walked(org, parent[0], subdomains, parent[2], *under)
