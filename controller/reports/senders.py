"""Who sent a report, beside the organization name it declares (which a stranger chooses
freely): what `controller.reports.room` binds a reporter's floor to; pure.

- POSTed to a domain's HTTPS address: `https` and the client's network, its /24 (IPv4) or
  /56 (IPv6), as DMARC sources are counted.
- By mail: `mail` and its From address's domain, which the mailbox's provider checks against
  the sending domain's DMARC policy on receipt.
"""

from controller.sidechecks.reports.rules import network


def by_https(address: str) -> str:
    """The sender of a report POSTed from `address` (the client's, behind trusted proxies the
    forwarded one)."""
    try:
        return f"https {network(address)}"
    except ValueError:
        return "https unknown"


def by_mail(from_domain: str) -> str:
    """The sender of a mailed report whose From address is in `from_domain`."""
    return f"mail {from_domain or 'unknown'}"
