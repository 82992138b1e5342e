"""The size bound of a result's mail DNS facts (`sideChecks.mail_dns`), applied by the agent
that resolves it and again by the controller at ingest (an agent could send more). Pure rules,
no I/O.

Each list keeps at most `RECORDS_MAX` records of at most `RECORD_CHARS_MAX` characters, the
MTA-STS policy at most `POLICY_CHARS_MAX`, each error `ERROR_CHARS_MAX`; then, while the whole
encodes to more than `ENCODED_MAX` bytes, the largest part gives way: its last record goes (a
list keeps at least one, cut instead, so a cut list never reads as "no record"), or the policy
is halved. Whatever was cut is named (wire name) in `truncated`, so the posture rules judge
what is there without taking an absence for a missing record.
"""

from typing import Final

import msgspec

from shared.dns_canary import capped
from shared.guards import BrokenInvariant
from shared.sidechecks.mail_dns import MailDns
from shared.sidechecks.readiness import DmarcLookup

ENCODED_MAX: Final = 16 * 1024
RECORDS_MAX: Final = 10  # per list: enough for any sane domain, bounded for a hostile one
RECORD_CHARS_MAX: Final = 2048
POLICY_CHARS_MAX: Final = 8 * 1024
ERROR_CHARS_MAX: Final = 200
ERRORS_MAX: Final = 8  # one per list and the policy, and the resolver
DOMAIN_CHARS_MAX: Final = 253
# attribute → wire name, for `truncated`
LISTS: Final = {
    "mx": "mx",
    "spf": "spf",
    "dmarc": "dmarc",
    "mta_sts": "mtaSts",
    "tls_rpt": "tlsRpt",
    "tlsa": "tlsa",
}
POLICY: Final = "mtaStsPolicy"
WALK: Final = "dmarcWalk"
WALK_MAX: Final = 8  # RFC 9989 4.10: a walk asks at most 8 names
# Per name the walk asks: more than one record is as good as two (all are discarded), and a
# DMARC record is far shorter than this.
WALK_RECORDS_MAX: Final = 2
WALK_RECORD_CHARS_MAX: Final = 512


def size(d: MailDns) -> int:
    return len(msgspec.json.encode(d))


def bounded(d: MailDns) -> MailDns:
    """`d` within the bound, with what was cut added to `truncated` (a copy; `d` itself when
    nothing was)."""
    cut: set[str] = set(d.truncated)
    lists: dict[str, list[str]] = {}
    for attr, wire in LISTS.items():
        records: list[str] | None = getattr(d, attr)
        if records is None:
            continue
        kept = [r[:RECORD_CHARS_MAX] for r in records[:RECORDS_MAX]]
        if kept != records:
            cut.add(wire)
        lists[attr] = kept
    policy = d.mta_sts_policy
    if policy is not None and len(policy) > POLICY_CHARS_MAX:
        policy = policy[:POLICY_CHARS_MAX]
        cut.add(POLICY)
    errors = {k[:32]: v[:ERROR_CHARS_MAX] for k, v in list(d.errors.items())[:ERRORS_MAX]}
    if errors != d.errors:
        cut.add("errors")
    domain = d.domain[:DOMAIN_CHARS_MAX]
    if domain != d.domain:
        cut.add("domain")
    walk = _walk(d.dmarc_walk)
    if walk != d.dmarc_walk:
        cut.add(WALK)
    canaries = capped(d.canaries)
    if canaries != d.canaries:
        cut.add("canaries")
    out = msgspec.structs.replace(
        d,
        domain=domain,
        mta_sts_policy=policy,
        errors=errors,
        canaries=canaries,
        dmarc_walk=walk,
        **lists,
    )
    while size(out) > ENCODED_MAX:
        parts: dict[str, int] = {
            attr: len(msgspec.json.encode(records))
            for attr, records in lists.items()
            if records and (len(records) > 1 or len(records[0]) > 1)
        }
        if out.mta_sts_policy:
            parts[POLICY] = len(msgspec.json.encode(out.mta_sts_policy))
        if not parts:
            break  # only the small fields are left: bounded by their own caps
        largest = max(parts, key=lambda k: parts[k])
        if largest == POLICY:
            if out.mta_sts_policy is None:
                raise BrokenInvariant("mail_dns_bound.bounded: out.mta_sts_policy is unset")
            out.mta_sts_policy = out.mta_sts_policy[: len(out.mta_sts_policy) // 2]
            cut.add(POLICY)
            continue
        records = lists[largest]
        if len(records) > 1:
            records.pop()
        else:
            records[0] = records[0][: len(records[0]) // 2]
        cut.add(LISTS[largest])
    if cut == set(d.truncated):
        return d
    out.truncated = sorted(cut)
    return out


def _walk(walk: list[DmarcLookup] | None) -> list[DmarcLookup] | None:
    if walk is None:
        return None
    return [
        DmarcLookup(
            name=w.name[:DOMAIN_CHARS_MAX],
            records=None
            if w.records is None
            else [r[:WALK_RECORD_CHARS_MAX] for r in w.records[:WALK_RECORDS_MAX]],
            error=w.error[:ERROR_CHARS_MAX],
        )
        for w in walk[:WALK_MAX]
    ]
