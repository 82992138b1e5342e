"""What a posture notification says (kinds `finding` and `cert_expiry`): built, like incident
notices, only from the monitor's name, type, host and port and what was seen, never a secret.

One notice tells everything one pass of the posture found for one monitor: a finding several
countries see is one entry naming them, and several findings of the same rounds are one notice,
worst first.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from controller.monitors.store import Monitor
from controller.monitors.thresholds import SEVERITIES, Severity
from controller.notify.links import Links
from controller.notify.texts import Texts, monitor_facts, one_line, target, with_facts, with_link
from controller.posture.rules import CODES, Finding, expiry_severity

# Codes that start with the name of a record kind or a command, spelt as people write it.
_RECORD_KINDS = {"mx": "MX", "spf": "SPF", "dmarc": "DMARC", "mta sts": "MTA-STS"}
_RECORD_KINDS |= {
    "tlsa": "TLSA",
    "tls rpt": "TLS-RPT",
    "ptr": "PTR",
    "auth": "AUTH",
    "dkim": "DKIM",
}
# The senders' grading names what it graded.
_RECORD_KINDS |= {
    "sender tls 1 0": "Sender TLS 1.0",
    "sender tls": "Sender TLS",
    "sender dkim": "Sender DKIM",
    "sender dmarc": "Sender DMARC",
}
# Report findings name what reported them.
_RECORD_KINDS |= {"tls failures": "TLS failures"}
# Any other TLS finding (after TLS-RPT's and the reports' above, which come first).
_RECORD_KINDS |= {"tls": "TLS"}


def title(code: str) -> str:
    text = code.replace("_", " ").replace("1 2", "1.2")
    for kind, spelt in _RECORD_KINDS.items():
        if text.startswith(kind + " "):
            return spelt + text[len(kind) :]
    return text.capitalize()


@dataclass(frozen=True, slots=True)
class Grouped:
    """The findings of one code in one notice: the countries that see it and what they saw."""

    code: str
    countries: tuple[str, ...]  # empty: the monitor as a whole
    details: tuple[str, ...]  # distinct, in the countries' order

    @property
    def severity(self) -> Severity:
        return CODES[self.code][0]

    @property
    def where(self) -> str:
        return ", ".join(self.countries) if self.countries else "every country"


def grouped(found: Sequence[Finding]) -> list[Grouped]:
    """`found` by code, worst first, then by code."""
    by_code: dict[str, list[Finding]] = {}
    for f in found:
        by_code.setdefault(f.code, []).append(f)
    out = []
    for code, fs in by_code.items():
        fs.sort(key=lambda f: f.country)
        countries = tuple(f.country for f in fs if f.country)
        details = tuple(dict.fromkeys(one_line(f.detail) for f in fs))
        out.append(Grouped(code, countries, details))
    out.sort(key=lambda g: (SEVERITIES.index(g.severity), g.code))
    return out


def _listed(titles: list[str]) -> str:
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]


def findings(monitor: Monitor, found: Sequence[Finding], links: Links) -> Texts:
    """The one notice of `found` (not empty)."""
    groups = grouped(found)
    name = one_line(monitor.name)
    worst = groups[0].severity
    titles = [title(g.code) for g in groups]
    if len(groups) == 1:
        g = groups[0]
        subject = f"[mailprobe] {titles[0]}: {name}"
        lead = f"{name} ({target(monitor)}): {titles[0]}, seen from {g.where}."
    else:
        subject = f"[mailprobe] {len(groups)} findings ({worst}): {name}"
        lead = f"{name} ({target(monitor)}): {_listed(titles)}."
    facts: list[tuple[str, str]] = []
    for g, what in zip(groups, titles, strict=True):
        facts += [
            (what, f"{g.severity}, seen from {g.where}"),
            ("Seen", " / ".join(g.details)),
            ("What to do", CODES[g.code][1]),
        ]
    facts += monitor_facts(monitor, links)
    said = "; ".join(f"{what} from {g.where}" for g, what in zip(groups, titles, strict=True))
    sms = f"mailprobe {worst}: {name} ({monitor.hostname}): {said}"
    return with_facts(subject, lead, facts, with_link(sms, links.monitor(monitor.public_id)))


@dataclass(frozen=True, slots=True)
class Expiring:
    """A certificate that crossed an expiry notice's threshold."""

    cert_sha256: str
    days_left: int
    threshold: int

    @property
    def when(self) -> str:
        return f"expires in {self.days_left} days" if self.days_left >= 0 else "has expired"

    @property
    def severity(self) -> Severity:
        return expiry_severity(self.days_left)


def expiry(monitor: Monitor, certs: Sequence[Expiring], links: Links) -> Texts:
    """The one notice of the certificates in `certs` (not empty), soonest first."""
    name = one_line(monitor.name)
    ordered = sorted(certs, key=lambda c: (c.days_left, c.cert_sha256))
    first = ordered[0]
    if len(ordered) == 1:
        lead = f"The certificate of {name} ({target(monitor)}) {first.when}."
    else:
        lead = f"{len(ordered)} certificates of {name} ({target(monitor)}) expire soon."
    facts: list[tuple[str, str]] = []
    for c in ordered:
        facts += [
            ("Certificate SHA-256", c.cert_sha256),
            ("Notice", f"{c.threshold} days before expiry ({c.when})"),
        ]
    facts.append(("What to do", "Renew it, or check that automatic renewal works."))
    facts += monitor_facts(monitor, links)
    sms = f"mailprobe {first.severity}: the certificate of {name} ({monitor.hostname}) {first.when}"
    subject = f"[mailprobe] Certificate {first.when}: {name}"
    return with_facts(subject, lead, facts, with_link(sms, links.monitor(monitor.public_id)))
