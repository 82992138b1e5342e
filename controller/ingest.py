"""The ingester: `RESULTS` → `check_results`, in batches, acked only after the commit.

A message that does not decode is logged and terminated (JetStream stops redelivering it; it
stays in the stream, which keeps days of history, so nothing is lost). A batch whose commit fails
is not acked and comes back after a short delay.
"""

import asyncio
import contextlib
from datetime import timedelta

import asyncpg
import msgspec
import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from controller.db import results
from controller.db.results import ResultRow
from shared.messages import decode_result
from shared.streams import INGEST_CONSUMER, ingest_consumer_config
from shared.subjects import RESULTS_STREAM, RESULTS_SUBJECTS
from shared.timefmt import utcnow

log = structlog.get_logger(__name__)

BATCH = 500
FETCH_TIMEOUT_S = 0.5
RETRY_DELAY_S = 1.0
PARTITION_EVERY_S = 3600.0


class Ingester:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        *,
        batch: int = BATCH,
        durable: str = INGEST_CONSUMER,
        subject: str = RESULTS_SUBJECTS,
    ) -> None:
        """`durable` and `subject` name the consumer and what it reads (all results by default)."""
        self._pool = pool
        self._js = js
        self._batch = batch
        self.durable = durable
        self._subject = subject
        self._sub: JetStreamContext.PullSubscription | None = None

    async def _subscription(self) -> JetStreamContext.PullSubscription:
        if self._sub is None:
            config = ingest_consumer_config()
            config.durable_name = self.durable
            self._sub = await self._js.pull_subscribe(
                self._subject, durable=self.durable, stream=RESULTS_STREAM, config=config
            )
        return self._sub

    async def close(self) -> None:
        """Unsubscribe; needed before draining the connection, which otherwise waits for late
        pull-status messages nobody fetches anymore."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest until `stop` is set; errors are logged and retried, never fatal."""
        log.info("ingester started", batch=self._batch)
        while not stop.is_set():
            try:
                await self.step(FETCH_TIMEOUT_S)
            except Exception:
                log.exception("ingest step failed; retrying")
                await asyncio.sleep(RETRY_DELAY_S)

    async def burst(self, timeout_s: float = 0.2) -> int:
        """Drain what is waiting and return the number of results newly stored (tests, tools)."""
        stored = 0
        while (count := await self.step(timeout_s)) is not None:
            stored += count
        return stored

    async def step(self, timeout_s: float) -> int | None:
        """Fetch one batch and store it; None when nothing came within `timeout_s`."""
        sub = await self._subscription()
        try:
            msgs = await sub.fetch(self._batch, timeout=timeout_s)
        except (NatsTimeoutError, TimeoutError):
            return None
        return await self.handle(msgs)

    async def handle(self, msgs: list[Msg]) -> int:
        rows: list[ResultRow] = []
        good: list[Msg] = []
        for msg in msgs:
            row = _decode(msg)
            if row is None:
                await msg.term()
                continue
            rows.append(row)
            good.append(msg)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                stored = await results.store(conn, rows)
        except (asyncpg.PostgresError, OSError) as exc:
            log.error("storing results failed; redelivering", count=len(rows), error=str(exc))
            for msg in good:
                await msg.nak(delay=RETRY_DELAY_S)
            return 0
        for msg in good:
            await msg.ack()
        if good:
            log.debug("results stored", received=len(good), stored=stored)
        return stored


def _decode(msg: Msg) -> ResultRow | None:
    try:
        return results.from_wire(decode_result(msg.data))
    except (msgspec.DecodeError, ValueError) as exc:
        meta = msg.metadata
        log.error(
            "malformed result moved aside",
            subject=msg.subject,
            stream_seq=meta.sequence.stream,
            error=str(exc)[:300],
        )
        return None


async def keep_partitions(pool: asyncpg.Pool, stop: asyncio.Event) -> None:
    """Daily partitions of `check_results` from yesterday to three days ahead, checked hourly."""
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                created = await results.ensure_partitions(conn, utcnow() - timedelta(days=1))
            if created:
                log.info("result partitions created", count=created)
        except (asyncpg.PostgresError, OSError) as exc:
            log.error("creating result partitions failed", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PARTITION_EVERY_S)
