"""The jobs a JOBS message carries, each settled on its own and the message once for them all.

A JOBS message is one job or a bundle of several (controller.scheduling.bundles). The worker
handles jobs, whatever carried them: a `Delivery` is a job with the means to settle it, either
the message itself or a `Part` of a bundle. A bundle's parts share the message: it is acked once
every part is settled (acked or termed), `term`ed when every part was, and `nak`ed when any part
was handed back (with the longest delay asked), so JetStream delivers the whole bundle again,
parts already done included: the controller bundles only jobs that may run twice. Every part's
`in_progress` keeps the one message held; one call a second reaches the server.
"""

from collections.abc import Callable
from typing import Literal, Protocol

import msgspec
from nats.aio.msg import Msg

from shared.clock import Clock
from shared.messages import bundle_parts

# A bundle's in_progress reaches the server at most this often, however many parts ask.
PROGRESS_EVERY_S = 1.0
Outcome = Literal["ack", "nak", "term"]


class Delivery(Protocol):
    """One job as delivered: its bytes and how to settle it (nats-py's Msg is one)."""

    @property
    def data(self) -> bytes: ...

    @property
    def subject(self) -> str: ...

    @property
    def metadata(self) -> Msg.Metadata: ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...

    async def term(self) -> None: ...

    async def in_progress(self) -> None: ...


class Bundle:
    """A JOBS message of `size` jobs, settled once all of them are."""

    def __init__(self, msg: Msg, size: int, monotonic: Callable[[], float]) -> None:
        """`monotonic`: the clock progress reports are spaced by."""
        self.msg = msg
        self._monotonic = monotonic
        self._open = size
        self._acked = 0
        self._nak: float | None = None  # the longest delay a handed-back part asked; 0: now
        self._progress_at = float("-inf")

    async def settled(self, outcome: Outcome, delay: float | None = None) -> None:
        if outcome == "nak":
            self._nak = max(self._nak or 0.0, delay or 0.0)
        elif outcome == "ack":
            self._acked += 1
        self._open -= 1
        if self._open:
            return
        if self._nak is not None:
            await self.msg.nak(self._nak or None)
        elif self._acked:
            await self.msg.ack()
        else:
            await self.msg.term()

    async def in_progress(self) -> None:
        now = self._monotonic()
        if now - self._progress_at >= PROGRESS_EVERY_S and self._open:
            self._progress_at = now
            await self.msg.in_progress()


class Part:
    """One job of a bundle; settling it a second time does nothing."""

    __slots__ = ("_bundle", "_done", "data")

    def __init__(self, bundle: Bundle, data: bytes) -> None:
        self._bundle = bundle
        self._done = False
        self.data = data

    @property
    def subject(self) -> str:
        return self._bundle.msg.subject

    @property
    def metadata(self) -> Msg.Metadata:
        return self._bundle.msg.metadata

    async def _settle(self, outcome: Outcome, delay: float | None = None) -> None:
        if not self._done:
            self._done = True
            await self._bundle.settled(outcome, delay)

    async def ack(self) -> None:
        await self._settle("ack")

    async def nak(self, delay: float | None = None) -> None:
        await self._settle("nak", delay)

    async def term(self) -> None:
        await self._settle("term")

    async def in_progress(self) -> None:
        if not self._done:
            await self._bundle.in_progress()


def jobs_of(msg: Msg, clock: Clock) -> list[Delivery]:
    """The jobs `msg` carries: itself when it is not a bundle (one job, or a message the
    worker rejects as no job), else a part per job (their progress reports spaced by `clock`).
    A bundle that is no JSON array, or an empty one, is the message itself: the worker rejects
    it as a malformed job."""
    try:
        parts = bundle_parts(msg.data)
    except msgspec.DecodeError:
        parts = None
    if not parts:
        return [msg]
    bundle = Bundle(msg, len(parts), clock.monotonic)
    return [Part(bundle, data) for data in parts]
