"""The outbox worker (alerter role): pending notifications → their channel, with retries.

A batch is claimed with FOR UPDATE SKIP LOCKED and leased in one short transaction (attempts
counted, hidden from other workers for `lease_s`), sent outside any transaction, and each outcome
written back with its line in `alert_history`. Two workers or replicas never claim the same row;
a failed send is retried with exponential backoff until `max_attempts`. Should a worker die
between a send and its write-back, the row is sent again after the lease: at least once, never
lost (e-mails carry a Message-ID stable across retries, SMS an Idempotency-Key).
"""

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import asyncpg
import structlog

from controller import metrics
from controller.db import alerts
from controller.notify import Channel, DeliveryError, Notification
from shared.timefmt import utcnow

log = structlog.get_logger(__name__)

BATCH = 50
SEND_TIMEOUT_S = 60.0
LEASE_S = 300.0  # well above SEND_TIMEOUT_S
MAX_BACKOFF_S = 3600.0


class OutboxWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        channels: Mapping[str, Channel],
        *,
        max_attempts: int = 40,
        backoff_s: float = 30.0,
        interval_s: float = 1.0,
        batch: int = BATCH,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._pool = pool
        self._channels = channels
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._interval_s = interval_s
        self._batch = batch
        self._clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        log.info("outbox worker started", channels=sorted(self._channels))
        while not stop.is_set():
            busy = False
            try:
                busy = await self.deliver() == self._batch
            except Exception:
                log.exception("outbox pass failed; retrying")
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._interval_s)

    async def burst(self) -> int:
        """Deliver until nothing is due; return how many were sent (tests, tools)."""
        sent = 0
        while True:
            async with self._pool.acquire() as conn:
                due = await conn.fetchval(
                    "SELECT count(*) FROM notification_outbox"
                    " WHERE status = 'pending' AND next_attempt_at <= $1",
                    self._clock(),
                )
            if not due:
                return sent
            sent += await self.deliver()

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self._backoff_s * 2 ** max(0, attempts - 1), MAX_BACKOFF_S))

    async def deliver(self) -> int:
        """One batch: claim, send concurrently, record; return how many were delivered."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await alerts.claim_outbox(conn, self._clock(), self._batch, LEASE_S)
        if not rows:
            return 0
        errors = await self._send_all(rows)
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            for row, error in zip(rows, errors, strict=True):
                retry_at = None
                if error is not None and row["attempts"] < self._max_attempts:
                    retry_at = now + self.backoff(row["attempts"])
                await alerts.record_attempt(conn, row, error, retry_at=retry_at)
        sent = sum(1 for e in errors if e is None)
        metrics.notifications([row["channel"] for row in rows], errors)
        log.info("notifications delivered", sent=sent, failed=len(rows) - sent)
        return sent

    async def _send_all(self, rows: list[asyncpg.Record]) -> list[str | None]:
        """Errors in the order of `rows`. One recipient's notifications go out one after the
        other, oldest first (a recovery never overtakes its down notice); recipients at once."""
        queues: dict[tuple[str, str], list[int]] = {}
        for i, row in enumerate(rows):
            queues.setdefault((row["channel"], row["target"]), []).append(i)
        errors: list[str | None] = [None] * len(rows)

        async def drain(positions: list[int]) -> None:
            for i in sorted(positions, key=lambda i: rows[i]["id"]):
                errors[i] = await self._send(rows[i])

        await asyncio.gather(*(drain(p) for p in queues.values()))
        return errors

    async def _send(self, row: asyncpg.Record) -> str | None:
        """None when delivered, else why not."""
        channel = self._channels.get(row["channel"])
        if channel is None:
            return f"channel {row['channel']} is not configured on this controller"
        note = Notification(
            row["target"], row["subject"], row["body_text"], row["body_html"], row["dedupe_key"]
        )
        try:
            await asyncio.wait_for(channel.send(note), SEND_TIMEOUT_S)
        except DeliveryError as exc:
            error = str(exc)
        except TimeoutError:
            error = f"no answer within {SEND_TIMEOUT_S:.0f} s"
        else:
            return None
        log.warning(
            "notification not delivered",
            outbox_id=row["id"],
            channel=row["channel"],
            attempt=row["attempts"],
            error=error,
        )
        return error
