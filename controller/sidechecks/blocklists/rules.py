"""Blocklist rules, pure: the lists, what each answer means, a list's health per country, and
when a listing is a finding.

Sources, read before encoding anything here:

- RFC 5782 (DNS Blacklists and Whitelists): an IP list is asked `<reversed octets>.<zone>`
  (section 2.1; IPv6: reversed nibbles, section 2.4), a domain list `<domain>.<zone>` (section
  2.2); a listing is an A record in 127.0.0.0/8 (section 2.3), NXDOMAIN is "not listed".
  Section 5: every IPv4 list MUST list 127.0.0.2 and MUST NOT list 127.0.0.1 (IPv6:
  ::FFFF:7F00:2 and ::FFFF:7F00:1), every domain list MUST list `TEST` and MUST NOT list
  `INVALID`: the test entries `health` reads.
- Spamhaus's zone table ("Available Zones", docs.spamhaus.com, datasets/040-zones): ZEN
  127.0.0.2 SBL, .3 CSS, .4 XBL, .9 DROP, .10 PBL (ISP), .11 PBL (Spamhaus), .30 BCL; DBL
  127.0.1.2 low reputation, .4 phishing, .5 malware, .6 botnet C&C, .102-.106 abused
  legitimate domains, and 127.0.1.255 "IP queries not allowed"; the page's last two codes
  belong to invalid DQS keys (127.255.255.250 and .251 in Spamhaus's own integrations).
- Spamhaus's error range 127.255.255.0/24 ("Spamhaus DNSBL return codes: technical update",
  spamhaus.org news 788, 2019, and "Help for legacy blocklist users"): .252 a typing error in
  the zone name, .254 a query through a public/open resolver (or generic rDNS), .255 an
  excessive number of queries. Spamhaus: these "must not be interpreted as" listings.

A list that lists everything (its 127.0.0.1 test entry listed: check_rbl's dead list), says
nothing (its 127.0.0.2 entry not listed), or answers its error codes is `unhealthy` in that
country, and its answers there are not findings. SORBS (shut down June 2024) and
ix.dnsbl.manitu.net (gone) are not in the default set.
"""

import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final, Literal

from shared.sidechecks.blocklists import BlocklistAsk, BlocklistZone

Kind = Literal["ip", "domain"]
Meaning = Literal["listed", "error", "refused_resolver", "over_quota"]
State = Literal["listed", "clean", "error", "unknown"]
Health = Literal["healthy", "unhealthy", "unknown"]

LOOPBACK: Final = ipaddress.ip_network("127.0.0.0/8")


@dataclass(frozen=True, slots=True)
class Code:
    meaning: Meaning
    text: str


@dataclass(frozen=True, slots=True)
class BlockList:
    """One list: its public `zone`, `kind`, a `label` people know it by, whether it is a
    `major` list (a listing there stops mail at many receivers: `critical`, else `warning`),
    its delisting page (`{name}` is the listed name), its documented return codes (`codes`,
    exact A records); `documented_only`: only those codes are listings (any other 127/8 code
    is `unknown`), else any 127/8 code but 127.0.0.1 is; its RFC 5782 test entries; `dqs`:
    asked through a Spamhaus DQS key where an agent holds one."""

    zone: str
    kind: Kind
    label: str
    major: bool = False
    delist: str = ""
    codes: Mapping[str, Code] = field(default_factory=dict)
    documented_only: bool = False
    test_listed: str = ""
    test_clean: str = ""
    dqs: bool = False

    def __post_init__(self) -> None:
        if not self.test_listed:
            object.__setattr__(self, "test_listed", "127.0.0.2" if self.kind == "ip" else "test")
        if not self.test_clean:
            object.__setattr__(self, "test_clean", "127.0.0.1" if self.kind == "ip" else "invalid")

    @property
    def tests(self) -> tuple[str, str]:
        return (self.test_listed, self.test_clean)

    def delisting(self, name: str) -> str:
        return self.delist.replace("{name}", name)


# Spamhaus's errors, for every Spamhaus zone (news 788; zones table for the DQS keys).
SPAMHAUS_ERRORS: Final[Mapping[str, Code]] = {
    "127.255.255.250": Code("error", "Spamhaus did not accept the DQS key (disabled)"),
    "127.255.255.251": Code("error", "Spamhaus did not accept the DQS key (rejected)"),
    "127.255.255.252": Code("error", "typing error in the zone name: no such Spamhaus zone"),
    "127.255.255.254": Code(
        "refused_resolver",
        "query through a public or open resolver (or one with generic rDNS): Spamhaus gives"
        " it no data; ask through your own resolver or a DQS key",
    ),
    "127.255.255.255": Code("over_quota", "excessive number of queries from this resolver"),
}
ZEN_CODES: Final[Mapping[str, Code]] = {
    "127.0.0.2": Code("listed", "SBL: Spamhaus Blocklist"),
    "127.0.0.3": Code("listed", "CSS: Spamhaus snowshoe/automated listing"),
    "127.0.0.4": Code("listed", "XBL: exploited or infected host"),
    "127.0.0.9": Code("listed", "DROP: hijacked or criminal network"),
    "127.0.0.10": Code("listed", "PBL: end-user range, maintained by its ISP"),
    "127.0.0.11": Code("listed", "PBL: end-user range, maintained by Spamhaus"),
    "127.0.0.30": Code("listed", "BCL: botnet controller"),
    **SPAMHAUS_ERRORS,
}
DBL_CODES: Final[Mapping[str, Code]] = {
    "127.0.1.2": Code("listed", "DBL: low-reputation domain"),
    "127.0.1.4": Code("listed", "DBL: phishing domain"),
    "127.0.1.5": Code("listed", "DBL: malware domain"),
    "127.0.1.6": Code("listed", "DBL: botnet C&C domain"),
    "127.0.1.102": Code("listed", "DBL: abused legitimate domain"),
    "127.0.1.103": Code("listed", "DBL: abused redirector"),
    "127.0.1.104": Code("listed", "DBL: abused legitimate domain used in phishing"),
    "127.0.1.105": Code("listed", "DBL: abused legitimate domain used by malware"),
    "127.0.1.106": Code("listed", "DBL: abused legitimate domain hosting C&C"),
    "127.0.1.255": Code("error", "DBL answers an IP query with an error: IP queries not allowed"),
    **SPAMHAUS_ERRORS,
}
SPAMHAUS_CHECK = "https://check.spamhaus.org/"

# The default set: current lists only (no SORBS, no ix.dnsbl.manitu.net). The operator's
# `BLOCKLISTS` replaces it (`parse_lists`).
KNOWN: Final[Mapping[str, BlockList]] = {
    b.zone: b
    for b in (
        BlockList(
            "zen.spamhaus.org",
            "ip",
            "Spamhaus ZEN",
            major=True,
            delist=SPAMHAUS_CHECK,
            codes=ZEN_CODES,
            documented_only=True,
            dqs=True,
        ),
        BlockList(
            "dbl.spamhaus.org",
            "domain",
            "Spamhaus DBL",
            major=True,
            delist=SPAMHAUS_CHECK,
            codes=DBL_CODES,
            documented_only=True,
            test_listed="dbltest.com",  # Spamhaus's own DBL test entry
            dqs=True,
        ),
        BlockList(
            "b.barracudacentral.org",
            "ip",
            "Barracuda BRBL",
            major=True,
            delist="https://www.barracudacentral.org/rbl/removal-request",
        ),
        BlockList(
            "bl.spamcop.net", "ip", "SpamCop", delist="https://www.spamcop.net/bl.shtml?{name}"
        ),
        BlockList("psbl.surriel.com", "ip", "PSBL", delist="https://psbl.org/listing?ip={name}"),
        BlockList(
            "bl.mailspike.net", "ip", "Mailspike", delist="https://mailspike.org/iplookup.html"
        ),
    )
}
DEFAULT_LISTS: Final = tuple(KNOWN.values())


def spamhaus(zone: str, kind: Kind, major: bool) -> BlockList:
    """Another Spamhaus zone (SBL, XBL, PBL, ZRD...): Spamhaus's codes of its kind (ZEN's for
    an IP zone, DBL's for a domain zone, with their errors, which hold for every Spamhaus zone),
    only those read as listings, asked through a DQS key where an agent holds one."""
    ip = kind == "ip"
    return BlockList(
        zone,
        kind,
        zone,
        major=major,
        delist=SPAMHAUS_CHECK,
        codes=ZEN_CODES if ip else DBL_CODES,
        documented_only=True,
        test_listed="" if ip else "dbltest.com",
        dqs=True,
    )


# Lists people still configure that are gone: refused by `parse_lists`, naming why.
GONE: Final[Mapping[str, str]] = {
    "sorbs.net": "SORBS shut down in June 2024",
    "ix.dnsbl.manitu.net": "ix.dnsbl.manitu.net (NiX Spam) is gone",
}


def parse_lists(text: str) -> tuple[BlockList, ...]:
    """The operator's `BLOCKLISTS`: "" for the default set, else comma-separated zones, a known
    one by its zone alone, another as `zone:ip` or `zone:domain`, `:major` to make its
    listings critical. ValueError naming the entry that is wrong."""
    if not text.strip():
        return DEFAULT_LISTS
    out: list[BlockList] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        zone, *opts = (p.strip().lower() for p in entry.split(":"))
        zone = zone.rstrip(".")
        for gone, why in GONE.items():
            if zone == gone or zone.endswith(f".{gone}"):
                raise ValueError(f"{entry}: {why}")
        if not zone or "." not in zone or any(not label for label in zone.split(".")):
            raise ValueError(f"{entry}: not a zone name")
        if zone in KNOWN and not opts:
            out.append(KNOWN[zone])
            continue
        kinds = [o for o in opts if o in ("ip", "domain")]
        rest = [o for o in opts if o not in ("ip", "domain", "major")]
        if len(kinds) != 1 or rest:
            raise ValueError(f"{entry}: say zone:ip or zone:domain (and :major)")
        known = KNOWN.get(zone)
        kind: Kind = "ip" if kinds[0] == "ip" else "domain"
        if known is not None:
            out.append(replace(known, major="major" in opts or known.major))
        elif zone.endswith(".spamhaus.org"):
            out.append(spamhaus(zone, kind, major="major" in opts))
        else:
            out.append(BlockList(zone, kind, zone, major="major" in opts))
    if len({b.zone for b in out}) != len(out):
        raise ValueError("a zone is named twice")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one answer says: `listed` (with the codes and what they mean), `clean`, `error`
    (the list answered one of its error codes: no data), or `unknown` (no usable answer)."""

    state: State
    reason: str = ""
    codes: tuple[str, ...] = ()


def read(bl: BlockList, a: list[str] | None, error: str = "") -> Verdict:
    """One list's answer about one name (A records as served; None: the lookup failed)."""
    if a is None:
        return Verdict("unknown", error or "no answer")
    if not a:
        return Verdict("clean")
    codes = tuple(sorted(set(a), key=_sort_key))
    parsed = []
    for code in codes:
        try:
            parsed.append(ipaddress.ip_address(code))
        except ValueError:
            return Verdict("unknown", f"{code[:40]!r} is no address", codes)
    outside = [str(p) for p in parsed if p.version != 4 or p not in LOOPBACK]
    if outside:
        # A wildcard or hijacking resolver answers real addresses: no DNSBL answer at all.
        why = f"answered {', '.join(outside[:3])}, outside 127.0.0.0/8: not a blocklist answer"
        return Verdict("unknown", why, codes)
    meant = [bl.codes.get(c) for c in codes]
    errors = [m for m in meant if m is not None and m.meaning != "listed"]
    if errors:
        return Verdict("error", "; ".join(dict.fromkeys(m.text for m in errors)), codes)
    listed = [m.text for m in meant if m is not None]
    undocumented = [c for c, m in zip(codes, meant, strict=True) if m is None]
    if bl.documented_only and undocumented:
        if listed:
            return Verdict("listed", "; ".join(listed), codes)
        return Verdict("unknown", f"undocumented code {', '.join(undocumented)}", codes)
    if not bl.documented_only and "127.0.0.1" in undocumented:
        # RFC 5782 keeps 127.0.0.1 as the never-listed test entry; lists that answer it
        # (SURBL, URIBL) mean a refused query.
        return Verdict("error", "answered 127.0.0.1: a refused query, not a listing", codes)
    return Verdict("listed", "; ".join(listed + undocumented), codes)


def _sort_key(code: str) -> tuple[int, str]:
    return (len(code), code)


@dataclass(frozen=True, slots=True)
class ListHealth:
    state: Health
    reason: str = ""


def health(bl: BlockList, listed_test: Verdict | None, clean_test: Verdict | None) -> ListHealth:
    """A list's health in one country from its RFC 5782 test entries' answers there (None:
    not asked yet)."""
    if listed_test is None or clean_test is None:
        return ListHealth("unknown", "its test entries were not asked yet")
    for test, v in ((bl.test_listed, listed_test), (bl.test_clean, clean_test)):
        if v.state == "error":
            return ListHealth("unhealthy", f"answers error codes ({test}: {v.reason})")
    for test, v in ((bl.test_listed, listed_test), (bl.test_clean, clean_test)):
        if v.state == "unknown":
            return ListHealth("unknown", f"no usable answer for {test}: {v.reason}")
    if clean_test.state == "listed":
        return ListHealth(
            "unhealthy", f"lists everything: its never-listed test entry {bl.test_clean} is listed"
        )
    if listed_test.state == "clean":
        return ListHealth(
            "unhealthy", f"says nothing: its test entry {bl.test_listed} is not listed"
        )
    return ListHealth("healthy")


# The names that are some list's RFC 5782 test entries: the defaults and the known lists' own.
TEST_NAMES: Final = frozenset(
    {"127.0.0.2", "127.0.0.1", "test", "invalid"} | {t for b in KNOWN.values() for t in b.tests}
)
NOT_VOUCHED: Final = "its test entries were not answered beside this answer"


def vouch(bl: BlockList, tests: Mapping[str, list[str]] | None) -> ListHealth:
    """The list's health when it gave one answer, from its test entries' answers of the same
    round (`tests`: name → A records; None or a test entry missing: not vouched, `unknown`).
    An answer is believed only when its own round's test entries were right: a list that died
    since its test entries were last asked lists everything or nothing on its own word."""
    listed, clean = (None if tests is None else tests.get(t) for t in bl.tests)
    if listed is None or clean is None:
        return ListHealth("unknown", NOT_VOUCHED)
    return health(bl, read(bl, listed), read(bl, clean))


def severity(bl: BlockList) -> str:
    return "critical" if bl.major else "warning"


@dataclass(frozen=True, slots=True)
class Listing:
    """One name on one list, as a monitor sees it: `since` it was first seen listed (from any
    country), the `countries` that see it now, whether it was `raised` (held `hold` long)."""

    zone: str
    name: str
    since: datetime
    countries: frozenset[str]
    raised: bool = False
    reason: str = ""


Change = Literal["raised", "cleared", "moved"]


def hold_step(
    current: Listing | None,
    zone: str,
    name: str,
    listed_in: Mapping[str, str],
    clean_in: Iterable[str],
    at: datetime,
    hold: timedelta,
    quiet: Iterable[str] = (),
) -> tuple[Listing | None, Change | None]:
    """Move one (list, name) at `at`: `listed_in` the countries whose healthy list says listed
    (with why), `clean_in` those whose healthy list says not listed; `quiet` those that met the
    name but whose list said nothing usable this time (unhealthy there, no answer). A country
    in none of them judges nothing; a quiet one keeps its place among the countries that see
    the listing while another still sees it listed, so a resolver's bad minute is no change
    (nor does it hold off a clear). A listing is `raised` once it has held
    `hold` and `cleared` when no country sees it any more and one sees it clean; one that ends
    before `hold` is never told. `moved`: the countries that see a raised listing changed (it is
    seen from another country now, or one sees it clean while others still see it listed), a
    change told once like the others; the same countries again are no change."""
    clean = set(clean_in)
    if listed_in:
        kept = (current.countries & set(quiet)) - clean if current is not None else frozenset()
        countries = frozenset(listed_in) | kept
        reason = "; ".join(dict.fromkeys(listed_in[cc] for cc in sorted(listed_in)))
        if current is None:
            current = Listing(zone, name, at, countries, reason=reason)
        moved = current.raised and countries != current.countries
        current = replace(current, countries=countries, reason=reason)
        if not current.raised and at - current.since >= hold:
            return replace(current, raised=True), "raised"
        return current, "moved" if moved else None
    if current is not None and clean:
        return None, "cleared" if current.raised else None
    return current, None


def lists_setting(text: str) -> tuple[BlockList, ...]:
    """`BLOCKLISTS`: "" off (no list), `default` the default set, else `parse_lists`."""
    if not text.strip():
        return ()
    if text.strip().lower() == "default":
        return DEFAULT_LISTS
    return parse_lists(text)


@dataclass(frozen=True, slots=True)
class Fresh:
    """What the lists answered in one country within the interval: per list (its zone), the
    names it answered beside its test entries (`on`), which it is not asked about again
    whatever another list does; and the lists that are dead there (`dead`: a lookup failed
    after their last answer), not asked again until that failure is older than the interval,
    so a list that never answers costs one round's lookups per interval."""

    on: Mapping[str, Collection[str]] = field(default_factory=dict)
    dead: frozenset[str] = frozenset()


def ask(
    lists: Iterable[BlockList],
    mail_domain: str | None,
    fresh: Fresh,
    listed: Mapping[str, Iterable[str]] | None = None,
    known: Collection[str] = (),
) -> BlocklistAsk:
    """What a round asks from one country: the monitored host's addresses, the MX hosts' of
    `mail_domain` and the domain itself, the outbound addresses and domains the user `listed`
    (a monitor's `reputation`: `ips`, `domains`), and every list's RFC 5782 test entries (its
    health there), of every list not dead there. A name is asked only where a list of its
    kind is, and not of a list that answered it within the interval (`fresh`). Each list's
    `skip` names only the fresh names this round may meet: its own and those its monitor's last
    round there found (`known`: its host's and MX hosts' addresses), so a job stays small
    however many names are fresh; the ask's `skip`, for agents that read no list's, those fresh
    on every list of their kind."""
    chosen = tuple(b for b in lists if b.zone not in fresh.dead)
    kinds = {b.kind for b in chosen}
    ips = [t for b in chosen if b.kind == "ip" for t in b.tests]
    domains = [t for b in chosen if b.kind == "domain" for t in b.tests]
    if "ip" in kinds and listed:
        ips += listed.get("ips", ())
    if "domain" in kinds:
        if mail_domain:
            domains.append(mail_domain.lower())
        if listed:
            domains += listed.get("domains", ())
    ips, domains = list(dict.fromkeys(ips)), list(dict.fromkeys(domains))
    met = {*ips, *domains, *known}
    skips = {b.zone: sorted(n for n in met if n in fresh.on.get(b.zone, ())) for b in chosen}
    everywhere = [
        n
        for n in sorted(met)
        if (of := [b for b in chosen if b.kind == _kind(n)]) and all(n in skips[b.zone] for b in of)
    ]
    return BlocklistAsk(
        zones=[
            BlocklistZone(
                zone=b.zone, kind=b.kind, dqs=b.dqs, tests=list(b.tests), skip=skips[b.zone]
            )
            for b in chosen
        ],
        host=True,
        mx_domain=mail_domain or None,
        ips=ips,
        domains=domains,
        skip=everywhere,
    )


def _kind(name: str) -> Kind:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return "domain"
    return "ip"


# A check-now or a monitor's first round asks the lists only when its monitor's last asking
# round in that country is older than this (or the interval, when shorter).
TRIGGER_FLOOR: Final = timedelta(minutes=5)


def trigger_lists(scheduled_at: datetime, last: datetime | None, every_s: int) -> bool:
    """Whether a triggered round (a check-now, a confirmation) or a monitor's first round in a
    country also asks the lists there: when no round of its monitor did within
    `TRIGGER_FLOOR` (or `every_s`, when shorter), so a first answer comes in seconds and
    checking again and again asks nothing again. What it asks skips the names answered within
    the interval, as every round does."""
    floor = min(TRIGGER_FLOOR, timedelta(seconds=every_s))
    return last is None or scheduled_at - last >= floor


# What the operator sets for a list that is unhealthy or unknown (docs/operating.md).
LIST_FIX: Final = (
    "point AGENT_BLOCKLIST_RESOLVER of that country's agents at a resolver of your own (not a"
    " public one), or take the list out of BLOCKLISTS"
)
SPAMHAUS_FIX: Final = (
    "give that country's agents a Spamhaus DQS key (AGENT_SPAMHAUS_DQS_KEY), or point"
    " AGENT_BLOCKLIST_RESOLVER at a resolver of your own that Spamhaus answers"
)


def oracle_fix(oracle: str) -> str | None:
    """What the operator sets when the list `oracle` (its zone) is unhealthy or unknown; None
    for an oracle that is no list's (a list's oracle is its zone, a DNS name with a dot)."""
    if "." not in oracle.strip("."):
        return None
    return SPAMHAUS_FIX if oracle.endswith("spamhaus.org") else LIST_FIX
