"""An organization's (or a monitor's) alert thresholds: a plain value the rules read.

Stored in `organization_alert_settings` and `monitor_alert_overrides` (controller.alerting.store);
the rules that use them (controller.alerting.rules, controller.scheduling.confirm) import this
module,
never the db layer.
"""

from dataclasses import dataclass

from controller.posture.rules import DEFAULT_EXPIRY_DAYS

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
