"""The per-organization notification budgets: pure rules (no I/O).

A member can point many monitors at a server of their own, make them flap, and give each any
`notificationEmail` / `notificationPhoneNumber`: without a bound the operator's relay and SMS
provider would send hundreds of messages a minute for them (spam from the operator's domain, SMS
toll fraud). So each organization has hourly budgets (per clock hour, UTC), one per source of
notices (`controller.notify.sources.Source`) and channel family (e-mail, SMS, and all its
notification channels together): `budget_of(source, channel)` names the one a notification draws
on. Outage notices have `ORG_MAX_NOTIFICATIONS_PER_HOUR` e-mails, `ORG_MAX_SMS_PER_HOUR` SMS and
`ORG_MAX_CHANNEL_NOTIFICATIONS_PER_HOUR` channel notices, and nothing else draws on them: a
flood of findings, of report findings (written by strangers) or of subscriber mail can never
cost an outage notice. Every other source has one setting (`ORG_MAX_FINDING_..._PER_HOUR` and
so on) for each of its families, its SMS never more than `ORG_MAX_SMS_PER_HOUR` (each costs
money). A notification counts once, at its first attempt: its retries (bounded by
NOTIFY_MAX_ATTEMPTS and backoff) are the same message, and a relay outage must not use the
budget up.

Past its budget a notification is not sent: its row is `dropped` and its alert history line says
why, naming the setting, so nothing is silently lost. The organization's owners get one notice
per hour and budget that it was reached (`Source.OWNERS`, outside every budget: at most one an
hour per budget): they are the people who can act (find the flapping monitors, who set their
addresses, or ask the operator for more), and their addresses are the accounts', not ones a
member typed into a monitor. Saying "N were held back" in the next delivered notice instead
would tell whoever that notice goes to, possibly the very address being flooded, and only once
the hour is over.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.notify.sources import Source
from controller.settings import NoticeBudgetSettings
from shared.timefmt import iso_ms

WINDOW = timedelta(hours=1)

# The kind of the owners' notice that a budget was reached (`Source.OWNERS`).
HELD_BACK = "held_back"

# Channel families: e-mail, SMS, and every notification channel (webhook, Slack, ...) together.
EMAIL = "email"
SMS = "sms"
CHANNELS = "channels"
FAMILIES = (EMAIL, SMS, CHANNELS)


@dataclass(frozen=True, slots=True, order=True)
class Pot:
    """One hourly budget of an organization: a source's notifications on one channel family."""

    source: Source
    family: str  # EMAIL, SMS or CHANNELS


def family(channel: str) -> str:
    """The family of a row's channel: e-mail, SMS, or a notification channel."""
    return channel if channel in (EMAIL, SMS) else CHANNELS


def budget_of(source: Source, channel: str) -> Pot:
    """The budget a notification from `source` on `channel` draws on."""
    return Pot(source, family(channel))


def charged(source: Source) -> bool:
    """Whether notifications from `source` draw on a budget: all but the owners' notice that
    one was reached (one per budget and hour by its dedupe key)."""
    return source is not Source.OWNERS


_OUTAGE_SETTING = {
    EMAIL: "ORG_MAX_NOTIFICATIONS_PER_HOUR",
    SMS: "ORG_MAX_SMS_PER_HOUR",
    CHANNELS: "ORG_MAX_CHANNEL_NOTIFICATIONS_PER_HOUR",
}
SETTING = {
    Source.FINDING: "ORG_MAX_FINDING_NOTIFICATIONS_PER_HOUR",
    Source.REPORT: "ORG_MAX_REPORT_NOTIFICATIONS_PER_HOUR",
    Source.ACCOUNT: "ORG_MAX_ACCOUNT_NOTIFICATIONS_PER_HOUR",
    Source.FLEET: "ORG_MAX_FLEET_NOTIFICATIONS_PER_HOUR",
    Source.SUBSCRIBERS: "ORG_MAX_SUBSCRIBER_MAILS_PER_HOUR",
}
_FAMILY_WORD = {EMAIL: "e-mail", SMS: "SMS", CHANNELS: "channel"}
_SOURCE_WORD = {
    Source.FINDING: "finding",
    Source.REPORT: "report finding",
    Source.ACCOUNT: "account",
    Source.FLEET: "fleet",
    Source.SUBSCRIBERS: "subscriber",
}


def setting(pot: Pot) -> str:
    """The setting (or settings) that size `pot`."""
    if pot.source is Source.OUTAGE:
        return _OUTAGE_SETTING[pot.family]
    own = SETTING[pot.source]
    return f"{own}, at most ORG_MAX_SMS_PER_HOUR" if pot.family == SMS else own


def what(pot: Pot) -> str:
    """The notifications of `pot`, as a person reads them ("e-mail", "finding SMS")."""
    word = _FAMILY_WORD[pot.family]
    return word if pot.source is Source.OUTAGE else f"{_SOURCE_WORD[pot.source]} {word}"


@dataclass(frozen=True, slots=True)
class Budget:
    """Notifications per organization and clock hour (the settings' defaults): outage notices
    per family (`email`, `sms`, `channels`), every other source one number per family."""

    email: int = 500
    sms: int = 100
    channels: int = 500
    subscribers: int = 1000
    finding: int = 200
    report: int = 50
    account: int = 100
    fleet: int = 100

    @classmethod
    def of(cls, budget: NoticeBudgetSettings) -> "Budget":
        return cls(
            budget.org_max_notifications_per_hour,
            budget.org_max_sms_per_hour,
            budget.org_max_channel_notifications_per_hour,
            budget.org_max_subscriber_mails_per_hour,
            budget.org_max_finding_notifications_per_hour,
            budget.org_max_report_notifications_per_hour,
            budget.org_max_account_notifications_per_hour,
            budget.org_max_fleet_notifications_per_hour,
        )

    def per_hour(self, pot: Pot) -> int:
        """The hourly budget `pot` holds (`charged` sources only)."""
        if pot.source is Source.OUTAGE:
            return {EMAIL: self.email, SMS: self.sms}.get(pot.family, self.channels)
        own = {
            Source.FINDING: self.finding,
            Source.REPORT: self.report,
            Source.ACCOUNT: self.account,
            Source.FLEET: self.fleet,
            Source.SUBSCRIBERS: self.subscribers,
        }[pot.source]
        return min(own, self.sms) if pot.family == SMS else own


def window(now: datetime) -> datetime:
    """The start of the clock hour `now` is in: the budget's window."""
    return now.replace(minute=0, second=0, microsecond=0)


def granted(used: int, per_hour: int, wanted: int) -> int:
    """How many of `wanted` new notifications fit a window that has `used` of `per_hour`."""
    return max(0, min(wanted, per_hour - used))


def dropped_reason(pot: Pot, per_hour: int, start: datetime) -> str:
    """The alert history's `error` of a notification dropped past its budget."""
    return (
        f"not sent: your organization's budget of {per_hour:,} {what(pot)} notifications"
        f" an hour ({setting(pot)}) was used up; it is whole again at"
        f" {iso_ms(start + WINDOW)}"
    )
