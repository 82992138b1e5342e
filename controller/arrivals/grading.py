"""Senders graded by what arrived (issue 83), pure: the findings one arrival gives its sender.

| arrival | finding | severity |
| --- | --- | --- |
| in the clear at the port without STARTTLS (it fell back) | `sender_tls_not_enforced` | warning |
| in the clear although STARTTLS was offered | `sender_tls_not_used` | critical |
| over TLS 1.0 or 1.1 | `sender_tls_outdated` | warning |
| DKIM not `pass` | `sender_dkim_missing` | warning |
| DMARC `fail` | `sender_dmarc_fail` | critical |

A sender that refused the port without STARTTLS sends nothing there: no arrival, no finding;
that it refused is read from its own queue (its log), which mailprobe does not see."""

from dataclasses import dataclass
from typing import Final, Literal

Severity = Literal["critical", "warning"]
OUTDATED: Final = frozenset({"TLSv1", "TLSv1.1", "SSLv3"})


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity


def findings(
    starttls_offered: bool | None, tls_version: str | None, dkim: str | None, dmarc: str | None
) -> list[Finding]:
    """What one arrival says of its sender (an older agent's arrival, `starttls_offered`
    null, is not graded on TLS)."""
    out: list[Finding] = []
    if tls_version is None and starttls_offered is False:
        out.append(Finding("sender_tls_not_enforced", "warning"))
    elif tls_version is None and starttls_offered:
        out.append(Finding("sender_tls_not_used", "critical"))
    elif tls_version in OUTDATED:
        out.append(Finding("sender_tls_outdated", "warning"))
    if dkim is not None and dkim != "pass":
        out.append(Finding("sender_dkim_missing", "warning"))
    if dmarc == "fail":
        out.append(Finding("sender_dmarc_fail", "critical"))
    return out
