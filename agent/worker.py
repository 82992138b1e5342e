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

A job's check, from opening its sealed config to its side checks, is the check runner's
(agent.check_runner), run in the job's slot.

Jobs of several organizations share the slots fairly (agent.slots, agent.fair_queue): the agent
pulls ahead of its free slots, up to `lookahead` jobs more, into per-tenant lanes (the tenant
holding fewest slots served first, then the one whose checks held them least lately, then round
robin), and a tenant at its share of the slots (`tenant_share`) waits while another tenant's job
does. Pulled-ahead jobs are held with `in_progress` like running ones, so none is redelivered
while this agent has it, and a job whose life ends while it waits still ends `expired`
(run_check). It never holds more than capacity + lookahead jobs running or waiting to run: what
a fetch brings beyond that goes straight back (`within_room`); with the jobs whose results wait
in the hand-off, at most capacity + lookahead + the hand-off's results.

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
from collections.abc import Mapping
from typing import Any, Final, Self

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from agent import metrics
from agent.bundles import Delivery, jobs_of
from agent.check_runner import SIDE_CHECK_GRACE_S, CheckRunner, seconds_left
from agent.handoff import HANDOFF_STALLED_S, HandOff, Limits
from agent.heartbeat import HEARTBEAT_INTERVAL_S, Heartbeat
from agent.job_feed import DEFAULT_ACK_WAIT_S as DEFAULT_ACK_WAIT_S
from agent.job_feed import JobFeed, Pulling
from agent.probers.run import build_result
from agent.probers.tls import SslContexts
from agent.resolver import TargetResolver
from agent.result_sink import Publishing, ResultSink
from agent.selfcheck import SelfChecks
from agent.selfcheck_rules import (
    HAND_OVER_DELAY_S,
    before_run,
    not_run_message,
)
from agent.settings import AgentSettings, opening_keys
from agent.settle import NATS_ERRORS, settle
from agent.sidechecks import SIDE_CHECKS, AnyRunner
from agent.slots import Slots
from shared.clock import Clock
from shared.guards import BrokenInvariant
from shared.messages import (
    CheckJob,
    Preempt,
    TenantLoad,
    decode_job,
    decode_preempt,
    preempted_message,
)
from shared.publishing import Outbox
from shared.sealing import OpeningKeys
from shared.subjects import (
    control_subject,
    jobs_subject,
    results_bundle_subject,
    results_subject,
)
from shared.timefmt import parse_iso

log = structlog.get_logger(__name__)

# While NATS is away, how often the loop looks whether it is back (no fetch meanwhile).
RECONNECT_POLL_S = 0.1
# Results finished within this of the first of them go to RESULTS together
# (shared.publishing.Outbox): one write, one batch acknowledged together, and their jobs acked
# together after it. A check gives back its slot when its result is handed to the Outbox, so
# the linger costs no slot, only the time until the job's ack (bench/results/slot-linger.md).
RESULT_LINGER_S = 0.1


def default_agent_id(country: str) -> str:
    """`CC-hostname-pid`, reduced to the characters a subject token and a log filter like."""
    host = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname().split(".")[0]).strip("-")
    return f"{country}-{host or 'host'}-{os.getpid()}"


# The feed's and the sink's defaults.
PULLING: Final = Pulling()
PUBLISHING: Final = Publishing()


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
        runner: CheckRunner | None = None,
        concurrency: int = 200,
        tenant_share: float = 0.5,
        lookahead: int | None = None,
        pulling: Pulling = PULLING,
        publishing: Publishing = PUBLISHING,
        shutdown_grace: float = 30.0,
        heartbeat_interval: float | None = HEARTBEAT_INTERVAL_S,
        clock: Clock,
    ) -> None:
        """The worker of its parts: `runner` runs each job's check (agent.check_runner; its
        self-checks are the agent's); `pulling` says how the job feed pulls, `publishing` how
        the result sink publishes. `clock`: the instant results and heartbeats carry and the
        monotonic seconds jobs, slots and the hand-off are timed by (agent.__main__ passes the
        process's). `Worker.of` builds the parts from plain options."""
        jobs_subject(country)  # validates the code
        self._clock = clock
        self.country = country
        self.agent_id = agent_id or default_agent_id(country)
        self.capacity = concurrency
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._runner = runner or CheckRunner(self.agent_id, clock=clock)
        self._grace = shutdown_grace
        self._heartbeat_interval = heartbeat_interval
        self._self_checks = self._runner.self_checks
        self._stopping = asyncio.Event()
        # One pull request open at a time, lasting `fetch_timeout` unless jobs fill it first;
        # consumer or fetch failures: waits from retry_delay doubling to retry_delay_max.
        self._feed = JobFeed(nc, country, self._stopping, pulling)
        self._wake = asyncio.Event()  # a slot freed up, or stop() was called
        self._metrics = metrics.for_country(country)
        self._slots = Slots(
            concurrency,
            country,
            tenant_share=tenant_share,
            lookahead=lookahead,
            start=self._handle,
            stopping=self._stopping,
            wake=self._wake,
            counters=self._metrics,
            clock=clock,
        )
        outbox = Outbox(
            self._js,
            linger_s=RESULT_LINGER_S,
            timeout_s=publishing.publish_timeout,
            bundle_subject=results_bundle_subject(country),
            max_payload=lambda: nc.max_payload,
        )
        limits = publishing.handoff or Limits.for_agent(concurrency)
        self._sink = ResultSink(
            self.agent_id,
            outbox,
            HandOff(limits, self._metrics.handoff, clock.monotonic),
            self._metrics,
            freed=lambda task: self._slots.free(task, storing=True),
            nak_delay=publishing.nak_delay,
            clock=clock,
        )
        self._handoff_stalled_after = publishing.handoff_stalled_after
        self._bound = False  # to the country's consumer, between subscribe() and the end

    @classmethod
    def from_settings(
        cls, nc: NATS, settings: AgentSettings, *, clock: Clock, **overrides: Any
    ) -> Self:
        """The worker and its parts, each built from its own group of `settings`, all on
        `clock`."""
        country, work = settings.identity.agent_country, settings.work
        targets = settings.targets
        options: dict[str, Any] = {
            "agent_id": settings.identity.agent_id,
            "concurrency": work.agent_concurrency,
            "allow_private": targets.agent_allow_private_targets,
            "shutdown_grace": work.agent_shutdown_grace_seconds,
            "seal_keys": opening_keys(settings.sealing),
            "side_checks": {
                name: check.build(settings.side_checks, targets, clock)
                for name, check in SIDE_CHECKS.items()
            },
            "self_checks": SelfChecks.from_settings(settings.self_checks, country, clock),
            "tenant_share": work.agent_tenant_slot_share,
            "resolver": TargetResolver(per_tenant=work.agent_dns_lookups_per_tenant),
            **overrides,
        }
        return cls.of(nc, country, clock=clock, **options)

    @classmethod
    def of(
        cls,
        nc: NATS,
        country: str,
        *,
        agent_id: str | None = None,
        allow_private: bool = False,
        ssl_contexts: SslContexts | None = None,
        side_checks: Mapping[str, AnyRunner] | None = None,
        side_check_grace: float = SIDE_CHECK_GRACE_S,
        seal_keys: OpeningKeys | None = None,
        self_checks: SelfChecks | None = None,
        resolver: TargetResolver | None = None,
        ack_wait: float = DEFAULT_ACK_WAIT_S,
        fetch_timeout: float = 1.0,
        retry_delay: float = 0.5,
        retry_delay_max: float = 30.0,
        publish_timeout: float = 5.0,
        nak_delay: float = 2.0,
        handoff: Limits | None = None,
        handoff_stalled_after: float = HANDOFF_STALLED_S,
        concurrency: int = 200,
        tenant_share: float = 0.5,
        lookahead: int | None = None,
        shutdown_grace: float = 30.0,
        heartbeat_interval: float | None = HEARTBEAT_INTERVAL_S,
        clock: Clock,
    ) -> Self:
        """The worker and its parts from plain options: the check runner's, the feed's
        (`Pulling`), the sink's (`Publishing`), and the worker's own."""
        agent_id = agent_id or default_agent_id(country)
        runner = CheckRunner(
            agent_id,
            allow_private=allow_private,
            ssl_contexts=ssl_contexts,
            side_checks=side_checks,
            side_check_grace=side_check_grace,
            seal_keys=seal_keys,
            self_checks=self_checks,
            resolver=resolver,
            clock=clock,
        )
        return cls(
            nc,
            country,
            agent_id=agent_id,
            runner=runner,
            pulling=Pulling(ack_wait, fetch_timeout, retry_delay, retry_delay_max),
            publishing=Publishing(publish_timeout, nak_delay, handoff, handoff_stalled_after),
            concurrency=concurrency,
            tenant_share=tenant_share,
            lookahead=lookahead,
            shutdown_grace=shutdown_grace,
            heartbeat_interval=heartbeat_interval,
            clock=clock,
        )

    @property
    def in_flight(self) -> int:
        """Checks running now: never more than `capacity`."""
        return self._slots.in_flight

    @property
    def waiting(self) -> int:
        """Jobs taken but not started, for lack of a free slot."""
        return self._slots.waiting

    @property
    def storing(self) -> int:
        """Jobs whose check is over and whose result is in the hand-off, not stored yet: held,
        in no slot."""
        return self._slots.storing

    @property
    def handoff(self) -> HandOff:
        return self._sink.handoff

    @property
    def held_by_tenant(self) -> dict[str, int]:
        """Checks running now, by tenant."""
        return self._slots.held_by_tenant

    @property
    def waiting_by_tenant(self) -> dict[str, int]:
        """Jobs taken but not started, by tenant."""
        return self._slots.waiting_by_tenant

    def tenant_loads(self) -> list[TenantLoad]:
        """Each tenant's jobs held here (running or waiting) and its recent slot-seconds, for
        the heartbeat (agent.tenant_loads)."""
        return self._slots.tenant_loads()

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
        waited = self._sink.handoff.waited_s(self._clock.monotonic())
        if waited > self._handoff_stalled_after:
            return (
                f"RESULTS does not store this agent's results in time: finished checks have"
                f" waited for room in the hand-off, none of its results stored, for"
                f" {waited:.0f} s"
                f" ({self._sink.handoff.waiting} now, each holding its slot)"
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
            if not await self._feed.subscribe():
                if beats is not None:
                    await beats  # ends with the stop, its last beat saying so
                return
            self._bound = True
            control = await self._listen()
            canaries = None
            if self._self_checks is not None:  # first run now, beside job intake
                canaries = asyncio.create_task(self._self_checks.run(self._stopping))
            keeper = asyncio.create_task(
                self._feed.keep_in_progress(self._slots.held_since, self._clock)
            )
            log.info(
                "agent_started",
                capacity=self.capacity,
                tenant_cap=self._slots.tenant_cap,
                lookahead=self._slots.lookahead,
                burst=burst,
                seal_key_ids=sorted(self._runner.seal_keys.ids),
            )
            try:
                await self._loop(burst)
                await self._feed.stop_pulling()
                await self._finish_in_flight()
            finally:
                self._bound = False
                for task in self._slots.held_tasks():
                    task.cancel()  # only left when run() itself is cancelled: a hard kill
                keeper.cancel()
                self._stopping.set()
                await asyncio.wait([keeper])
                if beats is not None:
                    await beats
                if canaries is not None:
                    await canaries
                await self._feed.stop_pulling(wait=False)
                if control is not None:
                    with contextlib.suppress(*NATS_ERRORS):
                        await control.unsubscribe()
            log.info("agent_stopped")

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
            free = self._slots.room()
            if free <= 0:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._nc.is_reconnecting:
                # nats-py buffers a pull request published while reconnecting and sends it on
                # reconnect: every fetch tried during an outage would come back as jobs at once.
                await self._feed.sleep(RECONNECT_POLL_S)
                continue
            msgs = await self._feed.fetch(self._feed.asking(free))
            carried = {id(msg): jobs_of(msg, self._clock) for msg in msgs}
            self._metrics.fetched.inc(sum(map(len, carried.values())))
            if self._stopping.is_set():
                for msg in msgs:  # fetched while stopping: give them straight back
                    await settle(msg.nak)
                return
            jobs = await self._feed.within_room(
                msgs, carried, self._slots.room, self._runner.bundle_handed_back
            )
            self._slots.queue(jobs)
            if burst and not msgs and not self._slots.held_tasks() and await self._feed.drained():
                return

    async def _finish_in_flight(self) -> None:
        unstarted = self._slots.unstarted()
        for msg in unstarted:  # never started: another agent takes them now
            await settle(msg.nak)
        if unstarted:
            log.info("waiting_jobs_handed_back", handed_back=len(unstarted))
        tasks = self._slots.held_tasks()
        if not tasks:
            return
        self._sink.flush()
        # Without a connection no result can be published: do not wait for any.
        grace = 0 if self._nc.is_closed else self._grace
        log.info(
            "waiting_for_in_flight",
            in_flight=self._slots.in_flight,
            storing=self._slots.storing,
            grace_s=grace,
        )
        _, late = await asyncio.wait(tasks, timeout=grace)
        if not late:
            return
        late_msgs = [self._slots.job_of(task) for task in late]
        for task in late:
            task.cancel()
        await asyncio.wait(late)
        for msg in late_msgs:
            await settle(msg.nak)  # another agent takes it now, not after ack_wait
        log.warning("shutdown_grace_exceeded", handed_back=len(late_msgs), grace_s=grace)

    async def _handle(self, msg: Delivery) -> None:
        try:
            job = decode_job(msg.data)
        except msgspec.DecodeError as exc:
            await self._sink.reject(msg, "job_malformed", error=str(exc))
            return
        with structlog.contextvars.bound_contextvars(job_id=job.job_id, monitor_id=job.monitor_id):
            try:
                await self._accept(msg, job)
            except Exception as exc:
                await self._sink.recover(msg, job, exc)

    async def _accept(self, msg: Delivery, job: CheckJob) -> None:
        """Run `job`, or hand it back for another agent of the country, or end it `inconclusive`
        unrun (selfcheck_rules.before_run); `term` it with a log line when no agent could run
        it."""
        if job.country != self.country:
            await self._sink.reject(msg, "job_wrong_country", job_country=job.country)
            return
        try:
            subject = results_subject(job.country, job.monitor_type, job.monitor_id)
            _parse_times(job)
        except ValueError as exc:
            await self._sink.reject(msg, "job_malformed", error=str(exc))
            return
        blocked = self._runner.blocked_ports(job)
        verdict = before_run(
            blocked=bool(blocked),
            avoided=self.agent_id in job.avoid_agents,
            delivered=msg.metadata.num_delivered,
            seconds_left=seconds_left(job, self._clock.now()),
        )
        if verdict == "hand_back":
            if blocked:
                log.info(
                    "job_handed_back", attempt=msg.metadata.num_delivered, blocked_ports=blocked
                )
            else:
                log.info("job_handed_over", attempt=msg.metadata.num_delivered)
            await settle(msg.nak, HAND_OVER_DELAY_S)
        elif verdict == "inconclusive":
            if self._self_checks is None:
                raise BrokenInvariant("worker.Worker._accept: only they block a port")
            why = not_run_message(blocked, self._self_checks.states, self.country)
            result = build_result(job, self.agent_id, "inconclusive", why, self._clock.now())
            await self._sink.finish(msg, job, subject, result, time.perf_counter())
        else:
            await self._check(msg, job, subject)

    async def _check(self, msg: Delivery, job: CheckJob, subject: str) -> None:
        """Run the check and publish its result; a check cancelled at the controller's request
        (`preempt`) ends as `down` / `preempted` (stored `missed`), its connection closed by the
        cancellation, and is settled like any other."""
        started = time.perf_counter()
        task = asyncio.current_task()
        if task is None:
            raise BrokenInvariant("worker.Worker._check: task is unset")
        since = self._clock.now()
        self._slots.checking(task, job.tenant)
        try:
            result = await self._runner.checked(job)
        except asyncio.CancelledError:
            asked = self._slots.preempted(task)
            if asked is None:
                raise
            task.uncancel()
            request, at = asked
            seconds = self._clock.monotonic() - at
            why = preempted_message(request, seconds)
            result = build_result(job, self.agent_id, "preempted", why, since)
            log.info("check_preempted", tenant=job.tenant, after_s=round(seconds, 3))
        finally:
            self._slots.checked(task)
        if self._slots.preempted(task) is not None and task.cancelling():
            task.uncancel()  # asked as the check ended: its own result stands
        await self._sink.finish(msg, job, subject, result, started)

    def preempt(self, request: Preempt) -> bool:
        """Cancel the longest-running check of `request.tenant` here (its result `preempted`),
        and queue the job the request carries for the next free slot (agent.slots); False
        when none of its checks runs here."""
        return self._slots.preempt(request)

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


def _parse_times(job: CheckJob) -> None:
    """Raises ValueError naming the field when scheduledAt or expiresAt is not an ISO time."""
    for field, value in (("scheduledAt", job.scheduled_at), ("expiresAt", job.expires_at)):
        try:
            parse_iso(value)
        except ValueError:
            raise ValueError(f"{field} is not an ISO-8601 time: {value[:40]!r}") from None
