"""The login throttling rules (controller.access.throttle) as data, and the bounded password pool
(controller.access.credentials.PasswordPool) on its own."""

import asyncio
from datetime import UTC, datetime, timedelta

import argon2
import pytest

from controller.access import credentials as security
from controller.access import throttle
from controller.access.credentials import PasswordPool, PasswordsBusy, hash_password
from controller.access.throttle import Count, Keys, Policy

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
S = timedelta(seconds=1)
POLICY = Policy(address_per_minute=3, account_failures=2, lockout=30 * S, lockout_max=100 * S)


def test_an_address_gets_its_allowance_per_window_then_waits_for_the_window() -> None:
    count = None
    for n in range(1, 4):
        verdict = throttle.address_attempt(count, NOW + n * S, POLICY)
        assert verdict.retry_after is None
        count = verdict.count
        assert count.attempts == n
    refused = throttle.address_attempt(count, NOW + 10 * S, POLICY)
    assert refused.retry_after == 51 * S  # the window opened at NOW + 1 s
    assert refused.count == count
    after = throttle.address_attempt(count, NOW + 61 * S, POLICY)
    assert after.retry_after is None and after.count.attempts == 1


@pytest.mark.parametrize(
    ("attempt", "locked_for"),
    [(1, None), (2, 30 * S), (3, 60 * S), (4, 100 * S), (9, 100 * S), (10_000, 100 * S)],
)
def test_the_account_locks_at_its_limit_doubling_to_the_cap(
    attempt: int, locked_for: timedelta | None
) -> None:
    count = Count(attempt - 1, None, NOW + timedelta(hours=1))
    verdict = throttle.account_attempt(count, NOW, POLICY)
    assert verdict.retry_after is None
    assert verdict.count.attempts == attempt
    assert verdict.count.locked_until == (None if locked_for is None else NOW + locked_for)


def test_attempts_on_a_locked_account_are_refused_without_counting() -> None:
    """Hammering a locked account does not make its lockout longer."""
    count = Count(2, NOW + 30 * S, NOW + timedelta(days=1))
    verdict = throttle.account_attempt(count, NOW + 10 * S, POLICY)
    assert verdict.retry_after == 20 * S
    assert verdict.count == count


def test_failures_are_forgotten_a_day_after_the_last_lockout() -> None:
    locked = throttle.account_attempt(Count(1, None, NOW + S), NOW, POLICY).count
    assert locked.expires_at == NOW + 30 * S + timedelta(days=1)
    fresh = throttle.account_attempt(locked, locked.expires_at, POLICY)
    assert fresh.count.attempts == 1 and fresh.count.locked_until is None


def test_a_failed_check_restarts_the_lockout_its_attempt_began() -> None:
    began = Count(3, NOW + 60 * S, NOW + 60 * S + timedelta(days=1))
    later = NOW + 2 * S
    assert throttle.account_failure(began, later, POLICY).locked_until == later + 60 * S
    unlocked = Count(1, None, NOW + timedelta(days=1))
    assert throttle.account_failure(unlocked, later, POLICY) == unlocked


@pytest.mark.parametrize(
    ("wait", "seconds"), [(S / 1000, 1), (S, 1), (S + S / 1000, 2), (30 * S, 30), (-S, 1)]
)
def test_retry_after_rounds_up_to_whole_seconds(wait: timedelta, seconds: int) -> None:
    assert throttle.retry_after_seconds(wait) == seconds


def test_keys_are_macs_apart_per_kind_and_known_address() -> None:
    keys = Keys(b"k" * 32)
    email = "Someone@Example.com "
    assert keys.account(email, None) == keys.account("someone@example.com", None)
    assert keys.account(email, "192.0.2.1") != keys.account(email, None)
    assert keys.account(email, "192.0.2.1") != keys.account(email, "192.0.2.2")
    assert keys.address("192.0.2.1") != keys.account("192.0.2.1", None)
    assert Keys(b"x" * 32).address("192.0.2.1") != keys.address("192.0.2.1")
    assert b"someone" not in keys.account(email, None)


# the password pool ----------------------------------------------------------------------------


async def test_the_pool_verifies_and_hashes_in_its_threads() -> None:
    pool = PasswordPool(workers=1, queue=0)
    try:
        stored = hash_password("right password")
        with pool.reserve() as hashing:
            assert await hashing.verify(stored, "right password") is True
        with pool.reserve() as hashing:
            assert await hashing.verify(stored, "wrong password") is False
        with pool.reserve() as hashing:
            assert await hashing.verify(None, "anything") is False  # unknown user: same work
        with pool.reserve() as hashing:
            fresh = await hashing.hash("another")
        assert fresh.startswith("$argon2id$") and pool.taken == 0
    finally:
        pool.close()


def test_an_unknown_email_costs_an_argon2_verify_of_the_same_parameters() -> None:
    """No probing for accounts by timing: an unknown e-mail's password is verified against a
    stand-in hash made with the very parameters of users' hashes (time, memory, lanes), so it
    costs the same argon2 work as a wrong password."""
    stand_in = argon2.extract_parameters(security._dummy_hash())
    assert stand_in == argon2.extract_parameters(hash_password("a user's password"))
    assert security.verify_password(None, "anything") is False
    assert security.verify_password("", "anything") is False


def test_a_hasher_of_other_parameters_makes_its_own_stand_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shipped stand-in is of the default parameters; a hasher of others (a later
    argon2-cffi's defaults) verifies unknown e-mails against a hash of its own cost."""
    monkeypatch.setattr(
        security, "_hasher", argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    security._dummy_hash.cache_clear()
    try:
        made = security._dummy_hash()
        assert made != security.STAND_IN
        assert argon2.extract_parameters(made) == argon2.extract_parameters(
            security.hash_password("a user's password")
        )
    finally:
        security._dummy_hash.cache_clear()


async def test_the_pool_makes_the_stand_in_hash_as_it_starts() -> None:
    """So the first login for an unknown e-mail does not take a hash longer than the others."""
    security._dummy_hash.cache_clear()
    pool = PasswordPool(workers=1, queue=0)
    try:
        for _ in range(500):
            if security._dummy_hash.cache_info().currsize:
                break
            await asyncio.sleep(0.02)
        assert security._dummy_hash.cache_info().currsize == 1
    finally:
        pool.close()


async def test_the_pool_refuses_past_its_threads_and_queue() -> None:
    pool = PasswordPool(workers=1, queue=1)
    try:
        with pool.reserve(), pool.reserve():
            with pytest.raises(PasswordsBusy), pool.reserve():
                pass
            assert pool.taken == 2
        assert pool.taken == 0
        with pool.reserve():  # free again
            pass
    finally:
        pool.close()


async def test_a_caller_that_stops_waiting_keeps_the_place_until_the_thread_is_done() -> None:
    """Otherwise cancelled requests would let more argon2 work run than the pool allows."""
    pool = PasswordPool(workers=1, queue=0)
    try:

        async def verify() -> bool:
            with pool.reserve() as hashing:
                return await hashing.verify(None, "x")

        task = asyncio.create_task(verify())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.taken == 1
        with pytest.raises(PasswordsBusy), pool.reserve():
            pass
        await pool.drained()  # the thread's work done, however long a loaded host takes
        assert pool.taken == 0
        with pool.reserve():
            assert pool.taken == 1
    finally:
        pool.close()
