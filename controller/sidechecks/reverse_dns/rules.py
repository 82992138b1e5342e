"""Reverse DNS rules, pure: what one country's agent resolved of the monitored SMTP server's
addresses (`ReverseDns`) and the banner the server greeted with on the same round → verdicts on
the reverse DNS findings, as MXToolbox's SMTP test reports them: an address without a PTR
record, a PTR name that does not resolve back to its address (no forward-confirmed reverse
DNS), and a banner whose host name is not the PTR name of the address it was read from.

A lookup that failed (null) judges nothing, so a resolver outage neither raises nor clears a
finding; an address the agent did not look up (a private one) is unknown too.
"""

import re
from typing import Final

from controller.sidechecks.findings import Verdicts, declare, judge
from shared.sidechecks.reverse_dns import PtrCheck, ReverseDns

CODES: Final = declare(
    {
        "ptr_missing": (
            "warning",
            "An address of the server has no PTR record (reverse DNS). Many receivers refuse "
            "or mark as spam mail from an address without one. Ask whoever runs the address "
            "(your hosting or network provider) to publish a PTR record naming the server.",
        ),
        "ptr_not_forward_confirmed": (
            "warning",
            "The PTR name of an address of the server does not resolve back to that address "
            "(no forward-confirmed reverse DNS), which receivers check as they check a "
            "missing PTR. Publish an A/AAAA record of that name with the address, or change "
            "the PTR to a name that has it.",
        ),
        "banner_name_mismatch": (
            "warning",
            "The host name in the server's greeting (SMTP banner) is not the PTR name of the "
            "address it answered on. Set the server's host name (Postfix myhostname, Exim "
            "primary_hostname) to the PTR name, or the PTR to the server's name.",
        ),
    }
)

# A reply code before the greeting's text (what a failed greeting records), then the name.
_CODE = re.compile(r"^\d{3}[ -]")


def reverse_dns(seen: ReverseDns, banner: str | None, connected: str | None, cc: str) -> Verdicts:
    """The verdicts of one country's reverse DNS facts; `banner`: the greeting's text the
    check recorded, from `connected`, the address the check used."""
    v: Verdicts = {}
    checks = seen.addresses
    missing = [c.address for c in checks if c.names == []]
    if missing or (checks and all(c.names is not None for c in checks)):
        judge(v, "ptr_missing", cc, bool(missing), f"no PTR record for {', '.join(missing)}")
    named = [c for c in checks if c.names]
    unconfirmed = [c for c in named if c.confirmed == []]
    unknown = any(c.names is None for c in checks) or any(c.confirmed is None for c in named)
    if unconfirmed or (named and not unknown):
        detail = "; ".join(
            f"the PTR name of {c.address}, {', '.join(c.names or [])}, does not resolve back to it"
            for c in unconfirmed
        )
        judge(v, "ptr_not_forward_confirmed", cc, bool(unconfirmed), detail)
    _banner(v, cc, checks, banner, connected)
    return v


def banner_name(banner: str) -> str:
    """The host name a greeting starts with (RFC 5321 4.3.1: `220 <domain> ...`), lower case
    without a final dot; "" when it starts with nothing."""
    words = _CODE.sub("", banner.strip()).split()
    return words[0].lower().rstrip(".") if words else ""


def _banner(
    v: Verdicts, cc: str, checks: list[PtrCheck], banner: str | None, connected: str | None
) -> None:
    check = next((c for c in checks if c.address == connected), None)
    if banner is None or check is None or check.names is None:
        return
    name = banner_name(banner)
    ptr = ", ".join(check.names)
    detail = f"the banner names {name or 'no host'}; the PTR of {check.address} is {ptr}"
    # No PTR is its own finding; the banner is then judged against nothing.
    judge(v, "banner_name_mismatch", cc, bool(check.names) and name not in check.names, detail)
