"""JetStream streams and consumers, created idempotently.

The controller calls `ensure_streams` at start and keeps `JobsConsumers` running: it alone
creates and updates the streams and the durable `jobs-CC` of each country in use. An agent only
looks its consumer up and pulls from it (deploy/ gives it no right to create or change one: a
consumer's config decides where its jobs, with their secrets, are delivered). Settings that
differ per deployment (history kept, size limits, replicas) are arguments.

A country is in use while it has a live agent: its `jobs-CC` is written when the first agent's
heartbeat reaches a controller (the agent waits for it, retrying), and JetStream removes it
once no agent has pulled from it for `JOBS_CONSUMER_IDLE_S`. Every consumer costs the servers
a little each second (on a cluster each is a Raft group of its own); one per country the product
knows, used or not, cost a 3-node cluster most of its idle CPU (bench/ha_idle.py). Removal
delivers no job twice: the idle time exceeds JOBS' max age, so every job the removed consumer
ever delivered has left JOBS before a new `jobs-CC` delivers from the first job JOBS holds.

Replicas: every stream is kept on `replicas` JetStream servers (`STREAM_REPLICAS`; 3 on the
hub cluster of deploy/nats/, 1 on a single server). The durable consumers made here
(`jobs-CC`, `ingest`) name no replica count of their own and so follow their stream's, a
change of it included: JetStream moves an existing stream to a new count in place, its
messages and its consumers' state with it (docs/operating.md, "Running without a single
point of failure").
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError

from shared.arrivals import RECEIVERS_BUCKET
from shared.publishing import takes_batches
from shared.subjects import (
    ARRIVALS_STREAM,
    ARRIVALS_SUBJECTS,
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    JOBS_STREAM,
    JOBS_SUBJECTS,
    RESULTS_STREAM,
    RESULTS_SUBJECTS,
    jobs_subject,
)

log = structlog.get_logger(__name__)

# JOBS keeps a job this long (the longest a round's job can matter: an interval of at most 14
# min and its close), acked or not: jobs leave by age, a file block at a time, and what each
# `jobs-CC` delivered and acked is its own state (bench/results/scaling-history.md, "JOBS
# kept by age").
JOBS_MAX_AGE_S = 15 * 60
DUPLICATE_WINDOW_S = 5 * 60
INGEST_CONSUMER = "ingest"
# What a result delivered to an ingester that went silent (killed, its host lost) waits before
# another ingester gets it: the store lag of a dead controller's results. Ingesters holding a
# batch longer (queued behind others, or a slow commit) say so with `in_progress`
# (controller.ingest.ingester), so only a stalled or dead one loses its results to another.
INGEST_ACK_WAIT_S = 5.0
# What agents wait before a job they took and went silent on goes to another agent; running
# checks extend it with `in_progress` (agent.worker).
JOBS_ACK_WAIT_S = 30.0
# How many times `jobs-CC` delivers a job before giving up on it; a hand-back (nak) counts as one.
JOBS_MAX_DELIVER = 5
# How long `jobs-CC` stays with no agent pulling before JetStream removes it: past JOBS' max age
# (see the module's docstring) by a margin for the servers' clocks and timers.
JOBS_CONSUMER_IDLE_S = JOBS_MAX_AGE_S + 60
MIB = 1024 * 1024
RESULTS_MAX_BYTES = 20 * 1024 * MIB
EVENTS_MAX_BYTES = 1024 * MIB
# The receivers' arrivals (shared.arrivals), kept as long as results; a few hundred bytes each.
ARRIVALS_MAX_BYTES = 1024 * MIB
# RESULTS republishes every result it stored here, under the same tokens after `live.`: the
# live feed of readers in other NATS accounts (deploy/nats_conf.py), who get what RESULTS
# holds, once per stored result.
RESULTS_LIVE_SUBJECTS = "live.results.>"
# Where heartbeats lived before they became core messages; removed at start.
LEGACY_AGENTS_STREAM = "KV_agents"


def jobs_consumer_name(cc: str) -> str:
    return f"jobs-{cc}"


def stream_configs(
    results_days: float = 7,
    events_days: float = 30,
    *,
    results_max_bytes: int = RESULTS_MAX_BYTES,
    events_max_bytes: int = EVENTS_MAX_BYTES,
    batched: bool = False,
    replicas: int = 1,
) -> list[StreamConfig]:
    """JOBS, RESULTS, EVENTS and ARRIVALS, each on `replicas` servers. The last three drop their
    oldest messages past their size, so no publisher (say, a compromised agent) can fill the
    store. `batched`: JOBS and RESULTS take fast-ingest batches (`shared.publishing`: the
    scheduler's jobs, each agent's results)."""
    return [
        StreamConfig(
            name=JOBS_STREAM,
            num_replicas=replicas,
            subjects=[JOBS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=JOBS_MAX_AGE_S,
            duplicate_window=DUPLICATE_WINDOW_S,
            allow_batched=batched or None,
        ),
        StreamConfig(
            name=RESULTS_STREAM,
            num_replicas=replicas,
            subjects=[RESULTS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=results_days * 86_400,
            max_bytes=results_max_bytes,
            discard=DiscardPolicy.OLD,
            duplicate_window=DUPLICATE_WINDOW_S,
            republish=RePublish(src=RESULTS_SUBJECTS, dest=RESULTS_LIVE_SUBJECTS),
            allow_batched=batched or None,
        ),
        StreamConfig(
            name=EVENTS_STREAM,
            num_replicas=replicas,
            subjects=[EVENTS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=events_days * 86_400,
            max_bytes=events_max_bytes,
            discard=DiscardPolicy.OLD,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=ARRIVALS_STREAM,
            num_replicas=replicas,
            subjects=[ARRIVALS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=results_days * 86_400,
            max_bytes=ARRIVALS_MAX_BYTES,
            discard=DiscardPolicy.OLD,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
    ]


async def ensure_streams(
    js: JetStreamContext,
    results_days: float = 7,
    events_days: float = 30,
    *,
    results_max_bytes: int = RESULTS_MAX_BYTES,
    events_max_bytes: int = EVENTS_MAX_BYTES,
    replicas: int = 1,
) -> None:
    """Create or update the streams (an existing one moved to `replicas` in place, messages
    kept); remove the `agents` bucket of older versions."""
    configs = stream_configs(
        results_days,
        events_days,
        results_max_bytes=results_max_bytes,
        events_max_bytes=events_max_bytes,
        batched=takes_batches(js),
        replicas=replicas,
    )
    for config in configs:
        try:
            info = await js.stream_info(config.name or "")
        except NotFoundError:
            await _put_stream(js.add_stream, config)
            continue
        await _put_stream(js.update_stream, _kept_retention(config, info.config.retention))
        if info.config.num_replicas != replicas:
            await _placed(js, config.name or "", replicas)
            log.info(
                "stream_replicas_moved",
                stream=config.name,
                replicas=replicas,
                was=info.config.num_replicas,
            )
    await ensure_receivers_bucket(js, replicas)
    try:
        await js.delete_stream(LEGACY_AGENTS_STREAM)
    except NotFoundError:
        return
    log.info("legacy_agents_bucket_removed", stream=LEGACY_AGENTS_STREAM)


async def ensure_receivers_bucket(js: JetStreamContext, replicas: int = 1) -> None:
    """The KV bucket `RECEIVERS` (shared.arrivals): the receiving addresses, one revision each."""
    try:
        await js.key_value(RECEIVERS_BUCKET)
    except (NotFoundError, BucketNotFoundError):
        await js.create_key_value(
            KeyValueConfig(bucket=RECEIVERS_BUCKET, history=1, replicas=replicas)
        )


class StreamReplicasError(Exception):
    """JetStream refused the replica count asked for (more than the cluster's servers, or
    more than one on a server that is no cluster); the message names the setting."""


# How long a stream moved to another replica count may take to have a leader on its new peers.
PLACED_WITHIN_S = 60.0


async def _placed(js: JetStreamContext, name: str, replicas: int) -> None:
    """Until the stream moved to `replicas` has a leader and all its peers: JetStream refuses
    consumer writes meanwhile (503, insufficient resources). The new peers catch up on the
    messages in the background, from the leader; until they have, a stream on 3 servers
    survives the loss of its leader only (JetStream picks a current peer)."""
    deadline = asyncio.get_running_loop().time() + PLACED_WITHIN_S
    while asyncio.get_running_loop().time() < deadline:
        cluster = (await js.stream_info(name)).cluster
        if cluster and cluster.leader and len(cluster.replicas or []) == replicas - 1:
            return
        await asyncio.sleep(0.2)
    raise StreamReplicasError(
        f"stream {name} has no leader on {replicas} servers after {PLACED_WITHIN_S:.0f} s"
    )


# JetStream's error codes for a replica count it cannot place: more than one on a server that
# is no cluster, no `replicas` servers to put the stream on.
_NOT_CLUSTERED, _NO_PLACEMENT = 10074, 10005


async def _put_stream(
    put: Callable[[StreamConfig], Awaitable[object]], config: StreamConfig
) -> None:
    try:
        await put(config)
    except APIError as exc:
        if (config.num_replicas or 1) == 1 or exc.err_code not in (_NOT_CLUSTERED, _NO_PLACEMENT):
            raise
        raise StreamReplicasError(
            f"JetStream refused stream {config.name} on {config.num_replicas} replicas"
            f" ({exc.description or exc}): STREAM_REPLICAS may not exceed the JetStream servers"
            " of the NATS cluster (1 on a single server)"
        ) from None


def _kept_retention(config: StreamConfig, found: RetentionPolicy | None) -> StreamConfig:
    """`config` with the retention the stream has when JetStream cannot change it in place (a
    work queue, to or from): JOBS made by a version before limits retention stays a work
    queue, which works the same at a higher cost, until an operator makes it anew
    (docs/operating.md, upgrading)."""
    if found is None or found == config.retention:
        return config
    found = RetentionPolicy(found)  # nats-py reads it back as a plain string
    if RetentionPolicy.WORK_QUEUE not in (found, config.retention):
        return config
    log.warning(
        "stream_retention_kept",
        stream=config.name,
        retention=found.value,
        wanted=config.retention.value if config.retention else None,
        hint="docs/operating.md, upgrading: JOBS with limits retention",
    )
    return replace(config, retention=found)


def jobs_consumer_config(
    cc: str, ack_wait_s: float = JOBS_ACK_WAIT_S, idle_s: float = JOBS_CONSUMER_IDLE_S
) -> ConsumerConfig:
    """The durable pull consumer all agents of country `cc` share, removed by JetStream after
    `idle_s` without a pull."""
    return ConsumerConfig(
        name=jobs_consumer_name(cc),
        durable_name=jobs_consumer_name(cc),
        filter_subject=jobs_subject(cc),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_deliver=JOBS_MAX_DELIVER,
        max_ack_pending=20_000,
        inactive_threshold=idle_s,
    )


# Consumers written at once by `ensure_jobs_consumers`: a first start writes one per country
# (about 250), each an API round trip; one after the other, a start-up took tens of seconds on
# a loaded host or with the server a few milliseconds away.
PUT_CONSUMERS_AT_ONCE = 16


async def ensure_jobs_consumers(
    js: JetStreamContext,
    countries: Iterable[str],
    ack_wait_s: float = JOBS_ACK_WAIT_S,
    *,
    idle_s: float = JOBS_CONSUMER_IDLE_S,
    existing_too: bool = False,
) -> int:
    """Create every country's `jobs-CC` that is missing or differs from `jobs_consumer_config`
    (say, turned into a push consumer); return how many were written. One listing when all
    are in place already. `existing_too`: every `jobs-CC` JOBS has as well (those of a version
    that made one per country, given the idle time after which JetStream removes them)."""
    existing = {info.name: info for info in await _jobs_consumers(js)}
    wanted = set(countries)
    if existing_too:
        wanted |= {name.removeprefix("jobs-") for name in existing if name.startswith("jobs-")}
    stale = []
    for cc in sorted(wanted):
        config = jobs_consumer_config(cc, ack_wait_s, idle_s)
        found = existing.get(config.name or "")
        if found is None or not _same(found, config):
            stale.append((config, found))
    slots = asyncio.Semaphore(PUT_CONSUMERS_AT_ONCE)

    async def put(config: ConsumerConfig, found: ConsumerInfo | None) -> None:
        async with slots:
            await _put_consumer(js, config, found)

    await asyncio.gather(*(put(config, found) for config, found in stale))
    return len(stale)


async def _jobs_consumers(js: JetStreamContext) -> list[ConsumerInfo]:
    found: list[ConsumerInfo] = []
    while True:
        page = await js.consumers_info(JOBS_STREAM, offset=len(found))
        found += page
        if not page:
            return found


def _same(info: ConsumerInfo, config: ConsumerConfig) -> bool:
    have = info.config
    return (
        have.deliver_subject is None
        and have.filter_subject == config.filter_subject
        and not have.filter_subjects
        and have.ack_wait == config.ack_wait
        and have.max_deliver == config.max_deliver
        and have.max_ack_pending == config.max_ack_pending
        and have.ack_policy == config.ack_policy
        and have.inactive_threshold == config.inactive_threshold
    )


async def _put_consumer(
    js: JetStreamContext, config: ConsumerConfig, found: ConsumerInfo | None
) -> None:
    """Create or update; a consumer JetStream will not update in place (a push consumer
    cannot become a pull one) is deleted and created anew, with a log line, delivering from
    the first job the old one never delivered: JOBS keeps jobs after their ack, and a job
    delivered once is being run (its result comes whether its ack reaches anyone), so none
    runs twice."""
    try:
        await js.add_consumer(JOBS_STREAM, config if found is None else _started_as(config, found))
    except APIError as exc:
        if found is None:
            raise
        log.warning(
            "jobs_consumer_replaced", consumer=config.name, error=exc.description or repr(exc)
        )
        await js.delete_consumer(JOBS_STREAM, config.name or "")
        await js.add_consumer(JOBS_STREAM, after_delivered(config, found))


def _started_as(config: ConsumerConfig, found: ConsumerInfo) -> ConsumerConfig:
    """`config` with where `found` started delivering, which JetStream changes on no update."""
    have = found.config
    policy = DeliverPolicy(have.deliver_policy) if have.deliver_policy else None
    return replace(config, deliver_policy=policy, opt_start_seq=have.opt_start_seq)


def after_delivered(config: ConsumerConfig, found: ConsumerInfo) -> ConsumerConfig:
    """`config` delivering from the stream sequence after the last one `found` delivered."""
    delivered = found.delivered.stream_seq if found.delivered is not None else 0
    return replace(
        config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=delivered + 1
    )


# How often the keeper looks at the countries in use (in memory: the live agents' view), and how
# often it checks again with JetStream that each one's `jobs-CC` is there.
KEEP_EVERY_S = 1.0
RECHECK_EVERY_S = 60.0


class JobsConsumers:
    """Keeps `jobs-CC` in place for every country `in_use()` names (the controller: the
    countries with a live agent): written at start for those and updated for every existing
    one, then written within about `every_s` of a country coming into use. A country's consumer
    is checked with JetStream when it comes into use and every `recheck_s` while in use (JetStream
    may have removed it while the country had no agent); nothing is removed here."""

    def __init__(
        self,
        js: JetStreamContext,
        in_use: Callable[[], Iterable[str]],
        *,
        ack_wait_s: float = JOBS_ACK_WAIT_S,
        idle_s: float = JOBS_CONSUMER_IDLE_S,
        every_s: float = KEEP_EVERY_S,
        recheck_s: float = RECHECK_EVERY_S,
    ) -> None:
        self._js = js
        self._in_use = in_use
        self._ack_wait_s = ack_wait_s
        self._idle_s = idle_s
        self._every_s = every_s
        self._recheck_s = recheck_s
        self._checked: dict[str, float] = {}  # country -> loop time of its last check
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        written = await ensure_jobs_consumers(
            self._js,
            self._in_use(),
            self._ack_wait_s,
            idle_s=self._idle_s,
            existing_too=True,
        )
        if written:
            log.info("jobs_consumers_written", count=written)
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _keep(self) -> None:
        while True:
            try:
                await self.pass_once()
            except (NatsError, TimeoutError) as exc:  # NATS away: the next pass tries again
                log.warning("jobs_consumers_pass_failed", error=repr(exc))
            await asyncio.sleep(self._every_s)

    async def pass_once(self) -> int:
        """Write the consumers of countries newly in use (or due a check); return how many."""
        now = asyncio.get_running_loop().time()
        in_use = set(self._in_use())
        for cc in set(self._checked) - in_use:
            del self._checked[cc]
        due = sorted(cc for cc in in_use if now - self._checked.get(cc, -1e18) >= self._recheck_s)
        if not due:
            return 0
        written = await ensure_jobs_consumers(self._js, due, self._ack_wait_s, idle_s=self._idle_s)
        for cc in due:
            self._checked[cc] = now
        if written:
            log.info("jobs_consumers_written", count=written, countries=due)
        return written


def ingest_consumer_config() -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=INGEST_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=INGEST_ACK_WAIT_S,
        max_deliver=-1,
        max_ack_pending=50_000,
    )
