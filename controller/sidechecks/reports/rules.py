"""What reports say of a domain, as posture findings; pure.

A domain's counts over the organization's window (`ReportSettings.window_days`), as the store
sums them (`Window`: totals, the largest failures, the failing networks; `window` is the
reference of that sum), become, for each monitor naming the domain as its `mailDomain`,
verdicts on three findings (country ""):

- `tls_failures_reported`: senders failed TLS to the domain's MX at least `tls_failures_min`
  times (RFC 8460 result types: certificate-expired, starttls-not-supported, ...);
- `dmarc_failures_reported`: a known source (a network that also passed DMARC in the window,
  or one overlapping the organization's `known_networks`) failed alignment at least
  `dmarc_failures_min` times: a sender of yours is misconfigured;
- `dmarc_unknown_source`: networks that never passed sent at least `dmarc_unknown_min`
  failing messages in the domain's name: a forgotten service, or someone forging it.

A domain's finding is one fact of the customer's domain, shown on the monitors it concerns
(`shown_on`): DMARC is about mail sent in the domain's name, so it concerns the domain's SMTP
monitors and round trips (which send through SMTP), never its IMAP or POP3 monitors; TLS-RPT is
about sessions to the domain's MX, so it concerns those of them at an MX the failures name (a
round trip by its send leg), or all of them when no monitor watches one. Its notice is one per
recipient (controller/reports/intake.py).

Each finding carries the items it was raised for (`Verdict.items`): a notice goes out when it
appears and again only when an item is new, so a report a day saying the same is one notice.
Where the monitor's agents found the same thing themselves (a TLS-RPT `certificate-expired`
and an open `certificate_expired`), the finding says both.
"""

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

from controller.sidechecks import findings
from controller.sidechecks.findings import INBOUND, SENDING, Finding, Key, declare, domain_facts
from shared.guards import BrokenInvariant

TLS_FAILURES = "tls_failures_reported"
DMARC_FAILURES = "dmarc_failures_reported"
DMARC_UNKNOWN = "dmarc_unknown_source"
# Raised from received reports (controller/reports/intake.py), never from a round's results:
# the rounds' rules neither hold nor clear them.
CODES: Final = declare(
    {
        "tls_failures_reported": (
            "warning",
            "Senders report failed TLS sessions to the domain's MX (TLS-RPT): mail from them is "
            "delayed, or sent without TLS. Fix the result type named at the MX and IP named "
            "(renew the certificate, offer STARTTLS, publish a valid MTA-STS policy or TLSA "
            "record).",
        ),
        "dmarc_failures_reported": (
            "warning",
            "Receivers report that mail in the domain's name from a network that also sends it "
            "correctly failed DMARC alignment: a sender of yours is misconfigured. Add it to SPF, "
            "or sign its mail with DKIM for the domain.",
        ),
        "dmarc_unknown_source": (
            "warning",
            "Receivers report mail in the domain's name from networks that never pass DMARC: a "
            "service you forgot to authorize, or someone forging the domain. Authorize the "
            "service (SPF, DKIM), or list the network as known; keep p=quarantine or p=reject for "
            "forgers.",
        ),
    },
)
if not (tuple(CODES) == (TLS_FAILURES, DMARC_FAILURES, DMARC_UNKNOWN)):
    raise BrokenInvariant(
        "rules.module: expected tuple(CODES) == (TLS_FAILURES, DMARC_FAILURES, DMARC_UNKNOWN)"
    )
# Facts of the domain: TLS-RPT counts sessions to its MX over SMTP, DMARC judges mail sent in
# its name (the monitors each concerns: controller.sidechecks.findings `concerns`).
domain_facts({TLS_FAILURES: INBOUND, DMARC_FAILURES: SENDING, DMARC_UNKNOWN: SENDING})
SHOWN = 5  # items named in a finding's detail, largest first
FRESH = 1000  # a new report's items that may be news, its largest

# An RFC 8460 result type → the agents' own finding saying the same of a server.
AGREES = {
    "certificate-expired": ("certificate_expired",),
    "certificate-host-mismatch": ("name_mismatch",),
    "certificate-not-trusted": ("chain_not_verified",),
    "validation-failure": ("chain_not_verified", "name_mismatch"),
    "starttls-not-supported": ("starttls_stripped",),
    "sts-policy-fetch-error": ("mta_sts_invalid",),
    "sts-policy-invalid": ("mta_sts_invalid",),
    "sts-webpki-invalid": ("mta_sts_mismatch",),
    "tlsa-invalid": ("tlsa_mismatch",),
    "dane-required": ("tlsa_mismatch",),
}


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """An organization's thresholds (`PUT /api/report-settings`)."""

    window_days: int = 7
    tls_failures_min: int = 5
    dmarc_failures_min: int = 10
    dmarc_unknown_min: int = 10
    known_networks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Count:
    """A count of a report row: per kind, reporter, result, MX and IP (a window's rows summed
    alike by `window`, the reference of what the store sums in SQL)."""

    kind: str
    reporter: str
    result: str
    mx: str
    ip: str
    count: int
    day: date | None = None  # the report's first day


@dataclass(frozen=True, slots=True)
class Failure:
    """TLS sessions that failed alike (result, MX and IP) over the window, and who said so."""

    result: str
    mx: str
    ip: str
    count: int
    reporters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NetCount:
    """A DMARC source network's messages over the window: aligned and passing, and not."""

    net: str
    passed: int
    failed: int


@dataclass(frozen=True, slots=True)
class Window:
    """What the rules read of a domain's counts over the window, whatever their number:
    TLS sessions and failures summed, the largest `SHOWN` failures and how many there are,
    and each DMARC source network that failed."""

    sessions: int = 0
    failed: int = 0
    largest: tuple[Failure, ...] = ()
    failures: int = 0  # failing rows as stored: distinct per day, reporter, result, MX and IP
    networks: tuple[NetCount, ...] = ()  # those that passed, and the failing ones, by network
    dmarc_failed: int = 0  # DMARC messages that failed, from every network


@dataclass(frozen=True, slots=True)
class Fresh:
    """The items a new report's TLS failures name (`result|mx`): a new one is news, whether or
    not it is among the window's largest."""

    tls: frozenset[str] = frozenset()


def item(result: str, mx: str) -> str:
    """A TLS failure's item, as told: its result and MX."""
    return f"{result}|{mx}"


def fresh(rows: Iterable[Count]) -> Fresh:
    """The items of a report's rows: its `FRESH` largest failures' (a report of 100,000
    failures is told by its largest; the rest are in the finding's detail and totals)."""
    by: dict[str, int] = defaultdict(int)
    for c in rows:
        if c.kind == "tls" and c.result != "success":
            by[item(c.result, c.mx)] += c.count
    largest = sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))[:FRESH]
    return Fresh(frozenset(k for k, _ in largest))


def window(counts: Iterable[Count]) -> Window:
    """The window of `counts` (the reference of the store's `window`, which sums in SQL; it
    reads the largest among each day's `store.LARGEST_PER_DAY` largest rows, which is this
    while no day holds more)."""
    sessions = failed = 0
    stored: set[tuple[date | None, str, str, str, str]] = set()
    by_item: dict[tuple[str, str, str], int] = defaultdict(int)
    reporters: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    nets: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    counts = list(counts)
    for c in counts:
        if c.kind == "tls":
            sessions += c.count
            if c.result != "success":
                failed += c.count
                by_item[(c.result, c.mx, c.ip)] += c.count
                reporters[(c.result, c.mx, c.ip)].add(c.reporter)
                stored.add((c.day, c.reporter, c.result, c.mx, c.ip))
        elif c.ip:
            nets[network(c.ip)][0 if c.result == "pass" else 1] += c.count
    largest = sorted(by_item.items(), key=lambda kv: (-kv[1], kv[0]))[:SHOWN]
    dmarc_failed = sum(c.count for c in counts if c.kind == "dmarc" and c.result != "pass")
    return Window(
        sessions,
        failed,
        tuple(
            Failure(r, mx, ip, n, tuple(sorted(reporters[(r, mx, ip)])))
            for (r, mx, ip), n in largest
        ),
        len(stored),
        tuple(NetCount(net, p, f) for net, (p, f) in sorted(nets.items())),
        dmarc_failed,
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    finding: Finding
    items: tuple[str, ...]  # what it was raised for and may be news, sorted


Verdicts = dict[str, Verdict | None]


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address, an IPv4-mapped IPv6 one (`::ffff:192.0.2.1`) as the IPv4 address it is."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def network(ip: str) -> str:
    """The network a source address is counted in: its /24 (IPv4, also mapped) or /56 (IPv6)."""
    address = _address(ip)
    prefix = 24 if address.version == 4 else 56
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _listed(net: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether the source network `net` overlaps one of `networks`."""
    n = ipaddress.ip_network(net)
    return any(n.version == k.version and n.overlaps(k) for k in networks)


def _host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def concerns(code: str, monitor_type: str) -> bool:
    """Whether the report finding `code` is shown on a monitor of `monitor_type` (the rule of
    every domain fact, `findings.concerns`)."""
    return code in CODES and findings.concerns(code, monitor_type)


def shown_on(code: str, monitors: Sequence[tuple[int, str, str]], seen: Window) -> frozenset[int]:
    """The monitors, of `monitors` (id, type, host: a round trip's is its send leg's), a report
    finding of their domain is shown on: those of the types it concerns (`concerns`); for TLS
    failures, of those, the ones whose host is an MX the window's largest failures name, or all
    of them when none is (the failures name an MX no monitor watches, or none)."""
    typed = [(i, host) for i, kind, host in monitors if concerns(code, kind)]
    if code != TLS_FAILURES:
        return frozenset(i for i, _ in typed)
    named = {_host(f.mx) for f in seen.largest if f.mx}
    at_mx = frozenset(i for i, host in typed if _host(host) in named)
    return at_mx or frozenset(i for i, _ in typed)


def judge(
    seen: Window,
    settings: ReportSettings,
    hostname: str,
    own: Mapping[Key, Finding],
    new: Fresh | None = None,
) -> Verdicts:
    """The verdicts on every report code for one monitor (`hostname`, its open findings
    `own`) from the window `seen`: None where it raises nothing. A verdict's items are those it
    was raised for: the largest TLS failures' and those of the new report `new`, every failing
    DMARC network."""
    verdicts: Verdicts = {TLS_FAILURES: _tls(seen, settings, hostname, own, new)}
    verdicts |= _dmarc(seen, settings)
    return verdicts


def _tls(
    seen: Window,
    settings: ReportSettings,
    hostname: str,
    own: Mapping[Key, Finding],
    new: Fresh | None,
) -> Verdict | None:
    if seen.failed < settings.tls_failures_min:
        return None
    parts = []
    for f in seen.largest[:SHOWN]:
        where = f" to {f.mx or 'an MX not named'}" + (f" ({f.ip})" if f.ip else "")
        parts.append(f"{f.result}: {f.count}{where}, reported by {', '.join(f.reporters)}")
    # More than those shown: failing rows as stored (per day and reporter) beyond theirs.
    covered = sum(len(f.reporters) for f in seen.largest[:SHOWN])
    more = f"; and more ({seen.failures:,} failure rows in all)" if seen.failures > covered else ""
    detail = f"{seen.failed} of {seen.sessions} TLS sessions failed: " + "; ".join(parts) + more
    agreed = _agreement(seen.largest, hostname, own)
    if agreed:
        detail += f". This monitor's agents saw it too: {agreed}"
    items = {item(f.result, f.mx) for f in seen.largest} | (new.tls if new else frozenset())
    return Verdict(Finding(TLS_FAILURES, "", detail), tuple(sorted(items)))


def _agreement(largest: Sequence[Failure], hostname: str, own: Mapping[Key, Finding]) -> str:
    """The monitor's own open findings that say what the largest failures about its host say."""
    said: dict[str, list[str]] = {}
    host = _host(hostname)
    for f in largest:
        if f.mx and _host(f.mx) != host:
            continue
        for code in AGREES.get(f.result, ()):
            countries = sorted(cc for (c, cc) in own if c == code)
            if countries and code not in said:
                said[code] = countries
    return "; ".join(f"{code} ({_seen(countries)})" for code, countries in said.items())


def _seen(countries: list[str]) -> str:
    named = [cc for cc in countries if cc]
    return f"seen from {', '.join(named)}" if named else "for the domain"


def _dmarc(seen: Window, settings: ReportSettings) -> Verdicts:
    known_nets = [ipaddress.ip_network(n, strict=False) for n in settings.known_networks]
    networks = seen.networks
    passed = {n.net: n.passed for n in networks}
    known = {n.net for n in networks if n.passed or _listed(n.net, known_nets)}
    verdicts: Verdicts = {}
    failing = {
        n.net: n.failed
        for n in networks
        if n.net in known and n.failed >= settings.dmarc_failures_min
    }
    verdicts[DMARC_FAILURES] = _networks(DMARC_FAILURES, failing, passed, "failed DMARC alignment")
    unknown = {n.net: n.failed for n in networks if n.net not in known and n.failed}
    # Every message that failed but those of known networks: the unknown networks' whole share,
    # whether or not each is among the networks read.
    total = seen.dmarc_failed - sum(n.failed for n in networks if n.net in known)
    if unknown and total >= settings.dmarc_unknown_min:
        verdicts[DMARC_UNKNOWN] = _networks(
            DMARC_UNKNOWN,
            unknown,
            passed,
            "sent in the domain's name and never passed DMARC",
            total,
        )
    else:
        verdicts[DMARC_UNKNOWN] = None
    return verdicts


def _networks(
    code: str,
    failing: Mapping[str, int],
    passed: Mapping[str, int],
    what: str,
    total: int | None = None,
) -> Verdict | None:
    if not failing:
        return None
    largest = sorted(failing.items(), key=lambda kv: (-kv[1], kv[0]))
    parts = []
    for net, n in largest[:SHOWN]:
        share = f" ({passed[net]} passed)" if passed.get(net) else ""
        parts.append(f"{net}: {n} messages{share}")
    more = f"; and {len(largest) - SHOWN} more networks" if len(largest) > SHOWN else ""
    total = sum(failing.values()) if total is None else total
    detail = f"{total} messages from {len(largest)} networks {what}: " + "; ".join(parts) + more
    return Verdict(Finding(code, "", detail), tuple(sorted(failing)))


def told(verdict: Verdict, before: Sequence[str] | None) -> bool:
    """Whether `verdict` is news: it appears (`before` None) or names an item not told yet."""
    return before is None or not set(verdict.items) <= set(before)
