"""Mail-authentication readiness on the wire (issue 67): what receivers enforce beyond a record
being there. A monitored mail domain's SPF include tree with its DNS lookup count (RFC 7208
section 4.6.4), its DMARC records found by the DNS Tree Walk (RFC 9989) with the authorization
records of its external report destinations (RFC 9990 `_report._dmarc`), and the DKIM keys of
the selectors asked for, as one country's agent resolved them.

The agent gathers and counts (agent/sidechecks/readiness.py); the controller judges
(controller/sidechecks/readiness). Every list and text is bounded here (`bounded`): an agent is
a stranger to the controller, and a hostile zone can serve anything.
"""

import re
from typing import Final

import dkim.util
import msgspec

from shared.dns_canary import DnsCanary, capped
from shared.sidechecks import SideCheckWire

QUERIES_MAX: Final = 80  # DNS queries of one round (the agent stops there)
SELECTORS_MAX: Final = 16  # DKIM keys read per round: the signing ones, the listed, the common
SELECTOR_MAX: Final = 63
LISTED_MAX: Final = 6  # selectors a monitor lists (`dkimSelectors`)
NODES_MAX: Final = 64  # SPF records of the include tree kept (the walk itself is bounded too)
RECORD_MAX: Final = 1024  # characters of a record kept
NAMES_MAX: Final = 16
NAME_MAX: Final = 253
TEXT_MAX: Final = 300
WALK_MAX: Final = 8  # DMARC Tree Walk queries (RFC 9989 4.10: at most 8 per walk)
REPORT_AUTH_MAX: Final = 8  # external report destinations whose authorization is asked


# A DKIM selector (RFC 6376 3.1: dot-separated labels of the key's name
# `<selector>._domainkey.<domain>`): letters, digits, hyphens (not at a label's ends) and the
# underscores some providers use.
_SELECTOR: Final = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$")


def selector(text: str) -> str | None:
    """`text` as a DKIM selector (lower case: DNS names are case-insensitive), or None when it
    is not one or is longer than SELECTOR_MAX."""
    name = text.strip().lower()
    return name if len(name) <= SELECTOR_MAX and _SELECTOR.match(name) else None


class ReadinessAsk(msgspec.Struct, kw_only=True, rename="camel"):
    """`domain`: the monitored mail domain ("" for none: only what the round's own facts say
    is judged); `selectors`: the DKIM selectors to read (the monitor's listed ones and those a
    round trip's received message was signed with); `held`: why the domain is not asked this
    round (its organization's readiness DNS budget in the country is spent: then `domain` is
    "", so an agent that predates `held` asks nothing either), which the agent returns as
    its facts' `error`."""

    domain: str = ""
    selectors: list[str] = msgspec.field(default_factory=list)
    held: str = ""


class SpfNode(msgspec.Struct, kw_only=True, rename="camel"):
    """One SPF record of the include tree: `domain` it was read at, `via` how it was reached
    (`include`, `redirect`; "" for the domain's own), `parent` the index of the record that
    named it (-1 for the root), `lookups` the DNS-querying terms of this record alone
    (`include`, `a`, `mx`, `ptr`, `exists`, `redirect`), `record` its text."""

    domain: str
    via: str = ""
    parent: int = -1
    lookups: int = 0
    record: str = ""


class Spf(msgspec.Struct, kw_only=True, rename="camel"):
    """The domain's SPF as the agent walked it.

    `record`: the domain's own SPF record (null when it has none); `lookups`: the DNS-querying
    terms of the whole tree (RFC 7208 4.6.4: `include`, `a`, `mx`, `ptr`, `exists`, `redirect`;
    not `ip4`, `ip6`, `all`, `exp`), what a receiver spends on a sender that no term matches;
    `complete`: every record of the tree was read, so `lookups` is exact (else it is a lower
    bound: `error` says why). `void`: lookups that found nothing (NXDOMAIN or no records),
    named in `voidNames`; `mxOver`: `mx` targets with more than 10 MX names; `ptr`: a `ptr`
    term is used; `all`: the `all` term that ends evaluation (`+all`, `?all`, `~all`, `-all`;
    "" for none); `everyone`: terms that match every sender of an address family as written
    (a CIDR length of 0: `ip4:0.0.0.0/0`, `a/0` of a name with A records); `loop`: the chain
    of domains of an include or redirect loop; `macros`: targets that depend on the sender
    (not followed); `nodes`: the tree (at most NODES_MAX); `broken`: a permanent error
    receivers return whatever the sender (more than one SPF record, an include of a domain
    without one, a term or modifier that does not parse anywhere in a record, `redirect` or
    `exp` twice)."""

    record: str | None = None
    lookups: int = 0
    complete: bool = True
    void: int = 0
    void_names: list[str] = msgspec.field(default_factory=list)
    mx_over: list[str] = msgspec.field(default_factory=list)
    ptr: bool = False
    all: str = ""
    everyone: list[str] = msgspec.field(default_factory=list)
    loop: list[str] = msgspec.field(default_factory=list)
    macros: list[str] = msgspec.field(default_factory=list)
    nodes: list[SpfNode] = msgspec.field(default_factory=list)
    broken: str = ""
    error: str = ""


class DmarcLookup(msgspec.Struct, kw_only=True, rename="camel"):
    """One query of the DMARC Tree Walk: `name` (the domain, without `_dmarc.`) and the
    `v=DMARC1` records found there ([] for none; null when the lookup failed: `error`)."""

    name: str
    records: list[str] | None = None
    error: str = ""


class ReportAuth(msgspec.Struct, kw_only=True, rename="camel"):
    """An external report destination's authorization (RFC 9990, "Verifying
    External Destinations"): `uri` as the record lists it, `host` its domain, `authorized`
    whether `<policy domain>._report._dmarc.<host>` has a `v=DMARC1` record that does not
    move the reports to another host (null: the lookup failed, `error`); `why` says why not."""

    uri: str
    host: str
    authorized: bool | None = None
    error: str = ""
    why: str = ""


class Dmarc(msgspec.Struct, kw_only=True, rename="camel"):
    """The DMARC Tree Walk from the domain (RFC 9989 section 4.10), in the order asked, and
    the authorization of every external report destination (`rua` and `ruf`) of the record
    that applies: `reportsFor` the domain it was found at ("" from agents that asked those of
    the first record found), `unchecked` the external destinations past REPORT_AUTH_MAX."""

    walk: list[DmarcLookup] = msgspec.field(default_factory=list)
    reports: list[ReportAuth] = msgspec.field(default_factory=list)
    reports_for: str = ""
    unchecked: int = 0


class DkimKey(msgspec.Struct, kw_only=True, rename="camel"):
    """One selector's key record (`<selector>._domainkey.<domain>`): `record` (null: none
    published, or the lookup failed: `error`); `keyType` (`k=`, rsa by default), `bits` the
    key's size (null when it does not parse), `testing` (`t=y`), `revoked` (`p=` empty),
    `sha256` of the public key as published (to tell a replaced key); `signing`: the
    round's own message (a round trip's) was signed with it."""

    selector: str
    signing: bool = False
    record: str | None = None
    key_type: str = ""
    bits: int | None = None
    testing: bool = False
    revoked: bool = False
    sha256: str = ""
    error: str = ""


class Change(msgspec.Struct, kw_only=True, rename="camel"):
    """A record that changed since this country's previous round that read it: `what` (`spf`,
    `dmarc`, `dkim:<selector>`), the record `before` and `after` ("" for none), and `since`
    when the one before was first seen (ISO 8601)."""

    what: str
    before: str = ""
    after: str = ""
    since: str = ""


class Kept(msgspec.Struct, kw_only=True, rename="camel"):
    """What the controller keeps beyond one round and adds to the facts as it stores them
    (never an agent's: the ingester's bound drops any an agent sends): the records that
    changed, and since when each DKIM key (by selector) has been published unchanged."""

    changes: list[Change] = msgspec.field(default_factory=list)
    key_since: dict[str, str] = msgspec.field(default_factory=dict)


class Readiness(msgspec.Struct, kw_only=True, rename="camel"):
    """What one country's agent found of the domain (`domain` "" when none was asked).
    `mx`: the domain's MX names (to tell Microsoft 365 and Google Workspace hosting; null
    when the lookup failed); `queries`: the DNS queries the round spent (at most QUERIES_MAX;
    what its organization's hourly budget in the country is charged).
    `canaries`: the resolver canaries asked beside these lookups; a round whose resolver
    fails them is believed in nothing (null: none configured). `kept`: the controller's (see
    `Kept`)."""

    domain: str = ""
    spf: Spf | None = None
    dmarc: Dmarc | None = None
    dkim: list[DkimKey] = msgspec.field(default_factory=list)
    mx: list[str] | None = None
    queries: int = 0
    error: str = ""
    canaries: list[DnsCanary] | None = None
    kept: Kept | None = None


def record_tags(record: str) -> dict[str, str]:
    """A tag-value record's tags (RFC 6376 3.2, the syntax of DKIM key records), by lower-case
    name, values stripped; {} when it does not parse (the whole tag-list is then invalid;
    DMARC records are read more leniently: shared/sidechecks/dmarc_record.py `tags`)."""
    try:
        parsed = dkim.util.parse_tag_value(record.encode("ascii", "replace"))
    except dkim.util.InvalidTagValueList:
        return {}
    return {k.decode().lower(): v.decode("ascii", "replace").strip() for k, v in parsed.items()}


def _cut(text: str, size: int) -> str:
    return text[:size]


def bounded(f: Readiness) -> Readiness:
    """`f` within its bounds: what the controller keeps of any agent's facts (`f` itself when
    nothing was cut, as the ingester flags any other answer as a cut)."""
    spf = f.spf
    if spf is not None:
        spf = msgspec.structs.replace(
            spf,
            record=None if spf.record is None else _cut(spf.record, RECORD_MAX),
            void_names=[_cut(n, NAME_MAX) for n in spf.void_names[:NAMES_MAX]],
            mx_over=[_cut(n, NAME_MAX) for n in spf.mx_over[:NAMES_MAX]],
            all=_cut(spf.all, 8),
            everyone=[_cut(n, NAME_MAX) for n in spf.everyone[:NAMES_MAX]],
            loop=[_cut(n, NAME_MAX) for n in spf.loop[:NAMES_MAX]],
            macros=[_cut(n, NAME_MAX) for n in spf.macros[:NAMES_MAX]],
            nodes=[
                msgspec.structs.replace(
                    n,
                    domain=_cut(n.domain, NAME_MAX),
                    via=_cut(n.via, 8),
                    record=_cut(n.record, RECORD_MAX),
                )
                for n in spf.nodes[:NODES_MAX]
            ],
            broken=_cut(spf.broken, TEXT_MAX),
            error=_cut(spf.error, TEXT_MAX),
        )
    dmarc = f.dmarc
    if dmarc is not None:
        dmarc = Dmarc(
            walk=[
                DmarcLookup(
                    name=_cut(w.name, NAME_MAX),
                    records=None
                    if w.records is None
                    else [_cut(r, RECORD_MAX) for r in w.records[:2]],
                    error=_cut(w.error, TEXT_MAX),
                )
                for w in dmarc.walk[:WALK_MAX]
            ],
            reports=[
                msgspec.structs.replace(
                    r,
                    uri=_cut(r.uri, TEXT_MAX),
                    host=_cut(r.host, NAME_MAX),
                    error=_cut(r.error, TEXT_MAX),
                    why=_cut(r.why, TEXT_MAX),
                )
                for r in dmarc.reports[:REPORT_AUTH_MAX]
            ],
            reports_for=_cut(dmarc.reports_for, NAME_MAX),
            unchecked=min(max(dmarc.unchecked, 0), 1000),
        )
    out = Readiness(
        domain=_cut(f.domain, NAME_MAX),
        spf=spf,
        dmarc=dmarc,
        dkim=[
            msgspec.structs.replace(
                k,
                selector=_cut(k.selector, SELECTOR_MAX),
                record=None if k.record is None else _cut(k.record, RECORD_MAX * 2),
                key_type=_cut(k.key_type, 16),
                sha256=_cut(k.sha256, 64),
                error=_cut(k.error, TEXT_MAX),
            )
            for k in f.dkim[:SELECTORS_MAX]
        ],
        mx=None if f.mx is None else [_cut(n, NAME_MAX) for n in f.mx[:NAMES_MAX]],
        queries=min(max(f.queries, 0), QUERIES_MAX),
        error=_cut(f.error, TEXT_MAX),
        canaries=capped(f.canaries),
    )
    return f if out == f else out


WIRE: Final = SideCheckWire("readiness", ReadinessAsk, Readiness)
