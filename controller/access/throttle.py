"""Login throttling rules, apart from where their counts live (controller.access.throttle_store
keeps them in
PostgreSQL, so every replica applies the same ones).

Two counts gate each attempt of `POST /api/auth/login` and `POST /api/v3/access-tokens`:

- the client address: at most `address_per_minute` attempts that did not succeed per minute
  (one address guessing across many accounts);
- the account: `account_failures` failures, then a lockout of `lockout`, doubling with each
  further failure up to `lockout_max` (many addresses guessing one account).

An attempt is counted before its password is checked (so a burst of concurrent guesses cannot
all pass before the first failure is recorded; the attempt that reaches the limit locks the account
at once), uncounted when it succeeds, and a lockout it began restarts when its check fails.

Lockouts must not let an attacker keep a user out: the account's count is kept apart for each
address the user logged in from in the last `KNOWN_ADDRESS_DAYS` days. Guesses from anywhere else
lock only the strangers out; the user, from a known address, still gets in (and is counted by the
same rules there). The cap bounds every lockout, and a user's bearer tokens keep working.
"""

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

ADDRESS_WINDOW = timedelta(minutes=1)
# An account's failures are forgotten a day after its last lockout ends: waiting out one lockout
# does not buy an attacker a fresh set of free guesses.
ACCOUNT_MEMORY = timedelta(days=1)
KNOWN_ADDRESS_DAYS = 30


@dataclass(frozen=True)
class Policy:
    address_per_minute: int
    account_failures: int
    lockout: timedelta
    lockout_max: timedelta


@dataclass(frozen=True)
class Count:
    """One key's state: attempts that did not succeed, refused until `locked_until`, all of it
    forgotten at `expires_at`."""

    attempts: int
    locked_until: datetime | None
    expires_at: datetime


@dataclass(frozen=True)
class Verdict:
    count: Count  # what to store
    retry_after: timedelta | None  # None: the attempt may go ahead


def _live(count: Count | None, now: datetime) -> Count | None:
    return count if count is not None and count.expires_at > now else None


def address_attempt(count: Count | None, now: datetime, policy: Policy) -> Verdict:
    """A fixed window of a minute from the window's first attempt."""
    live = _live(count, now) or Count(0, None, now + ADDRESS_WINDOW)
    if live.attempts >= policy.address_per_minute:
        return Verdict(live, live.expires_at - now)
    return Verdict(Count(live.attempts + 1, None, live.expires_at), None)


def account_attempt(count: Count | None, now: datetime, policy: Policy) -> Verdict:
    """Refused while locked (without counting: hammering a locked account does not lengthen its
    lockout); else counted, and the attempt that reaches the limit locks what follows."""
    live = _live(count, now) or Count(0, None, now)
    if live.locked_until is not None and live.locked_until > now:
        return Verdict(live, live.locked_until - now)
    attempts = live.attempts + 1
    locked_until = now + lockout(attempts, policy) if attempts >= policy.account_failures else None
    return Verdict(Count(attempts, locked_until, (locked_until or now) + ACCOUNT_MEMORY), None)


def account_failure(count: Count, now: datetime, policy: Policy) -> Count:
    """The attempt's password check failed (a while after the attempt was counted): a lockout
    it began runs from now, so the client is told the whole of it."""
    if count.locked_until is None:
        return count
    locked_until = now + lockout(count.attempts, policy)
    return Count(count.attempts, locked_until, locked_until + ACCOUNT_MEMORY)


def lockout(attempts: int, policy: Policy) -> timedelta:
    """The lockout after the `attempts`-th failure (from `account_failures` on)."""
    doublings = min(attempts - policy.account_failures, 40)  # 2**40 seconds: past any cap
    return min(policy.lockout_max, policy.lockout * (1 << doublings))


def retry_after_seconds(wait: timedelta) -> int:
    """`Retry-After` in whole seconds, rounded up: a client that waits that long is let in."""
    return max(1, math.ceil(wait.total_seconds()))


class Keys:
    """The stored keys: HMACs of the address or e-mail, never the text typed (people type their
    password into the e-mail field too). Replicas share the key, derived from SECRETS_KEY."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, *parts: str) -> bytes:
        return hmac.digest(self._secret, "\0".join(parts).encode(), hashlib.sha256)

    def address(self, address: str) -> bytes:
        return self._mac("address", address)

    def account(self, email: str, known_address: str | None) -> bytes:
        """The account's count; a known address of the user has one of its own."""
        email = email.strip().lower()
        if known_address is None:
            return self._mac("account", email)
        return self._mac("account-from", email, known_address)
