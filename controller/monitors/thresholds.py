"""An organization's (or a monitor's) alert thresholds: a plain value the rules read, and the
severities of findings and notices (posture, reports) with who hears which by default.

Stored in `organization_alert_settings` and `monitor_alert_overrides`
(controller.monitors.thresholds_store); the rules that use them (controller.alerting.rules,
controller.scheduling.confirm, controller.posture.rules) import this module, never the db layer.
"""

from dataclasses import dataclass
from typing import Literal

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")  # worst first

# Which severities of findings (and certificate expiry notices) go out on each channel unless
# the organization or the monitor chose otherwise (`findingEmailSeverities`,
# `findingSmsSeverities`): e-mail for what a person should act on, SMS for none, since a
# finding is a state to fix in working hours, not an outage to wake anyone for.
DEFAULT_EMAIL_SEVERITIES: tuple[Severity, ...] = ("critical", "warning")
DEFAULT_SMS_SEVERITIES: tuple[Severity, ...] = ()
# Notification channels (chat, pager, webhook) hear what e-mail hears unless chosen otherwise.
DEFAULT_CHANNEL_SEVERITIES: tuple[Severity, ...] = ("critical", "warning")

# Certificate expiry notices this many days before.
DEFAULT_EXPIRY_DAYS = (21, 7)

# Built-in defaults, used when an organization has not set its own.
DEFAULT_FAILURE_THRESHOLD = 0.5
DEFAULT_DOWN_AFTER_ROUNDS = 2
DEFAULT_RECOVER_AFTER_ROUNDS = 2


@dataclass(frozen=True, slots=True)
class Thresholds:
    failure_threshold: float = DEFAULT_FAILURE_THRESHOLD
    down_after_rounds: int = DEFAULT_DOWN_AFTER_ROUNDS
    recover_after_rounds: int = DEFAULT_RECOVER_AFTER_ROUNDS
    cert_expiry_days: tuple[int, ...] = DEFAULT_EXPIRY_DAYS  # notices this many days before
    confirm_failures: bool = True
    # The severities of posture findings and certificate expiry notices told on each channel.
    finding_email_severities: tuple[Severity, ...] = DEFAULT_EMAIL_SEVERITIES
    finding_sms_severities: tuple[Severity, ...] = DEFAULT_SMS_SEVERITIES
    # ... and to the monitor's notification channels (`channels`).
    finding_channel_severities: tuple[Severity, ...] = DEFAULT_CHANNEL_SEVERITIES

    def finding_channels(self, severity: str) -> frozenset[str]:
        """The ways (`email`, `sms`, `channels`: the monitor's notification channels) a notice
        of that severity goes by."""
        chosen = {
            "email": self.finding_email_severities,
            "sms": self.finding_sms_severities,
            "channels": self.finding_channel_severities,
        }
        return frozenset(channel for channel, wanted in chosen.items() if severity in wanted)
