"""The alerter's metrics move when their events happen: a notification that cannot be sent and
one that is, by channel and outcome; the sampled outbox backlog follows the outbox table.

Prometheus' registry is one per process and shared by every test, so counters are compared
before and after.
"""

from functools import partial

import asyncpg
from prometheus_client import REGISTRY

from controller.notify import outbox_store
from controller.observability import metrics
from tests.alerting.conftest import DOWN, Rig


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def pending(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM notification_outbox WHERE status = 'pending'"
        )
    return count


async def test_notifications_count_failed_then_sent_and_the_backlog_follows(rig: Rig) -> None:
    failed = {"channel": "email", "outcome": "failed"}
    sent = {"channel": "email", "outcome": "sent"}
    before = {"failed": value("mailprobe_notifications_total", **failed)}
    before["sent"] = value("mailprobe_notifications_total", **sent)
    m = await rig.monitor(phone=None)
    await rig.relay.stop()
    await rig.rounds(m, 0, [DOWN, DOWN])
    await metrics.sample([metrics.outbox_pending(partial(outbox_store.pending, rig.pool))])
    backlog = await pending(rig.pool)
    assert backlog >= 1
    assert REGISTRY.get_sample_value("mailprobe_outbox_pending") == backlog

    worker = rig.outbox(max_attempts=5)
    assert await worker.deliver() == 0
    assert value("mailprobe_notifications_total", **failed) - before["failed"] == 1
    await rig.relay.start()
    assert await worker.burst() == 1
    assert value("mailprobe_notifications_total", **sent) - before["sent"] == 1

    await metrics.sample([metrics.outbox_pending(partial(outbox_store.pending, rig.pool))])
    assert REGISTRY.get_sample_value("mailprobe_outbox_pending") == backlog - 1
