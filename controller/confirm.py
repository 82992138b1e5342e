"""Confirmation rounds: when a round fails, the controller checks again at once instead of
waiting for the next scheduled round. Pure rules, no I/O.

A confirmation round is a triggered round (the monitor's countries, right now) and the alerter
counts it like any other round: with `downAfterRounds` 2, a failing round and its failing
confirmation open the incident seconds after the first failure, whatever the interval. A lone
flaky country does not make a round fail (`failureThreshold`), so it is never confirmed and never
notifies; a failure the confirmation does not see again is a passing round, which ends the streak.
"""

from datetime import datetime, timedelta

from controller.db.alerts import Thresholds

# Confirmation rounds in one failing streak at most: with `downAfterRounds` 3 both run back to
# back; a higher setting waits for scheduled rounds after them, so a monitor set to 100 rounds
# never becomes 99 checks of its target in a row.
PER_STREAK = 2


def wanted(
    verdict: str,
    consecutive_down_rounds: int,
    incident_open: bool,
    t: Thresholds,
    round_at: datetime,
    now: datetime,
    interval: timedelta,
) -> bool:
    """Whether the round just judged (`verdict`, the streak after it) asks for a confirmation
    round: it failed, the streak is short of opening an incident and has had fewer than
    `PER_STREAK` confirmations, and the round is recent (an old round judged late, after an
    outage of the controller, is left to the schedule)."""
    return (
        t.confirm_failures
        and verdict == "failing"
        and not incident_open
        and 0 < consecutive_down_rounds < t.down_after_rounds
        and consecutive_down_rounds <= PER_STREAK
        and now - round_at < interval
    )
