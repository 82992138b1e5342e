"""The login cap per organization and account: pure rules, no I/O.

An account is user@host (case-insensitive, the host without its trailing dot), whatever the port
or protocol: mail servers count logins and failures per user across SMTP submission, IMAP and
POP3 (Dovecot's auth penalty, fail2ban's and mailcow's jails see one user), so a cap per port
would multiply the logins an account sees by its protocols. Each organization has its own count:
another organization's monitors naming the same account never use up this one's logins.

Logins count as attempted, from the results: a check that never reached the server's
AUTH/LOGIN/USER-PASS step (a closed port, a refused TLS) costs none. A job sent and not answered
yet counts as the logins it plans until it settles (its expiry plus its timeout).

The cap follows the configuration: `need` is what the organization's monitors of the account
may log in per `WINDOW` when everything is honest (countries x rounds x logins a check, every
round confirmed once, plus a burst of trigger-checks per monitor); the cap is that with a
quarter more, never above the ceiling (LOGIN_CAP_PER_ACCOUNT), which a configuration's `need`
may not exceed at all.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Login:
    """A credentialed job wanting to go out: whose account it logs in to, and its cap."""

    job_id: str
    organization_id: int
    account: str  # the keyed hash of user@host
    planned: int  # logins the check may make
    settles_at: datetime
    cap: int


MARGIN = 1.25
SETTING = "LOGIN_CAP_PER_ACCOUNT"


def rounds_per_window(interval_s: int) -> int:
    """Scheduled rounds of a monitor in any `WINDOW` (a window can hold a partial one)."""
    return math.ceil(WINDOW.total_seconds() / interval_s)


def monitor_need(legs: int, countries: int, interval_s: int, trigger_burst: int) -> int:
    """Logins one monitor may make per window: each scheduled round and its confirmation
    round, plus `trigger_burst` trigger-checks, from every country, `legs` logins a check.
    The twin of SQL `login_need` (migration 0053), held to it by
    tests/pipeline/test_login_rules.py."""
    return legs * countries * (2 * rounds_per_window(interval_s) + trigger_burst)


def cap(need: int, ceiling: int) -> int:
    """The cap of an account whose monitors need `need` logins per window."""
    return min(ceiling, max(1, math.ceil(need * MARGIN)))


def admissible(need: int, need_before: int, ceiling: int) -> bool:
    """Whether a write taking the account's need from `need_before` to `need` is allowed: past
    the ceiling only when it does not add logins (an organization over a lowered ceiling can
    still shrink)."""
    return need <= ceiling or need <= need_before


def attempted(
    status: str, error_kind: str | None, logins: int | None, auth_ms: float | None
) -> int:
    """The logins a result says its check attempted: the agent's count (`logins`), or from an
    agent that does not send it, one when it timed a login or had one rejected (`auth`)."""
    if logins is not None:
        return max(0, logins)
    if status == "missed":
        return 0
    return 1 if auth_ms is not None or error_kind == "auth" else 0
