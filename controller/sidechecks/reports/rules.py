"""What reports say of a domain, as posture findings; pure.

A domain's counts over the organization's window (`ReportSettings.window_days`) become, for
each monitor naming the domain as its `mailDomain`, verdicts on three findings (country ""):

- `tls_failures_reported`: senders failed TLS to the domain's MX at least `tls_failures_min`
  times (RFC 8460 result types: certificate-expired, starttls-not-supported, ...);
- `dmarc_failures_reported`: a known source (a network that also passed DMARC in the window,
  or one of the organization's `known_networks`) failed alignment at least
  `dmarc_failures_min` times: a sender of yours is misconfigured;
- `dmarc_unknown_source`: networks that never passed sent at least `dmarc_unknown_min`
  failing messages in the domain's name: a forgotten service, or someone forging it.

Each finding carries the items it was raised for (`Verdict.items`): a notice goes out when it
appears and again only when an item is new, so a report a day saying the same is one notice.
Where the monitor's agents found the same thing themselves (a TLS-RPT `certificate-expired`
and an open `certificate_expired`), the finding says both.
"""

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from controller.sidechecks.findings import Finding, Key, declare

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
    }
)
assert tuple(CODES) == (TLS_FAILURES, DMARC_FAILURES, DMARC_UNKNOWN)
SHOWN = 5  # items named in a finding's detail, largest first

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
    """A domain's counts over the window, summed per kind, reporter, result, MX and IP."""

    kind: str
    reporter: str
    result: str
    mx: str
    ip: str
    count: int


@dataclass(frozen=True, slots=True)
class Verdict:
    finding: Finding
    items: tuple[str, ...]  # what it was raised for, sorted


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


def _in(ip: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    address = _address(ip)
    return any(address.version == n.version and address in n for n in networks)


def _host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def judge(
    counts: Iterable[Count], settings: ReportSettings, hostname: str, own: Mapping[Key, Finding]
) -> Verdicts:
    """The verdicts on every report code for one monitor (`hostname`, its open findings
    `own`): None where the window's counts raise nothing (no report of that kind included)."""
    counts = list(counts)
    verdicts: Verdicts = {
        TLS_FAILURES: _tls([c for c in counts if c.kind == "tls"], settings, hostname, own)
    }
    verdicts |= _dmarc([c for c in counts if c.kind == "dmarc" and c.ip], settings)
    return verdicts


def _tls(
    counts: list[Count], settings: ReportSettings, hostname: str, own: Mapping[Key, Finding]
) -> Verdict | None:
    failed = [c for c in counts if c.result != "success"]
    total = sum(c.count for c in failed)
    if total < settings.tls_failures_min:
        return None
    by_item: dict[tuple[str, str, str], int] = defaultdict(int)
    reporters: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for c in failed:
        key = (c.result, c.mx, c.ip)
        by_item[key] += c.count
        reporters[key].add(c.reporter)
    sessions = sum(c.count for c in counts)
    largest = sorted(by_item.items(), key=lambda kv: (-kv[1], kv[0]))
    parts = []
    for (result, mx, ip), n in largest[:SHOWN]:
        where = f" to {mx or 'an MX not named'}" + (f" ({ip})" if ip else "")
        parts.append(
            f"{result}: {n}{where}, reported by {', '.join(sorted(reporters[(result, mx, ip)]))}"
        )
    more = f"; and {len(largest) - SHOWN} more" if len(largest) > SHOWN else ""
    detail = f"{total} of {sessions} TLS sessions failed: " + "; ".join(parts) + more
    agreed = _agreement(largest, hostname, own)
    if agreed:
        detail += f". This monitor's agents saw it too: {agreed}"
    items = tuple(sorted({f"{result}|{mx}" for result, mx, _ in by_item}))
    return Verdict(Finding(TLS_FAILURES, "", detail), items)


def _agreement(
    largest: list[tuple[tuple[str, str, str], int]], hostname: str, own: Mapping[Key, Finding]
) -> str:
    """The monitor's own open findings that say what reports about its host say."""
    said: dict[str, list[str]] = {}
    host = _host(hostname)
    for (result, mx, _), _n in largest:
        if mx and _host(mx) != host:
            continue
        for code in AGREES.get(result, ()):
            countries = sorted(cc for (c, cc) in own if c == code)
            if countries and code not in said:
                said[code] = countries
    return "; ".join(f"{code} ({_seen(countries)})" for code, countries in said.items())


def _seen(countries: list[str]) -> str:
    named = [cc for cc in countries if cc]
    return f"seen from {', '.join(named)}" if named else "for the domain"


def _dmarc(counts: list[Count], settings: ReportSettings) -> Verdicts:
    known_nets = [ipaddress.ip_network(n, strict=False) for n in settings.known_networks]
    passed: dict[str, int] = defaultdict(int)
    failed: dict[str, int] = defaultdict(int)
    listed: set[str] = set()
    for c in counts:
        net = network(c.ip)
        (passed if c.result == "pass" else failed)[net] += c.count
        if _in(c.ip, known_nets):
            listed.add(net)
    known = {net for net in failed if passed[net] or net in listed}
    verdicts: Verdicts = {}
    failing = {
        net: n for net, n in failed.items() if net in known and n >= settings.dmarc_failures_min
    }
    verdicts[DMARC_FAILURES] = _networks(DMARC_FAILURES, failing, passed, "failed DMARC alignment")
    unknown = {net: n for net, n in failed.items() if net not in known}
    if sum(unknown.values()) >= settings.dmarc_unknown_min:
        verdicts[DMARC_UNKNOWN] = _networks(
            DMARC_UNKNOWN, unknown, passed, "sent in the domain's name and never passed DMARC"
        )
    else:
        verdicts[DMARC_UNKNOWN] = None
    return verdicts


def _networks(
    code: str, failing: Mapping[str, int], passed: Mapping[str, int], what: str
) -> Verdict | None:
    if not failing:
        return None
    largest = sorted(failing.items(), key=lambda kv: (-kv[1], kv[0]))
    parts = []
    for net, n in largest[:SHOWN]:
        share = f" ({passed[net]} passed)" if passed.get(net) else ""
        parts.append(f"{net}: {n} messages{share}")
    more = f"; and {len(largest) - SHOWN} more networks" if len(largest) > SHOWN else ""
    total = sum(failing.values())
    detail = f"{total} messages from {len(largest)} networks {what}: " + "; ".join(parts) + more
    return Verdict(Finding(code, "", detail), tuple(sorted(failing)))


def told(verdict: Verdict, before: Sequence[str] | None) -> bool:
    """Whether `verdict` is news: it appears (`before` None) or names an item not told yet."""
    return before is None or not set(verdict.items) <= set(before)
