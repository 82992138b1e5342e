"""The seal of a job's side check asks (controller/jobs/asks_seal.py, issue 78): it opens for
the asks as an agent echoes them (decoded as plain JSON, keys in any order), and for no other
job id, no changed ask, no other key; a rotated SECRETS_KEY still opens jobs sent before."""

import base64
import hashlib
import json

import msgspec
import pytest

from controller.jobs.asks_seal import AskSeals, canonical
from controller.jobs.rules import JobIds
from shared.sidechecks.blocklists import BlocklistAsk, BlocklistZone

KEY_A, KEY_B = b"a" * 32, b"b" * 32
ASKS = {
    "blocklists": BlocklistAsk(
        zones=[BlocklistZone(zone="zen.spamhaus.org", tests=["127.0.0.2"])], ips=["192.0.2.1"]
    ),
    "reverse_dns": {"canaries": None},
}


def echoed(asks: object) -> dict[str, object]:
    """The asks as an agent decodes them from the job and sends them back: plain JSON values,
    every object's keys reversed (JSON objects have no order)."""

    def reverse(v: object) -> object:
        if isinstance(v, dict):
            return {k: reverse(v[k]) for k in reversed(list(v))}
        if isinstance(v, list):
            return [reverse(x) for x in v]
        return v

    out = reverse(json.loads(msgspec.json.encode(asks)))
    assert isinstance(out, dict)
    return out


def test_the_seal_opens_for_the_echoed_asks_of_its_job_only() -> None:
    seals = AskSeals([KEY_A])
    seal = seals.seal("job-1", ASKS)
    assert canonical(ASKS) == canonical(echoed(ASKS))
    assert seals.opens("job-1", echoed(ASKS), seal)
    assert not seals.opens("job-2", echoed(ASKS), seal)
    changed = echoed(ASKS)
    changed["blocklists"]["ips"].append("203.0.113.7")  # type: ignore[index]
    assert not seals.opens("job-1", changed, seal)
    assert not seals.opens("job-1", {}, seal)
    assert not seals.opens("job-1", echoed(ASKS), seal[:-1] + ("A" if seal[-1] != "A" else "B"))
    assert not AskSeals([KEY_B]).opens("job-1", echoed(ASKS), seal)


def test_a_rotated_key_still_opens_what_the_older_one_sealed() -> None:
    seal = AskSeals([KEY_A]).seal("job-1", ASKS)
    assert AskSeals([KEY_B, KEY_A]).opens("job-1", echoed(ASKS), seal)


def test_job_ids_seal_with_their_keys_personalised_apart() -> None:
    """`JobIds.asks` seals under the job ids' keys, but never the MAC those keys make
    unpersonalised (the job ids' own BLAKE2b) of the same bytes."""
    ids = JobIds([KEY_A])
    seal = ids.asks.seal("job-1", {})
    assert seal == AskSeals([KEY_A]).seal("job-1", {})
    plain = hashlib.blake2b(b"job-1\0" + canonical({}), key=KEY_A, digest_size=16).digest()
    assert seal != base64.urlsafe_b64encode(plain).decode().rstrip("=")


@pytest.mark.parametrize("key", [b"", b"short", b"x" * 65])
def test_keys_of_the_wrong_size_are_refused(key: bytes) -> None:
    with pytest.raises(ValueError):
        AskSeals([key])
