"""The agent's work loop: pull jobs, run checks under a cap, publish results, then ack.

A job is acked only after RESULTS has stored its result (its PubAck, or the PubAck of the batch
it went in: results finished within `RESULT_LINGER_S` of each other are published together,
shared.publishing.Outbox; when their jobs say `resultBundles`, as one message, a JSON array on
`mon.results.CC.bundle`), so an agent that dies mid-check, or before its result is stored,
leaves the job to be redelivered to another agent of its country after `ack_wait`; a result
not stored (the publish failed or timed out) hands its job back (`nak`) for a run again.
A check is over, and gives back its slot and its tenant's share of the slots (and stops
counting in the heartbeat's loads), once its result is in the hand-off (agent.handoff):
results waiting for RESULTS, bounded per agent in results and bytes and per tenant to its
share of them; a check whose result finds no room there keeps its slot until there is
(back-pressure). Its job is still held, kept with `in_progress` like the others, until it is
acked or handed back; `Nats-Msg-Id` = job id (a bundle's: a hash of its
results' job ids) makes a repeated publish of the same result a no-op within the stream's
duplicate window, and the ingester stores a job's result once whatever carried it. `ack_wait` is
short (a job expires one interval after it is scheduled, often 60 s, and a redelivered job must
still be runnable), so a check running longer says so with `in_progress`. A message that is not
a valid job is `term`ed with a log line, never retried; a job the agent fails on for a reason of
its own ends as an `internal` result, or is handed back.

A job with credentials arrives sealed to the country's key (shared.sealing): it is opened here,
in memory, just before its check; one this agent cannot open (another key, corrupt) ends as an
`internal` result naming the key it needed and the keys the agent holds.

Jobs of several organizations share the slots fairly (agent.fair_queue): the agent pulls
ahead of its free slots, up to `lookahead` jobs more, into per-tenant lanes (the tenant holding
fewest slots served first, then the one whose checks held them least lately, then round robin),
and a tenant at its share of the slots (`tenant_share`) waits while another tenant's job does.
Pulled-ahead jobs are held with `in_progress` like running ones, so none is redelivered while
this agent has it, and a job whose life ends while it waits still ends `expired` (run_check).
It never holds more than capacity + lookahead jobs running or waiting to run: what a fetch
brings beyond that goes straight back (`within_room`); with the jobs whose results wait in the
hand-off, at most capacity + lookahead + the hand-off's results.

A JOBS message may be a bundle of jobs (agent.bundles): each of its jobs is taken, run and
settled as a job of its own, and the message is settled once all of them are; a bundle with a
job this agent would hand back goes back whole before any of it runs.

The controller may ask this agent, on `mon.control.CC.<agentId>`, to cancel one check of an
organization holding more than its share of a saturated country (`Preempt`,
controller.scheduling.preemption): the longest-running check of that organization here is
cancelled (its connection closes with its task), its result is `down` / `preempted`, saying
after how long and why, and its job is acked like any other. The request carries the job the
controller admitted in its place (`Preempt.job`, agent.carried): it takes the next slot that
frees here, ahead of any pulled job, and no pull is made for it; whether or not a check was
cancelled, so a carried job is never dropped for a stale view (it waits for a slot instead).
At most `capacity` carried jobs wait here at once.

With self-checks (agent.selfcheck), a job for a port this agent's canaries say it cannot reach
goes back for another agent of the country, and a check that failed before any server answered
is `inconclusive` when the canary of its port (or the resolver check) fails too
(agent.selfcheck_rules).
"""

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Self

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from agent import metrics
from agent.backoff import Backoff
from agent.bundles import Delivery, jobs_of
from agent.carried import CarriedJob
from agent.fair_queue import FairQueue
from agent.handoff import HANDOFF_STALLED_S, HandOff, Limits
from agent.heartbeat import HEARTBEAT_INTERVAL_S, Heartbeat
from agent.probers.run import MESSAGE_MAX, build_result, run_check
from agent.probers.tls import SslContexts, build_ssl_contexts
from agent.resolver import TargetResolver
from agent.selfcheck import SelfChecks
from agent.selfcheck_rules import (
    HAND_OVER_DELAY_S,
    before_run,
    checked,
    explain,
    job_ports,
    not_run_message,
    path_failure,
)
from agent.settings import AgentSettings, SideCheckSettings, TargetSettings, opening_keys
from agent.sidechecks import SIDE_CHECKS, AnyRunner, AnySideCheck, Round
from agent.tenant_loads import TenantUsage
from shared.clock import WALL, Clock
from shared.guards import BrokenInvariant
from shared.loop import run_every
from shared.messages import (
    CheckJob,
    CheckResult,
    Preempt,
    TenantLoad,
    decode_job,
    decode_preempt,
    decode_sealed,
    default_port,
    encode,
    preempted_message,
)
from shared.publishing import Outbox
from shared.pulling import PullError, StandingPull
from shared.sealing import OpeningKeys, SealingError
from shared.sidechecks import SideCheckError, SideCheckErrorKind
from shared.streams import (
    JOBS_ACK_WAIT_S,
    JOBS_MAX_DELIVER,
    jobs_consumer_config,
    jobs_consumer_name,
)
from shared.subjects import (
    JOBS_STREAM,
    control_subject,
    jobs_subject,
    results_bundle_subject,
    results_subject,
)
from shared.timefmt import parse_iso

log = structlog.get_logger(__name__)
# How long a side check may run beyond its job's timeout before the worker leaves it out: its
# lookups keep to the job's budget (at most 10 s) and a second of guard.
SIDE_CHECK_GRACE_S = 15.0

# What the controller gives `jobs-CC`: a killed agent's job goes to another agent after this,
# well inside a job's life (scheduledAt + interval, often 60 s). Longer checks keep their job
# with `in_progress` every ack_wait / 3.
DEFAULT_ACK_WAIT_S = JOBS_ACK_WAIT_S
NATS_ERRORS = (nats.errors.Error, TimeoutError, OSError)
# While NATS is away, how often the loop looks whether it is back (no fetch meanwhile).
RECONNECT_POLL_S = 0.1
# An agent that took an `admitted` job this recently pulls for its free slots only.
ADMITTED_FRESH_S = 60.0
# A stopping agent waits for its open pull request's own status (Worker._stop_pulling); this
# long past the request's expiry and shared.pulling's grace it stops waiting regardless.
LAST_REQUEST_WAIT_MAX_S = 2.0
Outcome = Literal["acked", "nak"]
# Results finished within this of the first of them go to RESULTS together
# (shared.publishing.Outbox): one write, one batch acknowledged together, and their jobs acked
# together after it. A check gives back its slot when its result is handed to the Outbox, so
# the linger costs no slot, only the time until the job's ack (bench/results/slot-linger.md).
RESULT_LINGER_S = 0.1
# How much a take with fewer jobs per message than the average moves it down (`per_message`).
JOBS_PER_MESSAGE_WEIGHT = 0.3


def default_agent_id(country: str) -> str:
    """`CC-hostname-pid`, reduced to the characters a subject token and a log filter like."""
    host = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname().split(".")[0]).strip("-")
    return f"{country}-{host or 'host'}-{os.getpid()}"


class Worker:
    """Runs country `country`'s check jobs from the durable consumer `jobs-CC` it shares with
    every other agent of that country.

    `run()` works until `stop()` (or, with `burst=True`, until the consumer has nothing pending
    or unacked), then lets in-flight checks finish for up to `shutdown_grace` seconds and hands
    the rest back with `nak`. The caller owns the connection and drains it afterwards.
    """

    def __init__(
        self,
        nc: NATS,
        country: str,
        *,
        agent_id: str | None = None,
        concurrency: int = 200,
        allow_private: bool = False,
        ssl_contexts: SslContexts | None = None,
        side_checks: Mapping[str, AnyRunner] | None = None,
        side_check_grace: float = SIDE_CHECK_GRACE_S,
        seal_keys: OpeningKeys | None = None,
        ack_wait: float = DEFAULT_ACK_WAIT_S,
        shutdown_grace: float = 30.0,
        fetch_timeout: float = 1.0,
        publish_timeout: float = 5.0,
        nak_delay: float = 2.0,
        retry_delay: float = 0.5,
        retry_delay_max: float = 30.0,
        heartbeat_interval: float | None = HEARTBEAT_INTERVAL_S,
        self_checks: SelfChecks | None = None,
        tenant_share: float = 0.5,
        lookahead: int | None = None,
        resolver: TargetResolver | None = None,
        handoff: Limits | None = None,
        handoff_stalled_after: float = HANDOFF_STALLED_S,
        clock: Clock = WALL,
    ) -> None:
        """`clock`: the instant results and heartbeats carry and the monotonic seconds jobs,
        slots and the hand-off are timed by (agent.__main__ passes the process's)."""
        jobs_subject(country)  # validates the code
        self._clock = clock
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lookahead is not None and lookahead < 0:
            raise ValueError("lookahead must not be negative")
        self.country = country
        self.agent_id = agent_id or default_agent_id(country)
        self.capacity = concurrency
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._results = Outbox(
            self._js,
            linger_s=RESULT_LINGER_S,
            timeout_s=publish_timeout,
            bundle_subject=results_bundle_subject(country),
            max_payload=lambda: nc.max_payload,
        )
        self._allow_private = allow_private
        self._ssl = ssl_contexts or build_ssl_contexts()
        # The side checks' runners by name (the registry's order); those not given are built
        # from the settings an agent has without any.
        runners = dict(side_checks or {})
        defaults = SideCheckSettings()
        targets = TargetSettings(agent_allow_private_targets=allow_private)
        self._side_checks: list[tuple[AnySideCheck, AnyRunner]] = [
            (check, runners.get(name) or check.build(defaults, targets))
            for name, check in SIDE_CHECKS.items()
        ]
        self._side_check_grace = side_check_grace
        self._seal_keys = seal_keys or OpeningKeys([])
        self._ack_wait = ack_wait
        self._grace = shutdown_grace
        self._fetch_timeout = fetch_timeout
        self._nak_delay = nak_delay
        # Consumer or fetch failures: waits from retry_delay doubling to retry_delay_max.
        self._backoff = Backoff(retry_delay, retry_delay_max)
        self._heartbeat_interval = heartbeat_interval
        self._self_checks = self_checks
        self._resolver = resolver
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()  # a slot freed up, or stop() was called
        # Jobs taken and not settled, each with when it arrived (monotonic time), in arrival order
        # (which _keep_in_progress relies on): those running (at most `capacity`, with their
        # tenant) and those waiting for a slot, un-started, in their tenant's lane. Only
        # _start_waiting() moves a job from one to the other.
        self._tasks: dict[asyncio.Task[None], tuple[Delivery, float, str]] = {}
        self._waiting: FairQueue[tuple[Delivery, float]] = FairQueue(concurrency, tenant_share)
        self._held: dict[str, int] = {}  # running checks by tenant
        # Results of checks that are over, waiting to be stored (agent.handoff), and the tasks
        # that wait for their store, each with its job and when that arrived: held, no slot.
        self._metrics = metrics.for_country(country)
        self._handoff = HandOff(
            handoff or Limits.for_agent(concurrency), self._metrics.handoff, clock.monotonic
        )
        self._handoff_stalled_after = handoff_stalled_after
        self._storing: dict[asyncio.Task[None], tuple[Delivery, float]] = {}
        self._usage = TenantUsage()  # slot-seconds by tenant, for the heartbeat
        self._started: dict[asyncio.Task[None], float] = {}  # monotonic time each check started
        # Tasks in their check (after the hand-back rules, before the result is published),
        # with their tenant and when the check started: what `preempt` may cancel.
        self._checking: dict[asyncio.Task[Any], tuple[str, float]] = {}
        self._preempting: dict[asyncio.Task[Any], tuple[Preempt, float]] = {}
        # Jobs carried by `Preempt` requests, not started yet (at most `capacity`): they take
        # the next free slots, before any job of `_waiting`.
        self._carried: list[tuple[Delivery, float, str]] = []
        # Jobs taken beyond the free slots, so that other tenants' jobs behind one tenant's
        # flood are seen: taken from the other agents of the country, so bounded.
        self._lookahead = concurrency if lookahead is None else lookahead
        self._admitted_at: float | None = None  # monotonic time an `admitted` job last came
        self._jobs_per_message = 1.0  # lately, so that a pull request asks for its room
        self._bound = False  # to the country's consumer, between _subscribe() and the end
        # One pull request open at a time, lasting `fetch_timeout` unless jobs fill it first.
        self._pull = StandingPull(
            nc, JOBS_STREAM, jobs_consumer_name(country), expires_s=fetch_timeout
        )

    @classmethod
    def from_settings(cls, nc: NATS, settings: AgentSettings, **overrides: Any) -> Self:
        """The worker and its parts, each built from its own group of `settings`."""
        country, work = settings.identity.agent_country, settings.work
        targets = settings.targets
        options: dict[str, Any] = {
            "agent_id": settings.identity.agent_id,
            "concurrency": work.agent_concurrency,
            "allow_private": targets.agent_allow_private_targets,
            "shutdown_grace": work.agent_shutdown_grace_seconds,
            "seal_keys": opening_keys(settings.sealing),
            "side_checks": {
                name: check.build(settings.side_checks, targets)
                for name, check in SIDE_CHECKS.items()
            },
            "self_checks": SelfChecks.from_settings(settings.self_checks, country),
            "tenant_share": work.agent_tenant_slot_share,
            "resolver": TargetResolver(per_tenant=work.agent_dns_lookups_per_tenant),
            **overrides,
        }
        return cls(nc, country, **options)

    @property
    def in_flight(self) -> int:
        """Checks running now: never more than `capacity`."""
        return len(self._tasks)

    @property
    def waiting(self) -> int:
        """Jobs taken but not started, for lack of a free slot."""
        return len(self._waiting)

    @property
    def storing(self) -> int:
        """Jobs whose check is over and whose result is in the hand-off, not stored yet: held,
        in no slot."""
        return len(self._storing)

    @property
    def handoff(self) -> HandOff:
        return self._handoff

    @property
    def held_by_tenant(self) -> dict[str, int]:
        """Checks running now, by tenant."""
        return dict(self._held)

    @property
    def waiting_by_tenant(self) -> dict[str, int]:
        """Jobs taken but not started, by tenant."""
        return self._waiting.counts()

    def tenant_loads(self) -> list[TenantLoad]:
        """Each tenant's jobs held here (running or waiting) and its recent slot-seconds, for
        the heartbeat (agent.tenant_loads)."""
        self._usage.sample(self._clock.monotonic())
        held = self._waiting.counts()
        for _, _, tenant in self._carried:
            held[tenant] = held.get(tenant, 0) + 1
        for tenant, n in self._held.items():
            held[tenant] = held.get(tenant, 0) + n
        return self._usage.loads(held)

    def readiness(self) -> str | None:
        """None when this agent takes jobs (for `/ready`), else why it does not: also while
        finished checks have waited for room in the hand-off, with none of its results stored,
        for longer than `handoff_stalled_after` (agent.handoff `HandOff.waited_s`), their slots
        held and no job taken for them."""
        if self._stopping.is_set():
            return "stopping"
        if not self._nc.is_connected:
            return "NATS is not connected"
        if not self._bound:
            return "the jobs consumer is not bound yet"
        waited = self._handoff.waited_s(self._clock.monotonic())
        if waited > self._handoff_stalled_after:
            return (
                f"RESULTS does not store this agent's results in time: finished checks have"
                f" waited for room in the hand-off, none of its results stored, for"
                f" {waited:.0f} s"
                f" ({self._handoff.waiting} now, each holding its slot)"
            )
        return None

    def stop(self) -> None:
        """Stop fetching; `run()` returns once in-flight checks are done or handed back."""
        self._stopping.set()
        self._wake.set()

    async def run(self, *, burst: bool = False) -> None:
        with structlog.contextvars.bound_contextvars(country=self.country, agent_id=self.agent_id):
            # Beating before the consumer is bound: the controllers write a country's `jobs-CC`
            # once its first agent's heartbeat reaches them (shared.streams.JobsConsumers).
            beats = self._start_heartbeat()
            if not await self._subscribe():
                if beats is not None:
                    await beats  # ends with the stop, its last beat saying so
                return
            self._bound = True
            control = await self._listen()
            canaries = None
            if self._self_checks is not None:  # first run now, beside job intake
                canaries = asyncio.create_task(self._self_checks.run(self._stopping))
            keeper = asyncio.create_task(self._keep_in_progress())
            log.info(
                "agent_started",
                capacity=self.capacity,
                tenant_cap=self._waiting.cap,
                lookahead=self._lookahead,
                burst=burst,
                seal_key_ids=sorted(self._seal_keys.ids),
            )
            try:
                await self._loop(burst)
                await self._stop_pulling()
                await self._finish_in_flight()
            finally:
                self._bound = False
                for task in (*self._tasks, *self._storing):
                    task.cancel()  # only left when run() itself is cancelled: a hard kill
                keeper.cancel()
                self._stopping.set()
                await asyncio.wait([keeper])
                if beats is not None:
                    await beats
                if canaries is not None:
                    await canaries
                await self._stop_pulling(wait=False)
                if control is not None:
                    with contextlib.suppress(*NATS_ERRORS):
                        await control.unsubscribe()
            log.info("agent_stopped")

    async def _subscribe(self) -> bool:
        """Whether the country's consumer is there to pull from; wait, backing off, while JOBS
        or `jobs-CC` is missing (the controller creates both at start). False: stopped first."""
        while not self._stopping.is_set():
            wait = self._backoff.next()
            try:
                if await self._ensure_consumer():
                    self._backoff.reset()
                    return True
            except NotFoundError:
                log.warning(
                    "jobs_stream_missing",
                    stream=JOBS_STREAM,
                    retry_in_s=round(wait, 3),
                    hint="the controller creates it at start",
                )
            except NATS_ERRORS as exc:
                log.warning("jobs_consumer_failed", error=repr(exc), retry_in_s=round(wait, 3))
            await self._sleep(wait)
        return False

    async def _ensure_consumer(self) -> bool:
        """Whether `jobs-CC` is there to bind to; NotFoundError while JOBS itself is missing.

        The controller creates and configures every country's consumer. The agent asks
        JetStream itself only when its consumer is missing or has another ack_wait: granted
        on a server without deploy/'s permissions (development, tests), refused with them
        (a `Permissions Violation`, then a timeout), since a consumer's config decides where
        its jobs, secrets included, are delivered."""
        name = jobs_consumer_name(self.country)
        try:
            info = await self._js.consumer_info(JOBS_STREAM, name)
        except NotFoundError as exc:
            if exc.err_code != 10014:  # consumer not found; the stream's own 404 is 10059
                raise
            info = None
        if info is not None and info.config.ack_wait == self._ack_wait:
            return True
        try:
            await self._js.add_consumer(
                JOBS_STREAM, jobs_consumer_config(self.country, self._ack_wait)
            )
        except NATS_ERRORS as exc:
            if info is None:
                log.warning(
                    "jobs_consumer_missing",
                    consumer=name,
                    error=repr(exc),
                    hint="the controller creates every country's consumer at start",
                )
                return False
            log.warning(
                "jobs_consumer_kept",
                consumer=name,
                ack_wait_s=info.config.ack_wait,
                wanted_ack_wait_s=self._ack_wait,
                error=repr(exc),
            )
        return True

    async def _listen(self) -> Subscription | None:
        """Subscribe to this agent's control subject (`Preempt` requests); None when NATS
        refuses (the heartbeat still says `preempt`: a lost request only costs its slot)."""
        try:
            return await self._nc.subscribe(
                control_subject(self.country, self.agent_id), cb=self._on_control
            )
        except NATS_ERRORS as exc:
            log.warning("control_subscribe_failed", error=repr(exc))
            return None

    def _start_heartbeat(self) -> asyncio.Task[None] | None:
        if self._heartbeat_interval is None:
            return None
        beat = Heartbeat(
            self._nc,
            country=self.country,
            agent_id=self.agent_id,
            capacity=self.capacity,
            in_flight=lambda: self.in_flight,
            tenants=self.tenant_loads,
            started_at=self._clock.now(),
            interval=self._heartbeat_interval,
            self_check=self._self_checks.snapshot if self._self_checks else None,
            clock=self._clock,
        )
        return asyncio.create_task(beat.run(self._stopping))

    async def _loop(self, burst: bool) -> None:
        while not self._stopping.is_set():
            free = self._room()
            if free <= 0:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._nc.is_reconnecting:
                # nats-py buffers a pull request published while reconnecting and sends it on
                # reconnect: every fetch tried during an outage would come back as jobs at once.
                await self._sleep(RECONNECT_POLL_S)
                continue
            msgs = await self._fetch(self._asking(free))
            carried = {id(msg): jobs_of(msg, self._clock) for msg in msgs}
            self._metrics.fetched.inc(sum(map(len, carried.values())))
            if self._stopping.is_set():
                for msg in msgs:  # fetched while stopping: give them straight back
                    await _settle(msg.nak)
                return
            jobs = await self._within_room(msgs, carried)
            now = self._clock.monotonic()
            for job in jobs:
                tenant, admitted = _lane_of(job)
                if admitted:
                    self._admitted_at = now
                self._waiting.push(tenant, (job, now))
            self._start_waiting()
            if (
                burst
                and not msgs
                and not self._tasks
                and not self._storing
                and await self._drained()
            ):
                return

    def _room(self) -> int:
        """How many more jobs this agent may hold: running and waiting ones count alike, those
        whose results wait in the hand-off not at all (bounded there, holding no slot). While
        the controller admits this country's jobs (they came `admitted` lately), for the free
        slots only: each was published for a free slot of the country, maybe another agent's."""
        lookahead = self._lookahead
        if (
            self._admitted_at is not None
            and self._clock.monotonic() - self._admitted_at < ADMITTED_FRESH_S
        ):
            lookahead = 0
        return (
            self.capacity + lookahead - len(self._tasks) - len(self._waiting) - len(self._carried)
        )

    def _asking(self, free: int) -> int:
        """How many messages a pull request asks for: `free` jobs' worth, at the jobs per
        message seen lately (a bundle carries many)."""
        return messages_to_ask(free, self._jobs_per_message)

    async def _within_room(
        self, msgs: list[Msg], carried: dict[int, list[Delivery]]
    ) -> list[Delivery]:
        """The jobs of the fetched messages (`carried`, by the id of the message) this agent
        keeps (`within_room`); the other messages go straight back."""
        if not msgs:
            return []
        sizes = [len(carried[id(msg)]) for msg in msgs]
        seen = sum(sizes) / len(msgs)
        self._jobs_per_message = per_message(self._jobs_per_message, seen)
        room = self._room()
        kept, back = within_room(msgs, room, sizes)
        for msg in back:
            await _settle(msg.nak)
        if back:
            log.warning(
                "jobs_beyond_room_handed_back",
                fetched=sum(sizes),
                room=room,
                handed_back=sum(len(carried[id(msg)]) for msg in back),
            )
        jobs: list[Delivery] = []
        for msg in kept:
            if not await self._handed_back_whole(msg, carried[id(msg)]):
                jobs += carried[id(msg)]
        return jobs

    async def _handed_back_whole(self, msg: Msg, parts: list[Delivery]) -> bool:
        """Whether `msg`, a bundle with a job this agent would hand back (selfcheck_rules.
        before_run: a port its canaries say it cannot reach), went back whole, before any of
        its jobs ran: a bundle comes back whole, and its other jobs need not run twice."""
        if self._self_checks is None or not self._self_checks.blocked or len(parts) < 2:
            return False
        jobs: list[CheckJob] = []
        back: list[int] = []
        for part in parts:
            try:
                job = decode_job(part.data)
                seconds_left = _seconds_left(job, self._clock.now())
            except (msgspec.DecodeError, ValueError):
                continue  # rejected when its turn comes
            jobs.append(job)
            blocked = self._blocked_ports(job)
            verdict = before_run(
                blocked=bool(blocked),
                avoided=False,  # a job that avoids agents is never bundled
                delivered=msg.metadata.num_delivered,
                seconds_left=seconds_left,
            )
            if verdict == "hand_back":
                back += [port for port in blocked if port not in back]
        if not back:
            return False
        log.info(
            "bundle_handed_back",
            attempt=msg.metadata.num_delivered,
            blocked_ports=sorted(back),
            job_ids=[job.job_id for job in jobs],
        )
        await _settle(msg.nak, HAND_OVER_DELAY_S)
        return True

    def _start_waiting(self) -> None:
        """Start waiting jobs while a slot is free, the next one as agent.fair_queue says: the
        only place a check starts, so at most `capacity` run, however the jobs arrived. A job
        that waited past its life ends `expired` when its turn comes (run_check), never as a
        check started too late."""
        while len(self._tasks) < self.capacity:
            if self._stopping.is_set():
                return  # handed back by _finish_in_flight
            if self._carried:
                msg, arrived, tenant = self._carried.pop(0)
            elif (picked := self._waiting.pop(self._held, self._usage.usage)) is not None:
                tenant, (msg, arrived) = picked
            else:
                return
            task = asyncio.create_task(self._handle(msg))
            self._tasks[task] = (msg, arrived, tenant)
            self._held[tenant] = self._held.get(tenant, 0) + 1
            now = self._clock.monotonic()
            self._started[task] = now
            self._usage.started(tenant, now)
            self._metrics.in_flight.inc()
            task.add_done_callback(self._done)

    async def _fetch(self, batch: int) -> list[Msg]:
        """What the pull request brought (shared.pulling), waiting up to `fetch_timeout` for
        the first job; a request, when one is sent, asks for `batch`. A connection closed for
        good (nats-py gave up reconnecting, or its owner closed it) stops the agent."""
        if self._nc.is_closed:
            log.error("nats_connection_closed")
            self._stopping.set()
            return []
        try:
            msgs = await self._pull.take(batch, self._fetch_timeout)
        except NATS_ERRORS as exc:
            wait = self._backoff.next()
            log.warning("fetch_failed", error=repr(exc), retry_in_s=round(wait, 3))
            await self._sleep(wait)
            if isinstance(exc, APIError | PullError):  # e.g. the consumer was deleted
                with contextlib.suppress(*NATS_ERRORS):
                    await self._ensure_consumer()
            return []
        self._backoff.reset()
        return msgs

    async def _stop_pulling(self, *, wait: bool = True) -> None:
        """Leave the consumer and hand back (nak) every job that arrived after the last take.
        With `wait`, first stay until the server has ended the open pull request (its own
        status): a job delivered to it after this agent left would reach no one and wait the
        ack wait before another agent of the country got it."""
        try:
            if wait:
                await self._pull.end(LAST_REQUEST_WAIT_MAX_S)
            arrived = await self._pull.close()
        except NATS_ERRORS as exc:
            log.warning("pull_close_failed", error=repr(exc))
            return
        for msg in arrived:
            await _settle(msg.nak)
        if arrived:
            log.info("late_jobs_handed_back", handed_back=len(arrived))

    async def _drained(self) -> bool:
        """Burst mode: nothing left to deliver and nothing delivered but unacked (to anyone)."""
        try:
            info = await self._js.consumer_info(JOBS_STREAM, jobs_consumer_name(self.country))
        except NATS_ERRORS:
            return False
        # A message sitting in our own inbox counts as ack-pending too.
        return not info.num_pending and not info.num_ack_pending

    def _done(self, task: asyncio.Task[None]) -> None:
        self._free_slot(task)
        self._storing.pop(task, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("check_task_crashed", error=repr(exc))

    def _free_slot(self, task: asyncio.Task[None], *, storing: bool = False) -> None:
        """`task`'s check is over: its slot and its tenant's share go back and the next
        waiting job starts. With `storing`, its job stays held until its result is stored."""
        if (taken := self._tasks.pop(task, None)) is None:
            return
        msg, arrived, tenant = taken
        if storing:
            self._storing[task] = (msg, arrived)
        self._held[tenant] -= 1
        if not self._held[tenant]:
            del self._held[tenant]
        started = self._started.pop(task)
        self._usage.ended(tenant, started, self._clock.monotonic())
        self._metrics.in_flight.dec()
        self._start_waiting()
        self._wake.set()

    async def _finish_in_flight(self) -> None:
        for msg, _, _ in self._carried:  # never started: no stream to hand them back to
            await _settle(msg.nak)
        self._carried.clear()
        if self._waiting:
            waiting = [msg for msg, _ in self._waiting.clear()]
            for msg in waiting:  # never started: another agent takes them now
                await _settle(msg.nak)
            log.info("waiting_jobs_handed_back", handed_back=len(waiting))
        tasks = {*self._tasks, *self._storing}
        if not tasks:
            return
        self._results.flush()  # results in the hand-off go now, not after the linger
        # Without a connection no result can be published: do not wait for any.
        grace = 0 if self._nc.is_closed else self._grace
        log.info(
            "waiting_for_in_flight",
            in_flight=len(self._tasks),
            storing=len(self._storing),
            grace_s=grace,
        )
        _, late = await asyncio.wait(tasks, timeout=grace)
        if not late:
            return
        late_msgs = [self._job_of(task) for task in late]
        for task in late:
            task.cancel()
        await asyncio.wait(late)
        for msg in late_msgs:
            await _settle(msg.nak)  # another agent takes it now, not after ack_wait
        log.warning("shutdown_grace_exceeded", handed_back=len(late_msgs), grace_s=grace)

    def _job_of(self, task: asyncio.Task[None]) -> Delivery:
        """The job `task` runs (in a slot) or waits to settle (its result in the hand-off)."""
        if (taken := self._tasks.get(task)) is not None:
            return taken[0]
        return self._storing[task][0]

    async def _keep_in_progress(self) -> None:
        """Every ack_wait / 3, tell JetStream that the jobs held for longer than that (running,
        waiting for a slot, or waiting for their result's store) are still being worked on, so
        that none is redelivered while this agent has it. One task for all jobs; the running
        ones and each lane of waiting ones are in arrival order, so only the old ones are
        visited; those storing are few (the hand-off's bound) and visited all."""
        period = self._ack_wait / 3

        async def one_pass() -> None:
            cutoff = self._clock.monotonic() - period
            held: list[Delivery] = []
            running = ((msg, arrived) for msg, arrived, _ in self._tasks.values())
            for jobs in (running, *self._waiting.lanes()):
                for msg, arrived in jobs:
                    if arrived > cutoff:
                        break
                    held.append(msg)
            held += [msg for msg, arrived in self._storing.values() if arrived <= cutoff]
            for msg in held:  # a copy: checks end while this awaits
                await _settle(msg.in_progress)

        await run_every(period, one_pass, name="in-progress keeper")

    async def _handle(self, msg: Delivery) -> None:
        try:
            job = decode_job(msg.data)
        except msgspec.DecodeError as exc:
            await self._reject(msg, "job_malformed", error=str(exc))
            return
        with structlog.contextvars.bound_contextvars(job_id=job.job_id, monitor_id=job.monitor_id):
            try:
                await self._accept(msg, job)
            except Exception as exc:
                await self._recover(msg, job, exc)

    async def _accept(self, msg: Delivery, job: CheckJob) -> None:
        """Run `job`, or hand it back for another agent of the country, or end it `inconclusive`
        unrun (selfcheck_rules.before_run); `term` it with a log line when no agent could run
        it."""
        if job.country != self.country:
            await self._reject(msg, "job_wrong_country", job_country=job.country)
            return
        try:
            subject = results_subject(job.country, job.monitor_type, job.monitor_id)
            _parse_times(job)
        except ValueError as exc:
            await self._reject(msg, "job_malformed", error=str(exc))
            return
        blocked = self._blocked_ports(job)
        verdict = before_run(
            blocked=bool(blocked),
            avoided=self.agent_id in job.avoid_agents,
            delivered=msg.metadata.num_delivered,
            seconds_left=_seconds_left(job, self._clock.now()),
        )
        if verdict == "hand_back":
            if blocked:
                log.info(
                    "job_handed_back", attempt=msg.metadata.num_delivered, blocked_ports=blocked
                )
            else:
                log.info("job_handed_over", attempt=msg.metadata.num_delivered)
            await _settle(msg.nak, HAND_OVER_DELAY_S)
        elif verdict == "inconclusive":
            if self._self_checks is None:
                raise BrokenInvariant("worker.Worker._accept: only they block a port")
            why = not_run_message(blocked, self._self_checks.states, self.country)
            result = build_result(job, self.agent_id, "inconclusive", why, self._clock.now())
            await self._finish(msg, job, subject, result, time.perf_counter())
        else:
            await self._check(msg, job, subject)

    def _blocked_ports(self, job: CheckJob) -> list[int]:
        """The job's ports this agent's canaries say it cannot reach."""
        if self._self_checks is None:
            return []
        return [port for port in job_ports(job) if port in self._self_checks.blocked]

    async def _recover(self, msg: Delivery, job: CheckJob, exc: Exception) -> None:
        """A bug of the agent's, not an outage of the target: end the job with an `internal`
        result, or, when even that cannot be published, hand it back. Left unsettled, it
        would come back every ack_wait and be dropped without a result after max_deliver."""
        outcome: Outcome = "nak"
        then = None
        try:
            subject = results_subject(job.country, job.monitor_type, job.monitor_id)
            message = f"the agent failed on this job ({type(exc).__name__}); see its log"
            result = build_result(job, self.agent_id, "internal", message, self._clock.now())
            outcome = await self._publish_and_ack(msg, job, subject, result)
        except Exception as second:
            then = repr(second)
            await _settle(msg.nak, self._nak_delay)
        log.error("job_failed", error=repr(exc), then=then, outcome=outcome, exc_info=exc)

    async def _check(self, msg: Delivery, job: CheckJob, subject: str) -> None:
        """Run the check and publish its result; a check cancelled at the controller's request
        (`preempt`) ends as `down` / `preempted` (stored `missed`), its connection closed by the
        cancellation, and is settled like any other."""
        started = time.perf_counter()
        task = asyncio.current_task()
        if task is None:
            raise BrokenInvariant("worker.Worker._check: task is unset")
        since = self._clock.now()
        self._checking[task] = (job.tenant, self._clock.monotonic())
        try:
            result = await self._checked(job)
        except asyncio.CancelledError:
            asked = self._preempting.pop(task, None)
            if asked is None:
                raise
            task.uncancel()
            request, at = asked
            seconds = self._clock.monotonic() - at
            why = preempted_message(request, seconds)
            result = build_result(job, self.agent_id, "preempted", why, since)
            log.info("check_preempted", tenant=job.tenant, after_s=round(seconds, 3))
        finally:
            self._checking.pop(task, None)
        if self._preempting.pop(task, None) is not None and task.cancelling():
            task.uncancel()  # asked as the check ended: its own result stands
        await self._finish(msg, job, subject, result, started)

    def preempt(self, request: Preempt) -> bool:
        """Cancel the longest-running check of `request.tenant` here (its result `preempted`),
        and queue the job the request carries for the next free slot, ahead of pulled ones;
        False when none of its checks runs here (nothing is cancelled)."""
        cancelled = self._cancel_longest(request)
        if request.job is not None:
            self._carry(request.job, cancelled)
        return cancelled

    def _carry(self, job: CheckJob, cancelled: bool) -> None:
        """Queue `job`, carried by a `Preempt`, first for the next free slot (at most
        `capacity` wait); it starts now if a slot is free."""
        if self._stopping.is_set() or len(self._carried) >= self.capacity:
            log.warning("carried_job_dropped", job_id=job.job_id, tenant=job.tenant)
            return
        now = self._clock.monotonic()
        self._carried.append((CarriedJob(job, self.country), now, job.tenant))
        log.info("carried_job_queued", job_id=job.job_id, tenant=job.tenant, cancelled=cancelled)
        self._start_waiting()

    def _cancel_longest(self, request: Preempt) -> bool:
        running = [
            (at, task)
            for task, (tenant, at) in self._checking.items()
            if tenant == request.tenant and task not in self._preempting
        ]
        if not running:
            log.info("preempt_found_no_check", tenant=request.tenant)
            return False
        at, task = min(running, key=lambda pair: pair[0])
        self._preempting[task] = (request, at)
        task.cancel()
        return True

    async def _on_control(self, msg: Msg) -> None:
        """A control message from the controller (`mon.control.CC.<agentId>`): a `Preempt`.
        One that does not decode or is not for this agent is logged and dropped."""
        try:
            request = decode_preempt(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("control_malformed", subject=msg.subject, error=str(exc)[:200])
            return
        if (request.country, request.agent_id) != (self.country, self.agent_id):
            log.warning("control_not_for_this_agent", subject=msg.subject)
            return
        self.preempt(request)

    async def _checked(self, job: CheckJob) -> CheckResult:
        """The job's result: its check run, with what else the job asks for."""
        try:
            opened = open_sealed(job, self._seal_keys)
        except SealingError as exc:
            log.error("job_not_opened", error=str(exc))
            result = build_result(job, self.agent_id, "internal", str(exc), self._clock.now())
        else:
            result = await run_check(
                self._prepared(opened),
                self.agent_id,
                self._allow_private,
                self._ssl,
                self._resolver,
            )
            result = await self._explained(job, result)
            port = opened.port or default_port(opened.monitor_type, opened.config)
            await self._side(Round(opened, result, port, self._resolver))
        return result

    def _prepared(self, job: CheckJob) -> CheckJob:
        """`job` as the prober sees it: prepared by each side check that runs inside the core
        check's session (the open relay test), asked for or not (an ask that does not decode
        is not asked)."""
        for check, _ in self._side_checks:
            if check.prepare is None:
                continue
            try:
                ask = check.wire.ask_of(job.side_checks)
            except SideCheckError:
                ask = None
            job = check.prepare(job, ask)
        return job

    async def _side(self, at: Round) -> None:
        """Run the side checks the job asks for, concurrently, into the result's `sideChecks`
        (in the registry's order), all under one deadline: the job's timeout and
        `side_check_grace` more from when they start (a runner keeps to its own budget; this
        bounds one that does not), so a slot is held for the longest, not the sum. One whose ask
        does not decode, that overstays or that raises gives no facts and is reported, alone, in
        the result's `sideCheckErrors` (`malformed_ask`, `timeout`, `internal`) and logged: a
        side check never spoils, nor holds back, the core check's result or another side
        check's. A round whose agent's own path failed (`inconclusive`) runs none: what they
        would gather is that path's (the controller keeps no side facts of such a result
        either)."""
        job, result = at.job, at.result
        if result.status == "inconclusive":
            return
        asked: list[tuple[str, AnyRunner, object]] = []
        for check, run in self._side_checks:
            name = check.wire.name
            try:
                ask = check.wire.ask_of(job.side_checks)
            except SideCheckError as exc:
                log.warning("side_check_ask_malformed", side_check=name, error=str(exc)[:200])
                result.side_check_errors[name] = "malformed_ask"
                continue
            if ask is not None:
                asked.append((name, run, ask))
        if not asked:
            return
        deadline = asyncio.get_running_loop().time() + job.timeout_seconds
        deadline += self._side_check_grace
        found = await asyncio.gather(
            *(self._side_one(name, run, ask, at, deadline) for name, run, ask in asked)
        )
        for (name, _, _), (facts, error) in zip(asked, found, strict=True):
            if facts is not None:
                result.side_checks[name] = facts
            elif error is not None and name not in result.side_checks:
                # (facts the core check's session gathered for it stand: the relay test's)
                result.side_check_errors[name] = error

    async def _side_one(
        self, name: str, run: AnyRunner, ask: object, at: Round, deadline: float
    ) -> tuple[object, SideCheckErrorKind | None]:
        """One side check's facts by `deadline` (the loop's clock), or why it gave none when
        it overstays (`timeout`) or raises (`internal`), logged under its own name; (None,
        None) when the round gave it nothing to look at."""
        try:
            async with asyncio.timeout_at(deadline):
                return await run(ask, at), None
        except TimeoutError:
            log.error("side_check_overstayed", side_check=name, s=at.job.timeout_seconds)
            return None, "timeout"
        except Exception as exc:  # a side check's bug: the core result still goes out
            log.error("side_check_failed", side_check=name, error=repr(exc)[:200])
            return None, "internal"

    async def _explained(self, job: CheckJob, result: CheckResult) -> CheckResult:
        """`result`, or, when it failed before a server answered and a fresh self-check fails
        the same way, the same result (timings kept) as `inconclusive`, saying which self-check
        failed and what the check saw."""
        if self._self_checks is None or (failure := path_failure(job, result)) is None:
            return result
        if not checked(failure, self._self_checks.states):
            return result
        await self._self_checks.recheck()
        why = explain(failure, self._self_checks.states)
        if why is None:
            return result
        return msgspec.structs.replace(
            result,
            status="inconclusive",
            error_kind="inconclusive",
            message=f"inconclusive: {why}; the check saw: {result.error_kind}: {result.message}"[
                :MESSAGE_MAX
            ],
        )

    async def _finish(
        self, msg: Delivery, job: CheckJob, subject: str, result: CheckResult, started: float
    ) -> None:
        """Publish the result, ack the job, and write the check's one log line."""
        seconds = time.perf_counter() - started
        self._metrics.check(job.monitor_type, result.status, result.error_kind, seconds)
        outcome = await self._publish_and_ack(msg, job, subject, result)
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

    async def _publish_and_ack(
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
        if not self._handoff.fits(job.tenant, len(payload)):
            self._results.flush()  # what waits goes now: room comes back with its store
        await self._handoff.enter(job.tenant, len(payload))
        outcome: Outcome = "nak"
        try:
            task = asyncio.current_task()
            if task is None:
                raise BrokenInvariant("worker.Worker._publish_and_ack: task is unset")
            self._free_slot(task, storing=True)
            outcome = await self._stored_and_settled(msg, subject, payload, result.job_id, job)
            return outcome
        finally:
            self._handoff.leave(job.tenant, len(payload), stored=outcome == "acked")

    async def _stored_and_settled(
        self, msg: Delivery, subject: str, payload: bytes, job_id: str, job: CheckJob
    ) -> Outcome:
        """Publish the result, then ack its job; nak it when the result was not stored."""
        started = time.perf_counter()
        try:
            await self._results.publish(subject, payload, job_id, bundle=job.result_bundles)
        except NATS_ERRORS as exc:
            log.warning(
                "result_publish_failed",
                error=repr(exc),
                ms=round((time.perf_counter() - started) * 1000, 3),
                redeliver_in_s=self._nak_delay,
            )
            self._metrics.publish_failed.inc()
            await _settle(msg.nak, self._nak_delay)
            return "nak"
        self._metrics.published.inc()
        await _settle(msg.ack)
        return "acked"

    async def _reject(self, msg: Delivery, event: str, **fields: object) -> None:
        """Log a message no agent could ever run, and `term` it (no redelivery)."""
        self._metrics.rejected(event)
        log.error(
            event,
            size=len(msg.data),
            subject=msg.subject,
            stream_seq=msg.metadata.sequence.stream,
            **fields,
        )
        await _settle(msg.term)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up early on stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def open_sealed(job: CheckJob, keys: OpeningKeys) -> CheckJob:
    """`job` with its sealed config opened into `config` (in memory only); `job` itself when
    nothing is sealed. Raises SealingError saying which key was needed and which are held,
    never the sealed text."""
    if job.sealed_config is None:
        return job
    try:
        plain = keys.open(job.sealed_config, job.seal_key_id)
    except SealingError as exc:
        raise SealingError(f"cannot open the job's sealed config: {exc}") from None
    try:
        sealed = decode_sealed(plain, type(job.config))
    except msgspec.DecodeError:
        raise SealingError(
            f"the job's sealed config (key {job.seal_key_id}) is not a valid "
            f"{job.monitor_type} config"
        ) from None
    bound = (sealed.monitor_id, sealed.hostname, sealed.port)
    if bound != (job.monitor_id, job.hostname, job.port):
        raise SealingError(
            "the job's sealed config is bound to another monitor, host or port than the job's;"
            " its credentials are not used"
        )
    return msgspec.structs.replace(job, config=sealed.config, sealed_config=None)


def messages_to_ask(free: int, jobs_per_message: float) -> int:
    """Messages for `free` jobs at `jobs_per_message`; at least one."""
    return max(1, int(free / jobs_per_message))


def per_message(average: float, seen: float) -> float:
    """The jobs per message to ask by after a take that brought `seen` on average: up to it at
    once (asking for more messages than there is room for brings jobs that go straight back),
    down slowly (asking for fewer only costs another pull request)."""
    return max(seen, average + (seen - average) * JOBS_PER_MESSAGE_WEIGHT)


def within_room(
    msgs: list[Msg], room: int, sizes: Sequence[int] | None = None
) -> tuple[list[Msg], list[Msg]]:
    """(kept, handed back): an agent holds at most capacity + lookahead jobs running or waiting
    to run (besides those whose results wait in its hand-off, agent.handoff), so of what a fetch
    brought it keeps messages, in arrival order, while what it keeps holds fewer than `room`
    jobs (a message of `sizes[i]` jobs, one each by default: a bundle kept whole may pass room
    by less than its size), and hands the rest back (nak) for any agent of the country. A take
    may bring more than it asked for: after a reconnect a request the server still held may
    deliver beside the new one (shared.pulling). A hand-back spends one of a message's
    deliveries, so one on its last is kept: handing it back would drop it."""
    kept, back = list[Msg](), list[Msg]()
    held = 0
    for i, msg in enumerate(msgs):
        if held < room or msg.metadata.num_delivered >= JOBS_MAX_DELIVER:
            kept.append(msg)
            held += 1 if sizes is None else sizes[i]
        else:
            back.append(msg)
    return kept, back


def _lane_of(msg: Delivery) -> tuple[str, bool]:
    """The job's tenant lane and whether it was `admitted`; a message that is not a job goes
    to the `""` lane, where _handle terms it with a log line."""
    try:
        job = decode_job(msg.data)
    except msgspec.DecodeError:
        return "", False
    return job.tenant, job.admitted


def _seconds_left(job: CheckJob, now: datetime) -> float:
    """From `now` until the job expires; raises ValueError when expiresAt is not an ISO
    time."""
    return (parse_iso(job.expires_at) - now).total_seconds()


def _parse_times(job: CheckJob) -> None:
    """Raises ValueError naming the field when scheduledAt or expiresAt is not an ISO time."""
    for field, value in (("scheduledAt", job.scheduled_at), ("expiresAt", job.expires_at)):
        try:
            parse_iso(value)
        except ValueError:
            raise ValueError(f"{field} is not an ISO-8601 time: {value[:40]!r}") from None


async def _settle(action: Callable[..., Awaitable[None]], *args: float) -> None:
    """ack/nak/term; if it cannot reach the server, the job comes back after ack_wait."""
    try:
        await action(*args)
    except NATS_ERRORS as exc:
        log.warning("job_settle_failed", action=getattr(action, "__name__", "?"), error=repr(exc))
