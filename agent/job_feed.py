"""The job feed: the country's jobs consumer (`jobs-CC`) this agent pulls from, one pull request
open at a time (shared.pulling), and the jobs it brought.

The controller creates and configures every country's consumer; the agent binds to it, waiting
and backing off while JOBS or `jobs-CC` is missing. A pull request asks for the agent's room in
messages, at the jobs per message seen lately (a bundle carries many: `messages_to_ask`,
`per_message`). A connection closed for good stops the agent. A stopping agent waits for its
open pull request's own status, then hands back every job that arrived after its last take.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from agent.backoff import Backoff
from agent.bundles import Delivery
from agent.settle import NATS_ERRORS, settle
from shared.clock import Clock
from shared.loop import run_every
from shared.pulling import PullError, StandingPull
from shared.streams import (
    JOBS_ACK_WAIT_S,
    JOBS_MAX_DELIVER,
    jobs_consumer_config,
    jobs_consumer_name,
)
from shared.subjects import JOBS_STREAM

log = structlog.get_logger(__name__)
# A stopping agent waits for its open pull request's own status (stop_pulling); this long past
# the request's expiry and shared.pulling's grace it stops waiting regardless.
LAST_REQUEST_WAIT_MAX_S = 2.0
# What the controller gives `jobs-CC`: a killed agent's job goes to another agent after this,
# well inside a job's life (scheduledAt + interval, often 60 s). Longer checks keep their job
# with `in_progress` every ack_wait / 3.
DEFAULT_ACK_WAIT_S = JOBS_ACK_WAIT_S
# How much a take with fewer jobs per message than the average moves it down (`per_message`).
JOBS_PER_MESSAGE_WEIGHT = 0.3


@dataclass(frozen=True, slots=True)
class Pulling:
    """How the feed pulls: `ack_wait`, the consumer's the agent wants; `fetch_timeout`, how
    long a pull request lasts unless jobs fill it first; consumer or fetch failures wait from
    `retry_delay`, doubling, to `retry_delay_max`."""

    ack_wait: float = DEFAULT_ACK_WAIT_S
    fetch_timeout: float = 1.0
    retry_delay: float = 0.5
    retry_delay_max: float = 30.0


class JobFeed:
    """Country `country`'s jobs for this agent, over `nc`, as `pulling` says; `stopping` set
    stops every wait (and is set when the connection is closed for good)."""

    def __init__(self, nc: NATS, country: str, stopping: asyncio.Event, pulling: Pulling) -> None:
        self.country = country
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._stopping = stopping
        self.ack_wait = pulling.ack_wait
        self._fetch_timeout = pulling.fetch_timeout
        self._backoff = Backoff(pulling.retry_delay, pulling.retry_delay_max)
        self._jobs_per_message = 1.0  # lately, so that a pull request asks for its room
        self._pull = StandingPull(
            nc, JOBS_STREAM, jobs_consumer_name(country), expires_s=pulling.fetch_timeout
        )

    async def within_room(
        self,
        msgs: list[Msg],
        carried: dict[int, list[Delivery]],
        room: Callable[[], int],
        back_whole: Callable[[Msg, list[Delivery]], Awaitable[bool]],
    ) -> list[Delivery]:
        """The jobs of the fetched messages (`carried`, by the id of the message) this agent
        keeps (`within_room`, with `room()` jobs it may hold more); the other messages go
        straight back, as does a bundle `back_whole` hands back."""
        if not msgs:
            return []
        sizes = [len(carried[id(msg)]) for msg in msgs]
        self.saw(sizes)
        free = room()
        kept, back = within_room(msgs, free, sizes)
        for msg in back:
            await settle(msg.nak)
        if back:
            log.warning(
                "jobs_beyond_room_handed_back",
                fetched=sum(sizes),
                room=free,
                handed_back=sum(len(carried[id(msg)]) for msg in back),
            )
        jobs: list[Delivery] = []
        for msg in kept:
            if not await back_whole(msg, carried[id(msg)]):
                jobs += carried[id(msg)]
        return jobs

    async def keep_in_progress(
        self, held_since: Callable[[float], list[Delivery]], clock: Clock
    ) -> None:
        """Every ack_wait / 3, tell JetStream that the jobs held for longer than that
        (`held_since(cutoff)`) are still being worked on, so that none is redelivered while
        this agent has it: one task for all jobs."""
        period = self.ack_wait / 3

        async def one_pass() -> None:
            for msg in held_since(clock.monotonic() - period):  # a copy: checks end meanwhile
                await settle(msg.in_progress)

        await run_every(period, one_pass, name="in-progress keeper")

    def saw(self, sizes: list[int]) -> None:
        """A take brought messages of `sizes` jobs each: the jobs per message to ask by."""
        if sizes:
            self._jobs_per_message = per_message(self._jobs_per_message, sum(sizes) / len(sizes))

    async def subscribe(self) -> bool:
        """Whether the country's consumer is there to pull from; wait, backing off, while JOBS
        or `jobs-CC` is missing (the controller creates both at start). False: stopped first."""
        while not self._stopping.is_set():
            wait = self._backoff.next()
            try:
                if await self.ensure_consumer():
                    self._backoff.reset()
                    return True
            except NotFoundError:
                log.warning(
                    "jobs_stream_missing",
                    stream=JOBS_STREAM,
                    retry_in_s=round(wait, 3),
                    hint="the controller creates it at start",
                )
            except NATS_ERRORS as exc:
                log.warning("jobs_consumer_failed", error=repr(exc), retry_in_s=round(wait, 3))
            await self.sleep(wait)
        return False

    async def ensure_consumer(self) -> bool:
        """Whether `jobs-CC` is there to bind to; NotFoundError while JOBS itself is missing.

        The controller creates and configures every country's consumer. The agent asks
        JetStream itself only when its consumer is missing or has another ack_wait: granted
        on a server without deploy/'s permissions (development, tests), refused with them
        (a `Permissions Violation`, then a timeout), since a consumer's config decides where
        its jobs, secrets included, are delivered."""
        name = jobs_consumer_name(self.country)
        try:
            info = await self._js.consumer_info(JOBS_STREAM, name)
        except NotFoundError as exc:
            if exc.err_code != 10014:  # consumer not found; the stream's own 404 is 10059
                raise
            info = None
        if info is not None and info.config.ack_wait == self.ack_wait:
            return True
        try:
            await self._js.add_consumer(
                JOBS_STREAM, jobs_consumer_config(self.country, self.ack_wait)
            )
        except NATS_ERRORS as exc:
            if info is None:
                log.warning(
                    "jobs_consumer_missing",
                    consumer=name,
                    error=repr(exc),
                    hint="the controller creates every country's consumer at start",
                )
                return False
            log.warning(
                "jobs_consumer_kept",
                consumer=name,
                ack_wait_s=info.config.ack_wait,
                wanted_ack_wait_s=self.ack_wait,
                error=repr(exc),
            )
        return True

    def asking(self, free: int) -> int:
        """How many messages a pull request asks for: `free` jobs' worth, at the jobs per
        message seen lately (a bundle carries many)."""
        return messages_to_ask(free, self._jobs_per_message)

    async def fetch(self, batch: int) -> list[Msg]:
        """What the pull request brought (shared.pulling), waiting up to `fetch_timeout` for
        the first job; a request, when one is sent, asks for `batch`. A connection closed for
        good (nats-py gave up reconnecting, or its owner closed it) stops the agent."""
        if self._nc.is_closed:
            log.error("nats_connection_closed")
            self._stopping.set()
            return []
        try:
            msgs = await self._pull.take(batch, self._fetch_timeout)
        except NATS_ERRORS as exc:
            wait = self._backoff.next()
            log.warning("fetch_failed", error=repr(exc), retry_in_s=round(wait, 3))
            await self.sleep(wait)
            if isinstance(exc, APIError | PullError):  # e.g. the consumer was deleted
                with contextlib.suppress(*NATS_ERRORS):
                    await self.ensure_consumer()
            return []
        self._backoff.reset()
        return msgs

    async def stop_pulling(self, *, wait: bool = True) -> None:
        """Leave the consumer and hand back (nak) every job that arrived after the last take.
        With `wait`, first stay until the server has ended the open pull request (its own
        status): a job delivered to it after this agent left would reach no one and wait the
        ack wait before another agent of the country got it."""
        try:
            if wait:
                await self._pull.end(LAST_REQUEST_WAIT_MAX_S)
            arrived = await self._pull.close()
        except NATS_ERRORS as exc:
            log.warning("pull_close_failed", error=repr(exc))
            return
        for msg in arrived:
            await settle(msg.nak)
        if arrived:
            log.info("late_jobs_handed_back", handed_back=len(arrived))

    async def drained(self) -> bool:
        """Burst mode: nothing left to deliver and nothing delivered but unacked (to anyone)."""
        try:
            info = await self._js.consumer_info(JOBS_STREAM, jobs_consumer_name(self.country))
        except NATS_ERRORS:
            return False
        # A message sitting in our own inbox counts as ack-pending too.
        return not info.num_pending and not info.num_ack_pending

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up early on stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def messages_to_ask(free: int, jobs_per_message: float) -> int:
    """Messages for `free` jobs at `jobs_per_message`; at least one."""
    return max(1, int(free / jobs_per_message))


def per_message(average: float, seen: float) -> float:
    """The jobs per message to ask by after a take that brought `seen` on average: up to it at
    once (asking for more messages than there is room for brings jobs that go straight back),
    down slowly (asking for fewer only costs another pull request)."""
    return max(seen, average + (seen - average) * JOBS_PER_MESSAGE_WEIGHT)


def within_room(
    msgs: list[Msg], room: int, sizes: Sequence[int] | None = None
) -> tuple[list[Msg], list[Msg]]:
    """(kept, handed back): an agent holds at most capacity + lookahead jobs running or waiting
    to run (besides those whose results wait in its hand-off, agent.handoff), so of what a fetch
    brought it keeps messages, in arrival order, while what it keeps holds fewer than `room`
    jobs (a message of `sizes[i]` jobs, one each by default: a bundle kept whole may pass room
    by less than its size), and hands the rest back (nak) for any agent of the country. A take
    may bring more than it asked for: after a reconnect a request the server still held may
    deliver beside the new one (shared.pulling). A hand-back spends one of a message's
    deliveries, so one on its last is kept: handing it back would drop it."""
    kept, back = list[Msg](), list[Msg]()
    held = 0
    for i, msg in enumerate(msgs):
        if held < room or msg.metadata.num_delivered >= JOBS_MAX_DELIVER:
            kept.append(msg)
            held += 1 if sizes is None else sizes[i]
        else:
            back.append(msg)
    return kept, back
