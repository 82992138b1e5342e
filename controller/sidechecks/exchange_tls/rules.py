"""The Exchange Online TLS 1.0/1.1 retirement rule, pure: an IMAP or POP3 round's TLS version
and its server (`ExchangeTls`, the monitor's host name, the round's greeting) → the verdict on
`tls_legacy_exchange`.

Microsoft 365 is told as readiness tells it (`readiness.rules.provider`): by the host's name
(`outlook.office365.com` and the others under office365.com, outlook.com, office.com,
microsoft.com) or by a Microsoft host the greeting names (Exchange Online's IMAP and POP3
greetings name their server in base64); or by the certificate the server holds, when a trusted
chain vouches for it and it names such a host (a name of the customer's own pointed at Exchange
Online, with implicit TLS: no greeting before the handshake). A round below TLS 1.2 with such a
server raises the finding; one at TLS 1.2 or later clears it; a round whose server is not told
(no greeting, a name of its own, no certificate of Microsoft's) or that reached no TLS judges
nothing."""

from typing import Final

from controller.sidechecks.findings import Verdicts, declare, judge
from controller.sidechecks.readiness.rules import provider
from shared.sidechecks.exchange_tls import ExchangeTls

# The versions Exchange Online stops taking for POP3 and IMAP (and those before them).
LEGACY: Final = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"})
NOTICE: Final = "MC1293480"

CODES: Final = declare(
    {
        "tls_legacy_exchange": (
            "warning",
            "This IMAP/POP3 monitor's path to Microsoft 365 negotiates TLS below 1.2. Exchange "
            f"Online is retiring TLS 1.0 and 1.1 for POP3 and IMAP ({NOTICE}): connections "
            "that cannot use TLS 1.2 or later will be refused. Find what ends TLS on this path "
            "(a proxy, a load balancer, an old client library) and enable TLS 1.2 there, or "
            "point the monitor at outlook.office365.com directly.",
        ),
    }
)


def _certified(names: list[str]) -> str | None:
    """ "microsoft" when a certificate a trusted chain vouches for names one of its hosts
    (a wildcard as the names under it)."""
    certified = [n.removeprefix("*.") for n in names]
    return "microsoft" if any(provider(n, None, None) == "microsoft" for n in certified) else None


def legacy_exchange(seen: ExchangeTls, hostname: str, banner: str | None, cc: str) -> Verdicts:
    """The verdict on one round: `hostname` the monitor's, `banner` the round's greeting."""
    v: Verdicts = {}
    if seen.version is None:
        return v
    who = provider(hostname, None, banner) or _certified(seen.cert_names)
    if who is None and not banner and not seen.cert_names:
        return v  # a server its name does not tell, and no greeting nor certificate: not known
    legacy = seen.version in LEGACY
    detail = f"{seen.version} negotiated with {seen.host} ({seen.mode or 'TLS'})"
    judge(v, "tls_legacy_exchange", cc, who == "microsoft" and legacy, detail)
    return v
