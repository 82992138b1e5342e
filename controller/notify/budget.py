"""The per-organization notification budget: pure rules (no I/O).

A member can point many monitors at a server of their own, make them flap, and give each any
`notificationEmail` / `notificationPhoneNumber`: without a bound the operator's relay and SMS
provider would send hundreds of messages a minute for them (spam from the operator's domain, SMS
toll fraud). So each organization may have `ORG_MAX_NOTIFICATIONS_PER_HOUR` e-mails and
`ORG_MAX_SMS_PER_HOUR` SMS delivered per clock hour (UTC); SMS has its own, smaller budget since
every one costs money. A notification counts once, at its first attempt: its retries (bounded by
NOTIFY_MAX_ATTEMPTS and backoff) are the same message, and a relay outage must not use the
budget up.

Past the budget a notification is not sent: its row is `dropped` and its alert history line says
why, so nothing is silently lost. The organization's owners get one notice per hour and channel
that the budget was reached (outside the budget, at most two an hour each): they are the people
who can act (find the flapping monitors, who set their addresses, or ask the operator for more),
and their addresses are the accounts', not ones a member typed into a monitor. Saying "N were
held back" in the next delivered notice instead would tell whoever that notice goes to, possibly
the very address being flooded, and only once the hour is over.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.settings import ControllerSettings
from shared.timefmt import iso_ms

WINDOW = timedelta(hours=1)

# Kinds outside the budget: the owners' notice that it was reached.
HELD_BACK = "held_back"

# Mail to a status page's subscribers has a budget of its own (`subscribers`), so a page's
# subscribers (whom anonymous visitors sign up) never use up the e-mail its alerts need; past
# it the rows are dropped like any other, their history line saying why (no owners' notice:
# it is about a monitor).
SUBSCRIBER_KINDS = frozenset({"status_confirm", "status_update"})
SUBSCRIBERS = "subscribers"

SETTING = {
    "email": "ORG_MAX_NOTIFICATIONS_PER_HOUR",
    "sms": "ORG_MAX_SMS_PER_HOUR",
    SUBSCRIBERS: "ORG_MAX_SUBSCRIBER_MAILS_PER_HOUR",
}
WHAT = {"email": "e-mail", "sms": "SMS", SUBSCRIBERS: "subscriber e-mail"}


def budget_of(kind: str, channel: str) -> str:
    """The budget a notification of `kind` on `channel` draws on."""
    return SUBSCRIBERS if kind in SUBSCRIBER_KINDS else channel


@dataclass(frozen=True, slots=True)
class Budget:
    """Notifications per organization and clock hour, per channel (the settings' defaults)."""

    email: int = 500
    sms: int = 100
    subscribers: int = 1000

    @classmethod
    def of(cls, settings: ControllerSettings) -> "Budget":
        return cls(
            settings.org_max_notifications_per_hour,
            settings.org_max_sms_per_hour,
            settings.org_max_subscriber_mails_per_hour,
        )

    def per_hour(self, budget: str) -> int:
        """`budget`: a channel, or `subscribers` (`budget_of`)."""
        if budget == SUBSCRIBERS:
            return self.subscribers
        return self.sms if budget == "sms" else self.email


def window(now: datetime) -> datetime:
    """The start of the clock hour `now` is in: the budget's window."""
    return now.replace(minute=0, second=0, microsecond=0)


def granted(used: int, per_hour: int, wanted: int) -> int:
    """How many of `wanted` new notifications fit a window that has `used` of `per_hour`."""
    return max(0, min(wanted, per_hour - used))


def dropped_reason(channel: str, per_hour: int, start: datetime) -> str:
    """The alert history's `error` of a notification dropped past the budget."""
    return (
        f"not sent: your organization's budget of {per_hour:,} {WHAT[channel]} notifications"
        f" an hour ({SETTING[channel]}) was used up; it is whole again at"
        f" {iso_ms(start + WINDOW)}"
    )
