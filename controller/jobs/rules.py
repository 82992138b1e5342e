"""A check job's id and how long it may live: pure, no I/O. The scheduler makes ids, the
ingester checks them (`JobIds.matches`), the alert queue and the scheduler's expiry read
`JOB_EXPIRY_MAX`.
"""

import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from controller.secrets.box import SecretBox
from shared.streams import JOBS_MAX_AGE_S

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(milliseconds=1)


JOB_ID_PURPOSE: Final = "mailprobe job ids"
# A job no agent took for this long is gone from JOBS (its max age), so it never runs later.
JOB_EXPIRY_MAX: Final = timedelta(seconds=JOBS_MAX_AGE_S - 60)


class JobIds:
    """Job ids: the same round from the same country always gets the same id on every replica
    and after a restart, so `Nats-Msg-Id` = job id makes a repeated publish a no-op; a triggered
    round is marked so it never equals a scheduled one.

    An id is a keyed hash (BLAKE2b, a MAC, with a key derived from SECRETS_KEY, shaped as a UUID, a
    valid subject token): an agent cannot compute another country's ids, so it can neither
    pre-empt that country's result through the stream's duplicate window nor make up a round
    that was never sent to it (`matches`, checked by the ingester).
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(not 16 <= len(k) <= 64 for k in keys):
            raise ValueError("JobIds needs keys of 16 to 64 bytes")
        self._keys = list(keys)

    @classmethod
    def from_box(cls, box: SecretBox) -> "JobIds":
        return cls(box.subkeys(JOB_ID_PURPOSE))

    def make(
        self, monitor_public_id: str, country: str, scheduled_at: datetime, trigger: bool = False
    ) -> str:
        return self._id(self._keys[0], monitor_public_id, country, _ms(scheduled_at), trigger)

    def matches(
        self, job_id: str, monitor_public_id: str, country: str, scheduled_at: datetime
    ) -> bool:
        """Whether `job_id` is the id of that round (scheduled or triggered), under any key."""
        ms = _ms(scheduled_at)
        given = job_id.encode()
        for key in self._keys:
            for trigger in (False, True):
                made = self._id(key, monitor_public_id, country, ms, trigger).encode()
                if hmac.compare_digest(made, given):  # in constant time, as a MAC's check
                    return True
        return False

    @staticmethod
    def _id(key: bytes, monitor_public_id: str, country: str, ms: int, trigger: bool) -> str:
        name = f"{monitor_public_id}|{country}|{ms}|{'t' if trigger else 's'}"
        h = bytearray(hashlib.blake2b(name.encode(), key=key, digest_size=16).digest())
        h[6] = h[6] & 0x0F | 0x40  # shaped as a version 4 UUID (what str(uuid.UUID) gives)
        h[8] = h[8] & 0x3F | 0x80
        x = h.hex()
        return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
