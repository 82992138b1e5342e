"""ARRIVALS into PostgreSQL: the durable pull consumer `arrivals`, shared by the replicas that
run it, a batch at a time, each acked once its transaction committed. A message that is no
`Arrival`, or comes on another country's subject, is ended (`term`) with a log line, never
retried; a batch whose store failed goes back (`nak`) to be stored again. The monitors a
batch named are looked at by the heartbeat judge at once (`watch_store.wake`), in the
batch's transaction."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import asyncpg
import msgspec
import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from controller.arrivals.store import expire, keep
from controller.arrivals.watch_store import wake
from controller.db.pool import Conn
from shared.arrivals import Arrival, decode_arrival
from shared.clock import Clock
from shared.subjects import ARRIVALS_STREAM, arrivals_subject

log = structlog.get_logger(__name__)

# Told which monitors a batch brought new arrivals for, with "now", in its transaction.
Graded = Callable[[Conn, Sequence[int], datetime], Awaitable[None]]

CONSUMER = "arrivals"
BATCH = 100
ACK_WAIT_S = 30.0


# How often the arrivals older than the check history are deleted.
EXPIRE_EVERY_S = 3600.0


class ArrivalsIntake:
    """`keep_days`: how long an arrival is kept (RETENTION's check history); "now" for that
    and for `graded` comes from `clock`. `graded`: told in each batch's transaction which
    monitors had new arrivals (the senders' grading, controller.posture.senders)."""

    def __init__(
        self,
        js: JetStreamContext,
        pool: asyncpg.Pool,
        *,
        keep_days: float,
        clock: Clock,
        graded: Graded | None = None,
    ) -> None:
        self._js, self._pool = js, pool
        self._graded = graded
        self._keep = timedelta(days=keep_days)
        self._clock = clock
        self._sub: JetStreamContext.PullSubscription | None = None
        self._expired_at: float | None = None

    async def expire(self) -> int:
        """Delete the arrivals past their keep, a batch at a time; how many went."""
        gone = 0
        before = self._clock.now() - self._keep
        while True:
            async with self._pool.acquire() as conn:
                n = await expire(conn, before)
            gone += n
            if n == 0:
                return gone

    async def _pull(self) -> JetStreamContext.PullSubscription:
        if self._sub is None:
            await self._js.add_consumer(
                ARRIVALS_STREAM,
                ConsumerConfig(
                    durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S
                ),
            )
            self._sub = await self._js.pull_subscribe_bind(CONSUMER, ARRIVALS_STREAM)
        return self._sub

    async def step(self, timeout_s: float = 1.0) -> int:
        """One batch: fetched (waiting up to `timeout_s` for its first message), stored, the
        senders of its monitors graded (`graded`), acked; how many arrivals
        were new."""
        sub = await self._pull()
        try:
            msgs = await sub.fetch(BATCH, timeout=timeout_s)
        except (TimeoutError, NatsTimeout):
            return 0
        good: list[tuple[Msg, Arrival]] = []
        for msg in msgs:
            arrival = _decoded(msg)
            if arrival is None:
                await msg.term()
            else:
                good.append((msg, arrival))
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                new = await keep(conn, [a for _, a in good])
                await wake(conn, sorted({a.monitor_id for _, a in good}), self._clock.now())
                if self._graded is not None and new:
                    await self._graded(conn, new, self._clock.now())
        except Exception:
            for msg, _ in good:
                await msg.nak(delay=1.0)
            raise
        for msg, _ in good:
            await msg.ack()
        return len(new)

    async def run(self, stop: asyncio.Event) -> None:
        """Store arrivals until `stop`; a failure is logged and tried again a second later."""
        log.info("arrivals_intake_started")
        try:
            while not stop.is_set():
                try:
                    at = self._clock.monotonic()
                    if self._expired_at is None or at - self._expired_at >= EXPIRE_EVERY_S:
                        self._expired_at = at
                        await self.expire()
                    await self.step()
                except Exception as exc:  # NATS or PostgreSQL away: the batch went back
                    log.warning("arrivals_intake_failed", error=repr(exc)[:200])
                    self._sub = None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            with contextlib.suppress(Exception):
                await self.close()

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None


def _decoded(msg: Msg) -> Arrival | None:
    try:
        arrival = decode_arrival(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("arrival_malformed", subject=msg.subject, error=str(exc)[:200])
        return None
    try:
        expected = arrivals_subject(arrival.country, arrival.monitor_id)
    except ValueError:
        expected = ""
    if msg.subject != expected:
        log.warning("arrival_off_subject", subject=msg.subject)
        return None
    return arrival
