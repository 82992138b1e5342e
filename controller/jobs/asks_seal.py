"""What a job asks of the side checks, bound to the job (issue 78): the scheduler seals each
job's `sideChecks` with its id under the job ids' keys, personalised apart from them
(`asksSeal`, a MAC; `JobIds.asks`), the
agent echoes both in the result (`asks`, `asksSeal`), and the ingester believes the echo only
when the seal is the MAC of that job id and those asks under one of the keys (`opens`). So an
agent can neither add a side check nor a name to what its round asked: it would need the key.

The MAC is over the asks as JSON with every object's keys sorted (`canonical`), computed from
the JSON value itself, so the controller's typed asks and the agent's echo, decoded as plain
JSON values, give the same bytes."""

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Final

import msgspec

# BLAKE2b's personalisation: the same keys as the job ids', never the same MAC.
_PERSON: Final = b"mailprobe asks"
_encode = msgspec.json.Encoder(order="sorted").encode


def canonical(asks: Mapping[str, object]) -> bytes:
    """`asks` as JSON, every object's keys sorted: the same bytes for a job's typed asks and for
    an agent's echo of them decoded as JSON values."""
    return _encode(msgspec.json.decode(msgspec.json.encode(asks)))


class AskSeals:
    """Seals and opens the asks of jobs: BLAKE2b keyed MACs, one key per SECRETS_KEY."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(not 16 <= len(k) <= 64 for k in keys):
            raise ValueError("AskSeals needs keys of 16 to 64 bytes")
        self._keys = [hashlib.blake2b(key=k, digest_size=16, person=_PERSON) for k in keys]

    def seal(self, job_id: str, asks: Mapping[str, object]) -> str:
        """The seal of `asks` for the job `job_id`, under the newest key."""
        return self._mac(self._keys[0], job_id, canonical(asks))

    def opens(self, job_id: str, asks: Mapping[str, object], seal: str) -> bool:
        """Whether `seal` is the seal of `asks` for `job_id` under any key (constant time)."""
        body = canonical(asks)
        return any(
            hmac.compare_digest(self._mac(key, job_id, body).encode(), seal.encode())
            for key in self._keys
        )

    @staticmethod
    def _mac(key: "hashlib.blake2b", job_id: str, body: bytes) -> str:
        mac = key.copy()
        mac.update(job_id.encode() + b"\0" + body)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")
