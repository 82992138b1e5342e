"""The scheduling grid, job ids and country picks: pure functions, no I/O.

A monitor with interval I seconds is due at every instant t (epoch milliseconds) with
t ≡ phase (mod I·1000). The phase comes from a hash of the monitor's public id, so monitors created
together still spread evenly over the interval, and every replica computes the same grid.
"""

import hashlib
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# uuid5 namespace of job ids; fixed forever, since ids must match across replicas and restarts.
JOB_NAMESPACE: Final = uuid.UUID("6f1c2a53-1d4e-5b7a-9f0e-3c2b8d7e6a10")


def _hash64(*parts: str) -> int:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _ms(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(milliseconds=1)


def _at(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def phase_ms(monitor_public_id: str, interval_s: int) -> int:
    """Offset of the monitor's grid inside its interval, in milliseconds."""
    return _hash64("phase", monitor_public_id) % (interval_s * 1000)


def next_due(phase: int, interval_s: int, after: datetime) -> datetime:
    """The first grid point strictly after `after`."""
    period = interval_s * 1000
    t = _ms(after)
    return _at(t + period - (t - phase) % period)


def last_due(phase: int, interval_s: int, at_or_before: datetime) -> datetime:
    """The latest grid point at or before `at_or_before`."""
    period = interval_s * 1000
    t = _ms(at_or_before)
    return _at(t - (t - phase) % period)


def round_times(
    phase: int, interval_s: int, due: datetime, now: datetime
) -> tuple[datetime, datetime]:
    """(scheduled time of the round to run now, next due time) for a monitor due at `due`.

    However long the controller was away, this is one round: the latest grid point that has
    passed (never earlier than `due`), then the first grid point after `now`.
    """
    scheduled = max(due, last_due(phase, interval_s, now))
    return scheduled, next_due(phase, interval_s, now)


def job_id(
    monitor_public_id: str, country: str, scheduled_at: datetime, trigger: bool = False
) -> str:
    """The same round from the same country always gets the same id (a uuid5, a valid subject
    token and `Nats-Msg-Id`); a triggered round is marked so it never equals a scheduled one."""
    name = f"{monitor_public_id}|{country}|{_ms(scheduled_at)}|{'t' if trigger else 's'}"
    return str(uuid.uuid5(JOB_NAMESPACE, name))


def pick_countries(monitor_public_id: str, live: Iterable[str], count: int) -> list[str]:
    """`count` of the live countries, stable per monitor (rendezvous hashing): a country that
    comes or goes moves only the monitors that ranked it among their top `count`."""
    ranked = sorted(live, key=lambda cc: (_hash64("country", monitor_public_id, cc), cc))
    return sorted(ranked[-count:] if count > 0 else [])
