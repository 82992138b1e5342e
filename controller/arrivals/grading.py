"""Senders graded by what arrived (issue 83), pure: a monitor's findings of its sender, per
receiving country, from the latest arrivals that country's receiver took for it.

| what the country's receiver saw last | finding | severity |
| --- | --- | --- |
| mail in the clear at the plain twin (no STARTTLS there) | `sender_tls_not_enforced` | warning |
| mail in the clear although STARTTLS was offered | `sender_tls_not_used` | critical |
| mail over TLS 1.0 or 1.1 | `sender_tls_outdated` | warning |
| DKIM not `pass` | `sender_dkim_missing` | warning |
| DMARC `fail` | `sender_dmarc_fail` | critical |

A sender that refuses the plain twin sends nothing there, so only its mail to the normal
address shows it: a normal arrival over TLS with no plain arrival within `SETTLE` either side
(the sender's test sends one message to both) clears `sender_tls_not_enforced`, once it is
`SETTLE` old. A code the arrivals cannot judge (no such arrival yet, an older agent's arrival
without `starttlsOffered`, a verdict not evaluated) is left as it is."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from controller.sidechecks.findings import Verdicts, declare, judge

OUTDATED: Final = frozenset({"TLSv1", "TLSv1.1", "SSLv3"})
# How far apart one test message's two deliveries (the address and its plain twin) may land.
SETTLE: Final = timedelta(minutes=10)

CODES: Final = declare(
    {
        "sender_tls_not_enforced": (
            "warning",
            "The sender delivered in the clear to a receiver that offered no STARTTLS: anyone "
            "on the path who strips STARTTLS reads its mail. Enforce TLS for this route (Postfix "
            "smtp_tls_security_level = encrypt or dane, or MTA-STS/DANE on the receiving side).",
        ),
        "sender_tls_not_used": (
            "critical",
            "The sender delivered in the clear although STARTTLS was offered. Turn on "
            "opportunistic TLS at least (Postfix smtp_tls_security_level = may).",
        ),
        "sender_tls_outdated": (
            "warning",
            "The sender chose TLS 1.0 or 1.1, deprecated by RFC 8996. Allow TLS 1.2 and 1.3 in "
            "its client (Postfix smtp_tls_protocols) and update its TLS library.",
        ),
        "sender_dkim_missing": (
            "warning",
            "The mail carried no DKIM signature that verifies: receivers cannot tell it from "
            "forged mail. Sign outgoing mail (OpenDKIM, or the provider's DKIM) and publish the "
            "selector's key.",
        ),
        "sender_dmarc_fail": (
            "critical",
            "The mail failed DMARC: neither SPF nor DKIM passed for the From domain. Receivers "
            "following the domain's policy reject or quarantine it. Align the DKIM d= or the "
            "envelope sender with the From domain.",
        ),
    }
)


@dataclass(frozen=True, slots=True)
class Latest:
    """What one country's receiver took for a monitor, the newest of each kind (None: none).
    `normal_tls`: the TLS version of the newest normal arrival ("" in the clear);
    `plain_at`: when the newest plain-twin arrival came; `enforced_at`: the newest normal
    arrival over TLS at least `SETTLE` old with no plain arrival within `SETTLE` of it."""

    normal_tls: str | None = None
    dkim: str | None = None
    dmarc: str | None = None
    plain_at: datetime | None = None
    enforced_at: datetime | None = None


def verdicts(country: str, seen: Latest) -> Verdicts:
    """Each grading code `seen` judges for `country`: the finding, or None (it does not hold)."""
    out: Verdicts = {}
    if seen.plain_at is not None and (
        seen.enforced_at is None or seen.plain_at > seen.enforced_at + SETTLE
    ):
        judge(
            out,
            "sender_tls_not_enforced",
            country,
            True,
            "delivered in the clear to the plain twin",
        )
    elif seen.enforced_at is not None:
        judge(out, "sender_tls_not_enforced", country, False, "")
    if seen.normal_tls is not None:
        clear = seen.normal_tls == ""
        judge(
            out, "sender_tls_not_used", country, clear, "delivered in the clear, STARTTLS offered"
        )
        if not clear:
            old = seen.normal_tls in OUTDATED
            judge(out, "sender_tls_outdated", country, old, f"delivered over {seen.normal_tls}")
    if seen.dkim is not None:
        judge(out, "sender_dkim_missing", country, seen.dkim != "pass", f"DKIM {seen.dkim}")
    if seen.dmarc is not None:
        judge(out, "sender_dmarc_fail", country, seen.dmarc == "fail", "DMARC fail")
    return out
