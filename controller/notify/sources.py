"""Where a notice comes from (`Source`): each source draws on an hourly budget of its own per
organization (controller.notify.budget), so no source can use up another's. Pure."""

from enum import StrEnum


class Source(StrEnum):
    """Which budget a notice draws on."""

    OUTAGE = "outage"  # an incident opened, changed or resolved; reminders, escalations
    FINDING = "finding"  # posture findings, certificate expiry, blocklists, side checks
    REPORT = "report"  # findings from TLS-RPT and DMARC reports (written by strangers)
    ACCOUNT = "account"  # logins: back-off, caps, OAuth2 tokens; round-trip delivery
    FLEET = "fleet"  # the operator's findings about the fleet
    SUBSCRIBERS = "subscribers"  # mail to a status page's subscribers
    OWNERS = "owners"  # the owners' notice that a budget was reached (outside every budget)
