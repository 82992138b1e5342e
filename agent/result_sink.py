"""The result sink: a check's result published to RESULTS and its job settled after it.

A job is acked only after RESULTS has stored its result (its PubAck, or the PubAck of the batch
it went in: results finished within `RESULT_LINGER_S` of each other are published together,
shared.publishing.Outbox; when their jobs say `resultBundles`, as one message); a result not
stored (the publish failed or timed out) hands its job back (`nak`) for a run again. A check is
over, and gives back its slot (`freed`), once its result is in the hand-off (agent.handoff):
results waiting for RESULTS, bounded per agent in results and bytes and per tenant to its share
of them; a check whose result finds no room there keeps its slot until there is
(back-pressure). A message that is not a valid job is `term`ed with a log line, never retried;
a job the agent fails on for a reason of its own ends as an `internal` result, or is handed
back.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import msgspec
import structlog

from agent import metrics
from agent.bundles import Delivery
from agent.carried import CarriedJob
from agent.handoff import HANDOFF_STALLED_S, HandOff, Limits
from agent.probers.run import build_result
from agent.settle import NATS_ERRORS, settle
from shared.clock import Clock
from shared.guards import BrokenInvariant
from shared.messages import CheckJob, CheckResult, encode
from shared.publishing import Outbox
from shared.subjects import results_subject

log = structlog.get_logger(__name__)
Outcome = Literal["acked", "nak"]


@dataclass(frozen=True, slots=True)
class Publishing:
    """How results are published: a publish not acknowledged within `publish_timeout` fails,
    its job handed back after `nak_delay`; the hand-off's `handoff` limits (default:
    `Limits.for_agent` of the agent's capacity), and how long finished checks may wait for room
    there, none of their results stored, before the agent says it is not ready
    (`handoff_stalled_after`)."""

    publish_timeout: float = 5.0
    nak_delay: float = 2.0
    handoff: Limits | None = None
    handoff_stalled_after: float = HANDOFF_STALLED_S


class ResultSink:
    """Publishes agent `agent_id`'s results through `outbox` once `handoff` has room for them,
    and settles their jobs; `freed(task)` gives back the slot of the check running in `task`
    once its result is in the hand-off."""

    def __init__(
        self,
        agent_id: str,
        outbox: Outbox,
        handoff: HandOff,
        counters: metrics.AgentMetrics,
        *,
        freed: Callable[[asyncio.Task[None]], None],
        nak_delay: float,
        clock: Clock,
    ) -> None:
        self.agent_id = agent_id
        self._outbox = outbox
        self.handoff = handoff
        self._metrics = counters
        self._freed = freed
        self._nak_delay = nak_delay
        self._clock = clock

    def flush(self) -> None:
        """Results in the hand-off go now, not after the linger."""
        self._outbox.flush()

    async def recover(self, msg: Delivery, job: CheckJob, exc: Exception) -> None:
        """A bug of the agent's, not an outage of the target: end the job with an `internal`
        result, or, when even that cannot be published, hand it back. Left unsettled, it
        would come back every ack_wait and be dropped without a result after max_deliver."""
        outcome: Outcome = "nak"
        then = None
        try:
            subject = results_subject(job.country, job.monitor_type, job.monitor_id)
            message = f"the agent failed on this job ({type(exc).__name__}); see its log"
            result = build_result(job, self.agent_id, "internal", message, self._clock.now())
            outcome = await self.publish_and_ack(msg, job, subject, result)
        except Exception as second:
            then = repr(second)
            await settle(msg.nak, self._nak_delay)
        log.error("job_failed", error=repr(exc), then=then, outcome=outcome, exc_info=exc)

    async def finish(
        self, msg: Delivery, job: CheckJob, subject: str, result: CheckResult, started: float
    ) -> None:
        """Publish the result, ack the job, and write the check's one log line."""
        seconds = time.perf_counter() - started
        self._metrics.check(job.monitor_type, result.status, result.error_kind, seconds)
        outcome = await self.publish_and_ack(msg, job, subject, result)
        log.info(
            "check",
            type=job.monitor_type,
            status=result.status,
            error_kind=result.error_kind,
            ms=result.response_time_ms,
            outcome=outcome,
            attempt=msg.metadata.num_delivered,
            carried=isinstance(msg, CarriedJob),
        )

    async def publish_and_ack(
        self, msg: Delivery, job: CheckJob, subject: str, result: CheckResult
    ) -> Outcome:
        """Hand `result` to the Outbox (in a bundle with others when its job allows) once the
        hand-off has room for it, the slot held until then; then the check is over, its slot
        free; ack its job once the result is stored, or nak it when it was not. A result with
        side facts of a sealed job carries the job's asks and seal back (`asks`, `asksSeal`):
        the controller takes facts only for what the job asked."""
        if result.side_checks and job.asks_seal:
            result = msgspec.structs.replace(result, asks=job.side_checks, asks_seal=job.asks_seal)
        payload = encode(result)
        if not self.handoff.fits(job.tenant, len(payload)):
            self._outbox.flush()  # what waits goes now: room comes back with its store
        await self.handoff.enter(job.tenant, len(payload))
        outcome: Outcome = "nak"
        try:
            task = asyncio.current_task()
            if task is None:
                raise BrokenInvariant("result_sink.ResultSink.publish_and_ack: no task")
            self._freed(task)
            outcome = await self._stored_and_settled(msg, subject, payload, result.job_id, job)
            return outcome
        finally:
            self.handoff.leave(job.tenant, len(payload), stored=outcome == "acked")

    async def _stored_and_settled(
        self, msg: Delivery, subject: str, payload: bytes, job_id: str, job: CheckJob
    ) -> Outcome:
        """Publish the result, then ack its job; nak it when the result was not stored."""
        started = time.perf_counter()
        try:
            await self._outbox.publish(subject, payload, job_id, bundle=job.result_bundles)
        except NATS_ERRORS as exc:
            log.warning(
                "result_publish_failed",
                error=repr(exc),
                ms=round((time.perf_counter() - started) * 1000, 3),
                redeliver_in_s=self._nak_delay,
            )
            self._metrics.publish_failed.inc()
            await settle(msg.nak, self._nak_delay)
            return "nak"
        self._metrics.published.inc()
        await settle(msg.ack)
        return "acked"

    async def reject(self, msg: Delivery, event: str, **fields: object) -> None:
        """Log a message no agent could ever run, and `term` it (no redelivery)."""
        self._metrics.rejected(event)
        log.error(
            event,
            size=len(msg.data),
            subject=msg.subject,
            stream_seq=msg.metadata.sequence.stream,
            **fields,
        )
        await settle(msg.term)
