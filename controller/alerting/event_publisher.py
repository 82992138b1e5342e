"""The monitors' state changes out to `mon.events.MONITOR`: the event outbox the evaluator's
transactions write, published after they commit, oldest first, by one replica at a time
(`events_store.claim_events` holds a lock), with `Nats-Msg-Id` making a retry harmless."""

import asyncpg
from nats.js import JetStreamContext

from controller.notify import events_store as events_db

BATCH = 400  # events published a transaction at most


class EventPublisher:
    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext, *, batch: int = BATCH) -> None:
        self._pool = pool
        self._js = js
        self._batch = batch

    async def publish(self) -> int:
        """Publish the state changes written so far, oldest first, one replica at a time
        (Nats-Msg-Id makes a retry harmless); return how many."""
        published = 0
        async with self._pool.acquire() as conn:
            if not await events_db.events_waiting(conn):
                return published
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await events_db.claim_events(conn, self._batch)
                if not rows:
                    return published
                for e in rows:
                    await self._js.publish(e.subject, e.payload, headers={"Nats-Msg-Id": e.msg_id})
                await events_db.delete_events(conn, [e.id for e in rows])
            published += len(rows)
