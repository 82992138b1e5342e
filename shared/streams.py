"""JetStream streams, consumers and the agents KV bucket, created idempotently.

The controller calls `ensure_streams` at start; an agent calls `ensure_jobs_consumer` for its
country (with NATS credentials that allow exactly that, see deploy/). Settings that differ per
deployment (history kept) are arguments.
"""

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from shared.subjects import (
    AGENTS_BUCKET,
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    JOBS_STREAM,
    JOBS_SUBJECTS,
    RESULTS_STREAM,
    RESULTS_SUBJECTS,
    jobs_subject,
)

JOBS_MAX_AGE_S = 15 * 60
DUPLICATE_WINDOW_S = 5 * 60
HEARTBEAT_TTL_S = 30
INGEST_CONSUMER = "ingest"


def jobs_consumer_name(cc: str) -> str:
    return f"jobs-{cc}"


def stream_configs(results_days: float = 7, events_days: float = 30) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=JOBS_STREAM,
            subjects=[JOBS_SUBJECTS],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_age=JOBS_MAX_AGE_S,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=RESULTS_STREAM,
            subjects=[RESULTS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=results_days * 86_400,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=[EVENTS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=events_days * 86_400,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
    ]


async def ensure_streams(
    js: JetStreamContext, results_days: float = 7, events_days: float = 30
) -> KeyValue:
    """Create or update the streams and the agents bucket; return the bucket."""
    for config in stream_configs(results_days, events_days):
        try:
            await js.stream_info(config.name or "")
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)
    return await agents_bucket(js, create=True)


async def agents_bucket(js: JetStreamContext, *, create: bool = False) -> KeyValue:
    try:
        return await js.key_value(AGENTS_BUCKET)
    except (NotFoundError, BadRequestError):
        if not create:
            raise
        return await js.create_key_value(
            KeyValueConfig(bucket=AGENTS_BUCKET, ttl=HEARTBEAT_TTL_S, history=1)
        )


def jobs_consumer_config(cc: str, ack_wait_s: float) -> ConsumerConfig:
    """The durable pull consumer all agents of country `cc` share."""
    return ConsumerConfig(
        durable_name=jobs_consumer_name(cc),
        filter_subject=jobs_subject(cc),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_deliver=5,
        max_ack_pending=20_000,
    )


def ingest_consumer_config() -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=INGEST_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=30,
        max_deliver=-1,
        max_ack_pending=50_000,
    )
