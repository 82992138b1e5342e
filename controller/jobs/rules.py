"""A check job's id and how long it may live: pure, no I/O. The scheduler makes ids, the
ingester checks them (`JobIds.matches`), the packer keeps a seed per pack instead of the ids
it derives (`JobIds.seed`), the alert queue and the scheduler's expiry read `JOB_EXPIRY_MAX`.
"""

import hashlib
import hmac
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from controller.jobs.asks_seal import AskSeals
from controller.jobs.scheme import seeded_round
from controller.secrets.box import SecretBox
from shared.streams import JOBS_MAX_AGE_S
from shared.timefmt import utc_hour

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


_HOUR_MS: Final = 3_600_000


def _ms(at: datetime) -> int:
    """Milliseconds since the epoch, rounded down (`timedelta`'s fields: whole days, seconds
    within the day, microseconds within the second, each exact, in integers)."""
    since = at - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1000 + since.microseconds // 1000


JOB_ID_PURPOSE: Final = "mailprobe job ids"
# A job no agent took for this long is gone from JOBS (its max age), so it never runs later.
JOB_EXPIRY_MAX: Final = timedelta(seconds=JOBS_MAX_AGE_S - 60)
# The UUID version nibble of a seeded id (RFC 9562's version 8, "custom"); keyed ids are shaped
# as version 4.
SEEDED_VERSION: Final = 8
KEYED_VERSION: Final = 4


def _never() -> datetime | None:
    return None


def _uuid(digest: bytes, version: int, variant: int) -> str:
    """The first 16 bytes of `digest` shaped as a UUID of `version`, its variant digit's top
    bits 10 (RFC 9562) and the rest of it `variant`'s."""
    h = bytearray(digest[:16])
    h[6] = h[6] & 0x0F | version << 4
    h[8] = h[8] & variant | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def seeded_id(seed: bytes, scheduled_at: datetime) -> str:
    """A scheduled round's id from the seed of its UTC hour: the first 16 bytes of
    SHA-256(seed || its ms after the hour, 4 bytes big-endian), its version digit and variant
    digit made 8 (a version 8 UUID, 120 bits of the hash). PostgreSQL computes the same from a
    pack's seed and line of times (`result_seeded_job`, migration 0122), so a pack keeps the
    seed instead of the ids."""
    ms = _ms(scheduled_at) % _HOUR_MS  # after its UTC hour (an epoch hour: no leap seconds)
    digest = hashlib.sha256(seed + ms.to_bytes(4, "big")).digest()
    return _uuid(digest, SEEDED_VERSION, 0x0F)


def is_seeded(job_id: str) -> bool:
    """Whether `job_id` is shaped as a seeded id (its version digit)."""
    return job_id[14:15] == str(SEEDED_VERSION)


class JobIds:
    """Job ids: the same round from the same country always gets the same id on every replica
    and after a restart, so `Nats-Msg-Id` = job id makes a repeated publish a no-op; a triggered
    round is marked so it never equals a scheduled one.

    Two schemes, both keyed with a key derived from SECRETS_KEY and shaped as a UUID (a valid
    subject token):

    - keyed (version 4): BLAKE2b, a MAC, over (monitor, country, scheduled ms, scheduled or
      triggered). Triggered rounds always; scheduled ones before `seeded_from()` (or while it
      is None).
    - seeded (version 8), scheduled rounds at or after `seeded_from()` (the database-wide
      fact every process reads, controller/jobs/scheme.py `seeded_round`): SHA-256 of the round's
      seed and its ms after its UTC hour, the seed a MAC (BLAKE2b, 16 bytes) over (monitor,
      country, UTC hour). A pack keeps the seed (16 bytes an hour) and PostgreSQL recomputes
      its ids.

    Either way an agent cannot compute another round's id: it would need the key, or the seed
    of that monitor, country and hour, which no job carries (an id does not give its seed away:
    SHA-256 is one-way). So it can neither pre-empt another country's result through the
    stream's duplicate window nor make up a round that was never sent to it (`matches`, checked
    by the ingester, which accepts both schemes under every key).
    """

    def __init__(
        self, keys: Sequence[bytes], seeded_from: Callable[[], datetime | None] = _never
    ) -> None:
        if not keys or any(not 16 <= len(k) <= 64 for k in keys):
            raise ValueError("JobIds needs keys of 16 to 64 bytes")
        # A BLAKE2b state per key with the key block taken in, copied for each MAC: the same
        # digest as hashing with `key=`, without compressing the key block every time.
        self._keys = [hashlib.blake2b(key=k, digest_size=16) for k in keys]
        self._seeded_from = seeded_from
        # The seals of jobs' side check asks, under the same keys (controller.jobs.asks_seal).
        self.asks = AskSeals(keys)

    @classmethod
    def from_box(
        cls, box: SecretBox, seeded_from: Callable[[], datetime | None] = _never
    ) -> "JobIds":
        return cls(box.subkeys(JOB_ID_PURPOSE), seeded_from)

    def make(
        self,
        monitor_public_id: str,
        country: str,
        scheduled_at: datetime,
        trigger: bool = False,
        seeded: bool | None = None,
    ) -> str:
        """The round's id; a scheduled round's seeded when `seeded` says so (None: as
        `seeded_round` says for its time and `seeded_from()` given at construction)."""
        if seeded is None:
            seeded = seeded_round(self._seeded_from(), scheduled_at)
        if not trigger and seeded:
            return seeded_id(self.seed(monitor_public_id, country, scheduled_at), scheduled_at)
        return self._id(self._keys[0], monitor_public_id, country, _ms(scheduled_at), trigger)

    def seeded_from(self) -> datetime | None:
        """When seeded ids start (None: not at all), as last read; a planner reads it once a
        round and gives `seeded_round`'s answer to `make` for each of its ids, so they are all
        of one scheme even when it moves meanwhile."""
        return self._seeded_from()

    def seed(self, monitor_public_id: str, country: str, at: datetime) -> bytes:
        """The seed of the scheduled rounds of that monitor and country in the UTC hour of `at`
        (under the newest key)."""
        return self._seed(self._keys[0], monitor_public_id, country, utc_hour(at))

    def matches(
        self, job_id: str, monitor_public_id: str, country: str, scheduled_at: datetime
    ) -> bool:
        """Whether `job_id` is the id of that round (scheduled or triggered) under either
        scheme and any key. The version digit says the scheme (it is no secret): one hash or
        two per key, the ids made one at a time until one is `job_id`, each compared in
        constant time, as a MAC's check."""
        given = job_id.encode()
        if is_seeded(job_id):
            hour = utc_hour(scheduled_at)
            return any(
                hmac.compare_digest(
                    seeded_id(
                        self._seed(key, monitor_public_id, country, hour), scheduled_at
                    ).encode(),
                    given,
                )
                for key in self._keys
            )
        ms = _ms(scheduled_at)
        return any(
            hmac.compare_digest(
                self._id(key, monitor_public_id, country, ms, trigger).encode(), given
            )
            for key in self._keys
            for trigger in (False, True)
        )

    @staticmethod
    def _id(
        key: "hashlib.blake2b", monitor_public_id: str, country: str, ms: int, trigger: bool
    ) -> str:
        mac = key.copy()
        mac.update(f"{monitor_public_id}|{country}|{ms}|{'t' if trigger else 's'}".encode())
        return _uuid(mac.digest(), KEYED_VERSION, 0x3F)

    @staticmethod
    def _seed(
        key: "hashlib.blake2b", monitor_public_id: str, country: str, hour: datetime
    ) -> bytes:
        # `h`: a name no keyed id has (those end in `s` or `t`), so a seed is never an id.
        mac = key.copy()
        mac.update(f"{monitor_public_id}|{country}|{_ms(hour)}|h".encode())
        return mac.digest()
