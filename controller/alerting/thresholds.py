"""An organization's (or a monitor's) alert thresholds: a plain value the rules read.

Stored in `organization_alert_settings` and `monitor_alert_overrides` (controller.alerting.store);
the rules that use them (controller.alerting.rules, controller.scheduling.confirm) import this
module,
never the db layer.
"""

from dataclasses import dataclass

from controller.posture.rules import (
    DEFAULT_CHANNEL_SEVERITIES,
    DEFAULT_EMAIL_SEVERITIES,
    DEFAULT_EXPIRY_DAYS,
    DEFAULT_SMS_SEVERITIES,
    Severity,
)

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
