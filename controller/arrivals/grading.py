"""Senders graded by what arrived (issue 83), pure: a monitor's findings of its sender, per
receiving country, from the latest arrivals that country's receiver took for it.

| what the country's receiver saw last | finding | severity |
| --- | --- | --- |
| mail at the plain twin (no STARTTLS there): it fell back | `sender_tls_not_enforced` | warning |
| mail at the TLS 1.0 twin (only TLS 1.0 offered) | `sender_tls_1_0_accepted` | warning |
| mail at the bad-certificate twin (expired, another name) | `sender_tls_unverified` | warning |
| mail in the clear although STARTTLS was offered | `sender_tls_not_used` | critical |
| mail over TLS 1.0 or 1.1 | `sender_tls_outdated` | warning |
| DKIM not `pass` | `sender_dkim_missing` | warning |
| DMARC `fail` | `sender_dmarc_fail` | critical |

A sender that refuses a twin sends nothing there, so only its mail to the address shows it: an
arrival over TLS at the address with no arrival at that twin within `SETTLE` either side (the
sender's test sends one message to the address and its twins) clears the twin's finding, once
it is `SETTLE` old. A code the arrivals cannot judge (no such arrival yet, an older agent's arrival
without `starttlsOffered`, a verdict not evaluated) is left as it is."""

from collections.abc import Mapping
from dataclasses import dataclass, field
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
        "sender_tls_1_0_accepted": (
            "warning",
            "The sender delivered to a receiver that offered only TLS 1.0 (deprecated, RFC "
            "8996), over it or in the clear: an attacker who downgrades the session reads its "
            "mail. Require TLS 1.2 or newer in its client (Postfix smtp_tls_mandatory_protocols "
            "with an enforcing security level).",
        ),
        "sender_tls_unverified": (
            "warning",
            "The sender delivered to a receiver whose certificate had expired and named another "
            "host: it does not verify certificates, so an interceptor can read its mail. Use "
            "DANE (Postfix smtp_tls_security_level = dane with a validating resolver) or "
            "MTA-STS, or verify for the routes that matter.",
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


# Each test twin (shared.arrivals LISTENERS) and the finding its arrivals raise.
TWIN_CODES: Final = {
    "plain": "sender_tls_not_enforced",
    "tls_1_0": "sender_tls_1_0_accepted",
    "bad_cert": "sender_tls_unverified",
}
_TWIN_SAID: Final = {
    "plain": "delivered in the clear to the plain twin",
    "tls_1_0": "delivered to the twin offering only TLS 1.0",
    "bad_cert": "delivered to the twin with an expired certificate for another name",
}


@dataclass(frozen=True, slots=True)
class Twin:
    """`at`: when the twin last took the sender's mail; `refused_at`: the newest arrival over
    TLS at the address at least `SETTLE` old with no arrival at the twin within `SETTLE`."""

    at: datetime | None = None
    refused_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Latest:
    """What one country's receiver took for a monitor, the newest of each kind (None: none).
    `normal_tls`: the TLS version of the newest arrival at the address ("" in the clear);
    `twins`: what each test twin saw."""

    normal_tls: str | None = None
    dkim: str | None = None
    dmarc: str | None = None
    twins: Mapping[str, Twin] = field(default_factory=dict)


def verdicts(country: str, seen: Latest) -> Verdicts:
    """Each grading code `seen` judges for `country`: the finding, or None (it does not hold)."""
    out: Verdicts = {}
    for twin, code in TWIN_CODES.items():
        t = seen.twins.get(twin, Twin())
        if t.at is not None and (t.refused_at is None or t.at > t.refused_at + SETTLE):
            judge(out, code, country, True, _TWIN_SAID[twin])
        elif t.refused_at is not None:
            judge(out, code, country, False, "")
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
