"""Passwords (argon2) and bearer tokens (random, stored only as SHA-256 digests).

The API hashes and verifies passwords through a `PasswordPool`: a few threads off the event loop
(argon2-cffi releases the GIL while it works, so the loop, and the scheduler, ingester and alerter
on it, keep running), and a bounded number of callers waiting for them; past that the caller is
told at once (`PasswordsBusy`) instead of queueing without end. The CLI hashes synchronously.
"""

import asyncio
import functools
import hashlib
import os
import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.guards import BrokenInvariant

_hasher = PasswordHasher()


# The stand-in's hash, of a random password thrown away. A known password would not matter
# either: a missing hash never verifies (`verify_password`).
STAND_IN = (
    "$argon2id$v=19$m=65536,t=3,p=4$vtG09cVdo2DOeFsmLTWEhw"
    "$7J8ryiccIt9QvFM1QyMsPBxbIFJtiKPuEbN1xR/boJk"
)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the e-mail is unknown (or its hash empty), so a login takes as long
    either way: `STAND_IN` when the hasher's parameters (time, memory, lanes) are its own, else
    one made with them, once per process when first needed (the API's `PasswordPool` asks for
    it as it starts, so no login waits for it)."""
    if not _hasher.check_needs_rehash(STAND_IN):
        return STAND_IN
    return _hasher.hash(secrets.token_urlsafe(32))


TOKEN_PREFIX = "mp_"
T = TypeVar("T")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> tuple[str, bytes]:
    """A fresh bearer token and the digest to store."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# A nice value's CPU weight against the event loop's (nice 0: 1024) is 110 at 10: when the cores
# are short the loop gets about nine tenths of a core against one password thread. At 19 (weight
# 15) a password thread also loses to every other process of a busy host: a login took 6.8 s
# there against 1.8 s at 10 and 0.4 s at 0 (2 cores, load average 12).
PASSWORD_THREAD_NICE = 10


def _yield_to_the_loop() -> None:
    """Run this password thread (and the threads argon2 starts from it, which inherit it) at a
    lower CPU priority: when the cores are short, the event loop, and the scheduler, ingester and
    alerter on it, go first and a login waits instead. Linux keeps a nice value per thread."""
    if sys.platform == "linux":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PASSWORD_THREAD_NICE)


class PasswordsBusy(Exception):
    """Every password thread is taken and the queue is full: try again shortly."""


class PasswordPool:
    """`workers` threads for argon2; at most `queue` reservations wait for one."""

    def __init__(self, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(
            workers, thread_name_prefix="argon2", initializer=_yield_to_the_loop
        )
        self._capacity = workers + queue
        self._taken = 0
        self._idle = asyncio.Event()
        self._executor.submit(_dummy_hash)

    @property
    def taken(self) -> int:
        return self._taken

    @contextmanager
    def reserve(self) -> Iterator["Reservation"]:
        """A place for one hash or verification; raises PasswordsBusy when none is free. The place
        is held until the work is done, even when the caller stops waiting for it."""
        if self._taken >= self._capacity:
            raise PasswordsBusy
        self._taken += 1
        reservation = Reservation(self._executor)
        try:
            yield reservation
        finally:
            reservation.when_done(self._release)

    def _release(self) -> None:
        self._taken -= 1
        if not self._taken:
            self._idle.set()

    async def drained(self) -> None:
        """Return once every place is free, the work of callers that stopped waiting included."""
        while self._taken:
            self._idle.clear()
            await self._idle.wait()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Reservation:
    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._work: asyncio.Future[Any] | None = None

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """`verify_password` in a thread."""
        return await self._run(verify_password, password_hash, password)

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._work is not None:
            raise BrokenInvariant("credentials.Reservation._run: one piece of work per reservation")
        work = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        self._work = work
        # Shielded: a cancelled caller leaves the thread's work, and so the place, to finish.
        return await asyncio.shield(work)

    def when_done(self, release: Callable[[], None]) -> None:
        if self._work is None or self._work.done():
            release()
        else:
            self._work.add_done_callback(lambda _: release())
