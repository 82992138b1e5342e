"""A job carried by a `Preempt` request (`Preempt.job`): delivered by the controller on this
agent's control subject instead of JOBS, so it has no JetStream message to settle. It is run
like a pulled job and its result published like any other (same job id, same result
subject); settling it is a no-op, and a hand-back (`nak`: this agent would not run it, or it
stops first) cannot give it to another agent: it is logged, and its round closes `expired`
like any job lost in flight."""

from datetime import datetime

import structlog
from nats.aio.msg import Msg

from shared.messages import CheckJob, encode
from shared.subjects import jobs_subject

log = structlog.get_logger(__name__)


class CarriedJob:
    """A `Delivery` (agent.bundles) of a job carried by a `Preempt`: delivered once, from no
    stream."""

    def __init__(self, job: CheckJob, country: str, at: datetime) -> None:
        """`at`: when it was delivered (its metadata's timestamp)."""
        self.job_id = job.job_id
        self.tenant = job.tenant
        self._data = encode(job)
        self._subject = jobs_subject(country)
        self._metadata = Msg.Metadata(
            sequence=Msg.Metadata.SequencePair(consumer=0, stream=0),
            num_pending=0,
            num_delivered=1,
            timestamp=at,
            stream="",
            consumer="",
        )

    @property
    def data(self) -> bytes:
        return self._data

    @property
    def subject(self) -> str:
        return self._subject

    @property
    def metadata(self) -> Msg.Metadata:
        return self._metadata

    async def ack(self) -> None:
        return None

    async def nak(self, delay: float | None = None) -> None:
        log.warning("carried_job_not_run", job_id=self.job_id, tenant=self.tenant)

    async def term(self) -> None:
        return None

    async def in_progress(self) -> None:
        return None
