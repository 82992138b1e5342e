"""Logins that never lock the account they watch: pure rules, no I/O.

A round whose credentials were rejected (`auth`, or `basic_auth_disabled`: the account takes no
password at all, from some country, and no country logged in)
starts or extends a back-off: no check logs in before `retry_at`, `interval · 2^failures` after
the round (so 2, 4, 8, … intervals), at most `cap` apart; then one country logs in (a different
one each time, and each round while none has logged in or been rejected: a country that cannot
reach the server never strands the back-off), the others are recorded `auth_backoff` (missed,
and not counted by the alerter).
A round in which any country logged in ends it; so do new credentials (a trigger on `monitors`).
From N countries at one login each a round, a wrong password costs N logins once, then one per
growing gap, where lockout policies (fail2ban, mailcow, Dovecot's penalty) count failures per
window.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

AUTH = "auth"
# A password the server takes no more (controller.notify.causes): as rejected as a wrong one.
BASIC_AUTH_DISABLED = "basic_auth_disabled"
REJECTED = frozenset({AUTH, BASIC_AUTH_DISABLED})  # the kinds that start or extend a back-off
HELD = "auth_backoff"  # the missed kind of a country whose login waits
CAPPED = "login_capped"  # the missed kind of a login over LOGIN_CAP_PER_ACCOUNT


@dataclass(frozen=True, slots=True)
class Backoff:
    failures: int
    since: datetime
    retry_at: datetime
    notified: bool = False


def after_round(
    b: Backoff | None,
    kinds: Sequence[str | None],
    logged_in: bool,
    at: datetime,
    interval: timedelta,
    cap: timedelta,
) -> Backoff | None:
    """The back-off after the round scheduled `at`: `kinds` are its failures' error kinds,
    `logged_in` whether any country passed (for a monitor with credentials: logged in)."""
    if logged_in:
        return None
    if not REJECTED.intersection(k for k in kinds if k is not None):
        return b
    failures = 1 if b is None else b.failures + 1
    retry_at = at + min(interval * 2**failures, cap)
    if b is None:
        return Backoff(failures, at, retry_at)
    return replace(b, failures=failures, retry_at=retry_at)


def logins(
    failures: int,
    retry_at: datetime | None,
    scheduled_at: datetime,
    countries: Sequence[str],
    interval: timedelta,
) -> list[str]:
    """The countries whose check of the round scheduled `scheduled_at` may log in, under a
    back-off of `failures` rounds until `retry_at` (None: no back-off), the monitor checked
    every `interval`: one, the next country each rejected round and each round since the
    retry was due, so a country whose check cannot reach the server (no verdict: the back-off
    neither ends nor grows) never keeps the others from logging in."""
    if retry_at is None:
        return list(countries)
    if scheduled_at < retry_at or not countries:
        return []
    since = int((scheduled_at - retry_at) / interval)
    return [countries[(failures + since) % len(countries)]]
