"""The ingester: `RESULTS` → `check_results`, in batches, acked only after the commit.

A message that does not decode is logged and terminated (JetStream stops redelivering it; it
stays in the stream, which keeps days of history, so nothing is lost). A batch whose commit fails
is not acked and comes back after a short delay.

`run()` pipelines: one task pulls batches while up to `workers` others store earlier ones, each
in its own transaction. Concurrent batches are safe because every insert is idempotent on the
job id and `results.store` locks state rows in one fixed order; a batch that still fails (a
deadlock, a lost connection) is nak'ed and stored again later.
"""

import asyncio
import contextlib
import json
import time
from datetime import timedelta

import asyncpg
import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import JetStreamContext, api

from controller import metrics
from controller.db import results
from controller.db.results import ResultRow
from shared.messages import decode_result
from shared.streams import INGEST_CONSUMER, ingest_consumer_config
from shared.subjects import RESULTS_STREAM, RESULTS_SUBJECTS
from shared.timefmt import utcnow

log = structlog.get_logger(__name__)

BATCH = 1000
WORKERS = 3
FETCH_TIMEOUT_S = 0.5
RETRY_DELAY_S = 1.0
PARTITION_EVERY_S = 3600.0
# Statuses that end a pull request without an error (no messages; request expired, or other
# requests are waiting for what is pending); 100 is an idle heartbeat. Any other status (409
# consumer deleted, 503 no responders: the consumer or stream is gone) is an error.
_REQUEST_ENDED = frozenset({api.StatusCode.NO_MESSAGES, api.StatusCode.REQUEST_TIMEOUT})


class PullError(NatsError):
    """The server answered a pull request with an error status (e.g. the consumer is gone)."""


class Puller:
    """Pull requests on a durable consumer, answered on an inbox of our own.

    What `PullSubscription.fetch` does on the wire (batch, expires, no_wait), but the messages
    that have already arrived are taken from the inbox queue without an await each: nats-py's
    `fetch` spends two tasks and a `wait_for` per message, more CPU than storing the result.
    One request is outstanding at a time, so a status message always ends the current one.
    """

    def __init__(self, nc: NATS, js: JetStreamContext, stream: str, durable: str) -> None:
        self._nc = nc
        self._subject = f"{js._prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None

    async def fetch(self, batch: int, wait_s: float) -> list[Msg]:
        """Up to `batch` messages: what is there now, else the first that comes in `wait_s`."""
        if self._sub is None:
            self._sub = await self._nc.subscribe(self._inbox)
        queue: asyncio.Queue[Msg] = self._sub._pending_queue
        request = {"batch": batch, "expires": int(wait_s * 1e9), "no_wait": True}
        await self._nc.publish(self._subject, json.dumps(request).encode(), self._inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s + 0.1  # the server's 408 normally comes first
        msgs: list[Msg] = []
        while len(msgs) < batch:
            if queue.empty():
                try:
                    msg = await asyncio.wait_for(queue.get(), deadline - loop.time())
                except TimeoutError:
                    break
            else:
                msg = queue.get_nowait()
            self._sub._pending_size -= len(msg.data)
            status = msg.headers.get(api.Header.STATUS) if msg.headers else None
            if status is None:
                msgs.append(msg)
            elif status in _REQUEST_ENDED:
                break
            elif status != api.StatusCode.CONTROL_MESSAGE:
                description = msg.headers.get(api.Header.DESCRIPTION, "") if msg.headers else ""
                raise PullError(f"pull request failed: {status} {description}")
        return msgs

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()


class Ingester:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        *,
        batch: int = BATCH,
        workers: int = WORKERS,
        durable: str = INGEST_CONSUMER,
        subject: str = RESULTS_SUBJECTS,
    ) -> None:
        """`durable` and `subject` name the consumer and what it reads (all results by default);
        `workers` is how many batches `run()` stores at once."""
        self._pool = pool
        self._js = js
        self._batch = batch
        self._workers = workers
        self.durable = durable
        self._subject = subject
        self._puller: Puller | None = None

    async def _pull(self) -> Puller:
        """Create (or update) the durable consumer once, then pull from it."""
        if self._puller is None:
            config = ingest_consumer_config()
            config.durable_name = self.durable
            config.filter_subject = self._subject
            await self._js.add_consumer(RESULTS_STREAM, config)
            self._puller = Puller(self._js._nc, self._js, RESULTS_STREAM, self.durable)
        return self._puller

    async def close(self) -> None:
        """Unsubscribe; needed before draining the connection, which otherwise waits for late
        pull-status messages nobody fetches anymore."""
        if self._puller is not None:
            puller, self._puller = self._puller, None
            await puller.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest until `stop` is set; errors are logged and retried, never fatal."""
        log.info("ingester started", batch=self._batch, workers=self._workers)
        batches: asyncio.Queue[list[Msg] | None] = asyncio.Queue(self._workers)
        storers = [asyncio.create_task(self._store_batches(batches)) for _ in range(self._workers)]
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                started = loop.time()
                try:
                    msgs = await self.fetch(FETCH_TIMEOUT_S)
                except Exception:
                    log.exception("fetching results failed; retrying")
                    await self.close()  # a fresh inbox, and the consumer ensured again
                    await asyncio.sleep(RETRY_DELAY_S)
                    continue
                if msgs:
                    await batches.put(msgs)
                elif loop.time() - started < FETCH_TIMEOUT_S / 2:
                    await asyncio.sleep(0.05)  # ended early (another replica's turn): no spin
        finally:
            for _ in storers:
                await batches.put(None)
            await asyncio.gather(*storers)

    async def _store_batches(self, batches: "asyncio.Queue[list[Msg] | None]") -> None:
        while (msgs := await batches.get()) is not None:
            try:
                await self.handle(msgs)
            except Exception:
                log.exception("storing a batch failed; it comes back after ack_wait")

    async def burst(self, timeout_s: float = 0.2) -> int:
        """Drain what is waiting and return the number of results newly stored (tests, tools)."""
        stored = 0
        while (count := await self.step(timeout_s)) is not None:
            stored += count
        return stored

    async def step(self, timeout_s: float) -> int | None:
        """Fetch one batch and store it; None when nothing came within `timeout_s`."""
        msgs = await self.fetch(timeout_s)
        if not msgs:
            return None
        return await self.handle(msgs)

    async def fetch(self, timeout_s: float) -> list[Msg]:
        return await (await self._pull()).fetch(self._batch, timeout_s)

    async def handle(self, msgs: list[Msg]) -> int:
        started = time.perf_counter()
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
        metrics.batch_ingested(rows, time.perf_counter() - started)
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
