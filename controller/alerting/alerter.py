"""The alerter role's worker: each pass evaluates the queued monitors (the evaluator,
controller.alerting.evaluator), judges the due heartbeat monitors
(controller.alerting.heartbeats), sends the flow incidents' due notices (the teller,
controller.alerting.telling) and publishes the state changes (controller.alerting.event_publisher).
The composition root (controller.runtime.pipeline, `build_alerter`) builds the parts."""

import asyncio

import structlog

from controller.alerting.evaluator import Evaluator
from controller.alerting.event_publisher import EventPublisher
from controller.alerting.heartbeats import HeartbeatJudge
from controller.alerting.telling import Teller
from shared.loop import run_every

log = structlog.get_logger(__name__)

# Replicas' passes drift apart (shared.loop.run_every), so each leases about half the queue.
JITTER = 0.5


class Alerter:
    def __init__(
        self,
        evaluator: Evaluator,
        teller: Teller,
        events: EventPublisher,
        *,
        interval_s: float,
        heartbeats: HeartbeatJudge | None = None,
    ) -> None:
        """`interval_s`: ALERT_EVAL_INTERVAL_SECONDS, between passes that found little;
        `heartbeats`: the heartbeat monitors' judge (controller.alerting.heartbeats)."""
        self.evaluator = evaluator
        self.heartbeats = heartbeats
        self.teller = teller
        self.events = events
        self._interval_s = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate and publish until `stop` is set; errors are logged and retried."""
        log.info("alerter started")

        async def one_pass() -> float | None:
            busy = await self.evaluator.evaluate_due() == self.evaluator.batch
            if self.heartbeats is not None:
                await self.heartbeats.judge_due()
            await self.teller.send_due()
            await self.events.publish()
            return 0 if busy else None

        await run_every(self._interval_s, one_pass, name="alerter", stop=stop, jitter=JITTER)

    async def burst(self) -> int:
        """Evaluate everything due and publish the events; return monitors evaluated (tests)."""
        total = 0
        while count := await self.evaluator.evaluate_due():
            total += count
        while self.heartbeats is not None and (count := await self.heartbeats.judge_due()):
            total += count
        await self.teller.send_due()
        await self.events.publish()
        return total
