"""The simulation's driver: the real control plane on a real PostgreSQL, in virtual time.

What runs is the product's own code, wired as the composition root wires it
(testkit.scheduling.wired_scheduler, testkit.alerting.wired.wired_alerter), every part given one
`ManualClock`: the scheduler (planner, admission, its due times and `missed` rows), the live
agents view, the results' record (`record.checked`, the ingester's statement), the alerter
(rounds, verdicts, incidents, confirmations, flow incidents and their notices) and the
notification outbox's rows. The world (testkit.sim.world) plays the agents and the mail servers.

What is bypassed, and how:

- NATS (JOBS, RESULTS, heartbeats): jobs go from the publisher's `publish` to the simulated
  agents in memory (`SimPublisher`); results go to `record.checked` in one transaction per
  tick, as the ingester's `_store` does; beats go to `LiveAgents.heard`;
- the ingester's checks of a message (subject, job id, side facts, time window): not run, the
  simulated agents send only well-formed results of the jobs they were given;
- the agents' probes: the world answers, up, refused or a timeout, per server and country;
- preemption: not run (no country saturates); the outbox worker runs (its budgets judged by
  testkit.sim.budgets), its e-mail channel a receiver taking every notice at once (`SimEmail`);
  the verdicts' notices are judged as the queued rows;
- EVENTS (state changes published): not published; states are read from the database.

A controller restart (the world's) stops every part for its spell and composes them again,
nothing kept in memory (`_restart`). The clock moves from one instant something can happen to
the next (a due round, a result's delivery, an alert queue or flow incident due time, a
confirmation round asked for, an agent going or coming back), at least `quantum` seconds and at
most `max_step` apart: a pass of each part runs at each wake. Answers published within the
quantum after a wake's scheduler pass (its own checks', 50 ms later) are stored in that wake: the
clock moves on to them before the ingester's and the alerter's passes, as the real parts run as
soon as a message comes. At the end (every fault over for ten intervals) what the database
holds is judged against the world's truth by the campaigns' judge
(testkit.campaigns.verdict_truth, `judge`), and by the simulation's own checks
(`lost_results`: a result the world delivered never stays replaced by the controller's
`expired` row; `unrecorded`: every job published has a row once its round has closed;
`phantom_rounds`: no round the scheduler never sent is recorded `expired`)."""

import base64
import contextlib
import hashlib
import heapq
import itertools
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from controller.access import accounts_store as accounts
from controller.access import customers_store as customers
from controller.db.migrate import migrate
from controller.db.pool import DB_AWAY, connect, create_pool
from controller.fleet.live import LiveAgents
from controller.ingest import record
from controller.ingest import store as results
from controller.ingest.store import CheckedResult
from controller.jobs import scheme
from controller.jobs.rules import JobIds
from controller.monitors import store as monitors
from controller.notify import Notification, maintenance_store
from controller.notify.budget import Budget
from controller.notify.outbox import OutboxWorker
from controller.scheduling import rules as schedule
from controller.scheduling.publisher import JobPublisher
from controller.scheduling.scheduler import PassDone
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from shared.clock import ManualClock
from shared.guards import BrokenInvariant
from shared.messages import AgentHeartbeat, CheckResult, encode
from shared.subjects import heartbeats_subject
from shared.timefmt import iso_ms
from testkit.alerting.wired import wired_alerter
from testkit.campaigns.verdict_truth import (
    Figures,
    Incident,
    Notice,
    Observed,
    Rules,
    judge,
)
from testkit.scheduling import wired_scheduler
from testkit.sim import budgets, settled, windows
from testkit.sim.kill import Killed, KillingPool
from testkit.sim.world import Failover, Shape, World

DEFAULT_COUNTRIES = 3
# How often the monitors' states are sampled for the judge (seconds of the history).
SAMPLE_S = 60.0
# A flow incident's first notice waits this long for others to join (the campaigns' value).
GROUP_WAIT_S = 5
# How long a failover waits for each backend it ends to exit (milliseconds).
DROP_WAIT_MS = 5000
# The roles the history's sessions are named for (`simulate`), with SEEDED_MARK.
SESSION_ROLES = ("alerter", "ingester", "scheduler")


class SimEmail:
    """The e-mail channel's receiver: every notice arrives at once."""

    name = "email"

    def __init__(self) -> None:
        self.received = 0

    def validate(self) -> None:
        return None

    async def send(self, note: Notification) -> None:
        self.received += 1


class _Sub:
    pending_msgs = 0

    async def unsubscribe(self) -> None:
        return None


class SimNats:
    """The live agents view's connection: always connected, never reconnecting; beats are
    handed to the view by the driver (`LiveAgents.heard`)."""

    is_connected = True
    stats: dict[str, int] = {"reconnects": 0}

    async def subscribe(self, subject: str, cb: Any = None) -> _Sub:
        return _Sub()

    async def flush(self, timeout: float = 5) -> None:  # noqa: ASYNC109 - nats-py's shape
        return None

    def new_inbox(self) -> str:
        return "_INBOX.sim"


class SimJetStream:
    """What the publisher and the alerter's event publisher hold of JetStream: its connection
    (never published on)."""

    def __init__(self) -> None:
        self._nc = SimNats()


class SimPublisher(JobPublisher):
    """The scheduler's publisher with JOBS replaced by the simulated agents' inbox: each job as
    it would go out (its asks sealed), in publish order. Preemption never happens here."""

    def __init__(self, agents: LiveAgents, keys: CountryKeys, job_ids: JobIds, inbox: list[Any]):
        js: Any = SimJetStream()
        super().__init__(js, agents, keys, job_ids.asks, default_countries=DEFAULT_COUNTRIES)
        self._inbox = inbox
        self.published: set[tuple[str, str]] = set()  # (job id, scheduled at) of every job
        self.rounds: set[tuple[str, datetime]] = set()  # (monitor's public id, its round's time)

    async def publish(self, jobs: Sequence[Any]) -> None:
        self._inbox.extend(self._sealed(job) for job in jobs)
        self.published.update((job.job_id, job.scheduled_at) for job in jobs)
        self.rounds.update((job.monitor_id, _parse(job.scheduled_at)) for job in jobs)

    async def preempt(self, preempts: Sequence[Any]) -> None:
        return None


@dataclass
class Run:
    """One history's figures and what the judge found wrong."""

    seed: int
    shape: Shape
    figures: Figures
    misses: list[str]  # verdicts wrong against the truth (`Figures.wrong`)
    lost: list[str]  # delivered results the store holds as the controller's own rows
    world: dict[str, int]
    jobs: int = 0
    results: int = 0
    duplicates: int = 0
    late: int = 0
    ticks: int = 0
    evaluated: int = 0
    restarts: int = 0
    failovers: int = 0
    kills: int = 0  # the controller killed mid-pass (`Kill`) and started again
    struck: list[float] = field(default_factory=list)  # the kills' instants (epoch seconds)
    # outage e-mails per organization: sent and dropped past the budget
    sent: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    db_errors: int = 0  # the parts' passes a failover failed (each retried at the next wake)
    wall_s: float = 0.0
    cpu_s: float = 0.0  # this process's
    # what was judged, to judge again (a test plants a defect in it)
    observed: Observed | None = None
    rules: Rules | None = None
    quantum: float = 1.0
    settled: bool = False  # the settled path's model was on (testkit.sim.settled)
    skipped: int = 0  # the rounds it skipped
    skipped_away: int = 0  # of those, a country's while its agent was away (`away_rounds`)

    def judged(self, observed: Observed) -> Figures:
        """`observed` held against this run's world by the same judge."""
        assert self.rules is not None
        world = World.of(self.seed, self.shape)
        end = world.at(self.shape.seconds).timestamp()
        plain = tuple(t for t in world.targets if t not in world.windows)
        return judge(world.facts(), observed, plain, self.rules, end)

    @property
    def ok(self) -> bool:
        """No verdict wrong, nothing lost. The timing bounds (`late`) are figures: they are the
        campaigns' for an agent's restart, and a stalled agent (beating, answering nothing)
        delays a round to its close once more (its confirmation round waits as long): see
        `past_bounds`."""
        return not self.misses and not self.lost

    @property
    def past_bounds(self) -> list[str]:
        return self.figures.late()

    def replay(self) -> str:
        s = self.shape
        return (
            f"python -m testkit.sim --seed {self.seed} --monitors {s.monitors}"
            + (f" --quantum {self.quantum:g}" if self.quantum != 1.0 else "")
            + f" --hours {s.hours:g} --countries {','.join(s.countries)}"
            + (" --busy" if s.busy else "")
            + (" --calm" if s.calm else "")
            + (f" --at {s.at}" if s.at is not None else "")
            + (" --settled" if self.settled else "")
        )


@dataclass(order=True)
class _Delivery:
    at: float
    n: int
    result: CheckedResult = field(compare=False)
    copy: bool = field(compare=False, default=False)
    late: bool = field(compare=False, default=False)


@dataclass(frozen=True)
class _DueTimes:
    """The alerter's next work (its queue's earliest row, an open flow incident's due time),
    the earliest confirmation round it asked for that the scheduler has not sent, and the
    outbox's earliest pending notice (`outbox_store.outbox_due`'s rows)."""

    queue: datetime | None
    flows: datetime | None
    confirm: datetime | None = None
    outbox: datetime | None = None


@dataclass
class _Waiting:
    """A job in JOBS while its country's agent is gone: taken when it is back, if in time."""

    job: Any
    expires: float


def _result(
    job: Any, cc: str, answer: str | None, started: datetime, timeout: float
) -> CheckResult:
    ends = started + timedelta(seconds=timeout if answer == "timeout" else 0.05)
    down = answer is not None
    return CheckResult(
        job_id=job.job_id,
        monitor_id=job.monitor_id,
        monitor_type="smtp",
        country=cc,
        agent_id=f"{cc}-sim",
        scheduled_at=job.scheduled_at,
        started_at=iso_ms(started),
        finished_at=iso_ms(ends),
        status="down" if down else "up",
        error_kind=answer,
        message=f"connection {answer}" if down else "",
        banner=None if down else "220 sim ESMTP",
        response_time_ms=None if down else 50.0,
    )


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


class Driver:
    """One history: the world, the clock, the product's parts on `pool`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        world: World,
        *,
        quantum: float,
        max_step: float,
        settled: bool = False,
    ):
        self.pool = pool
        # The settled path's model (testkit.sim.settled): settled monitors' rounds skipped
        # while the world leaves them alone.
        self.settled = settled
        self._next_settle = 0.0
        # The parts' database: a kill strikes in one of their statements (testkit.sim.kill).
        self.db = KillingPool(pool, self._drop_backends)
        self.world = world
        self.shape = world.shape
        self.clock = ManualClock(world.start, monotonic=1000.0)
        self.quantum = quantum
        self.max_step = max_step
        # The seed makes the job ids (and with them each result's delivery) and the monitors'
        # public ids (their phases on the grid): the same seed plays the same history.
        self.box = SecretBox(
            base64.urlsafe_b64encode(hashlib.sha256(b"sim%d" % world.seed).digest()).decode()
        )
        # The steady state of this release: rounds' ids seeded and due times kept in
        # `monitor_due` alone (`due_mirrored()` false), as once every live controller says
        # it lets rounds be seeded (controller.jobs.scheme): `seeded_from` before the history,
        # the sessions named with the mark (`simulate`).
        self.seeded_from = world.start - timedelta(days=1)
        self.job_ids = JobIds.from_box(self.box, lambda: self.seeded_from)
        self.keys = CountryKeys(None, clock=self.clock.monotonic)  # no credentials: no sealing
        self.inbox: list[Any] = []
        self.published_all: set[tuple[str, str]] = set()  # every process's publisher's
        self.rounds_all: set[tuple[str, datetime]] = set()  # every process's publisher's
        self._compose()
        self.deliveries: list[_Delivery] = []
        self.alerted = False  # whether the last alerter pass ran a part
        self.waiting: list[_Waiting] = []
        self.count = itertools.count()
        self.states: dict[str, list[tuple[float, str]]] = {}
        self.names: dict[str, str] = {}  # public id → target
        self.delivered: set[str] = set()  # job ids whose result was handed to the store
        self.delivered_how: dict[str, str] = {}
        self.run_figures: dict[str, int] = dict.fromkeys(
            (
                "jobs",
                "results",
                "duplicates",
                "late",
                "ticks",
                "evaluated",
                "restarts",
                "failovers",
                "db_errors",
                "skipped",
                "skipped_away",
            ),
            0,
        )
        self.failing: Failover | None = None  # a failover in the record, until it has struck
        self.struck: list[float] = []  # the instants kills struck (epoch seconds)
        self._beats = {
            cc: encode(
                AgentHeartbeat(
                    agent_id=f"{cc}-sim",
                    country=cc,
                    started_at=iso_ms(world.start),
                    seen_at=iso_ms(world.start),
                    capacity=100_000,
                )
            )
            for cc in self.shape.countries
        }

    def _compose(self) -> None:
        """The controller's parts, as a (re)started process has them: nothing in memory."""
        self.agents = LiveAgents(
            SimNats(),  # type: ignore[arg-type]
            warmup_s=0.0,
            clock=self.clock.monotonic,
            wall=self.clock.now,
        )
        db: Any = self.db
        self.scheduler = wired_scheduler(
            db,
            SimJetStream(),  # type: ignore[arg-type]
            self.agents,
            self.box,
            self.keys,
            default_countries=DEFAULT_COUNTRIES,
            clock=self.clock.now,
        )
        publisher = SimPublisher(self.agents, self.keys, self.job_ids, self.inbox)
        publisher.published = self.published_all
        publisher.rounds = self.rounds_all
        self.scheduler.publisher = publisher
        self.alerter = wired_alerter(
            db,
            SimJetStream(),  # type: ignore[arg-type]
            self.job_ids,
            clock=self.clock.now,
            incident_group_wait_seconds=GROUP_WAIT_S,
            incident_group_interval_seconds=0,
            default_check_countries=DEFAULT_COUNTRIES,
        )
        self.outbox = OutboxWorker(
            db,
            {"email": SimEmail()},
            budget=Budget(email=self.shape.budget),
            clock=self.clock.now,
        )

    async def _restart(self, until: float) -> None:
        """The controller is away until `until` (seconds of the history): nothing is scheduled,
        stored or judged meanwhile (the agents run what they hold, their results wait in the
        stream); then a new process starts, with nothing kept in memory."""
        await self.agents.stop()
        self.clock.advance(max(until - self._offset(), 0.0))
        self._compose()
        await self.agents.start()
        self.run_figures["restarts"] += 1

    async def _killed(self) -> None:
        """The controller died mid-pass (`Killed`): a new process starts at once, with nothing
        kept in memory; what the dead one had not committed is gone."""
        self.struck.append(self.clock.now().timestamp())
        await self.agents.stop()
        self._compose()
        await self.agents.start()

    @contextlib.contextmanager
    def _part(self, part: str) -> Iterator[None]:
        """`part`'s pass runs: a kill armed for it counts its statements."""
        self.db.armed.part = part
        try:
            yield
        finally:
            self.db.armed.part = None

    async def _fail_over(self) -> None:
        """This pass's failover in the results' record, when it has one (`self.failing`): after
        the record's statements, before its commit."""
        if self.failing is not None:
            self.failing = None
            await self._drop_backends()

    async def _drop_backends(self) -> None:
        """A database failover: every backend of the database ended (`pg_terminate_backend`,
        each waited for until it has exited), the one asking last, as a primary's failover drops
        them. The server stays up; the pool replaces its connections on their next acquire, so
        a statement fails only on a connection held through it (the part the failover struck
        in), whatever the sockets' timing."""
        self.run_figures["failovers"] += 1
        async with self.pool.acquire() as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid, $1) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()",
                DROP_WAIT_MS,
            )
            with contextlib.suppress(*DB_AWAY):  # its own connection, dropped as the others
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        await self.pool.expire_connections()

    def _away(self) -> None:
        """A part's pass failed on the database away, as its loop in the controller logs and
        retries it (`DB_AWAY`): counted, retried at the next wake."""
        self.run_figures["db_errors"] += 1

    # -- setup ---------------------------------------------------------------------------------

    async def setup(self) -> None:
        w, s = self.world, self.shape
        async with self.pool.acquire() as conn:
            await conn.execute("UPDATE job_id_scheme SET seeded_from = $1", self.seeded_from)
            if await conn.fetchval("SELECT due_mirrored()"):
                raise BrokenInvariant(
                    "the history's sessions keep due times in monitors too: name them with"
                    f" SEEDED_MARK ({scheme.session_name(SESSION_ROLES)!r}, `simulate`)"
                )
            await results.ensure_partitions(
                conn, w.start - timedelta(days=1), int(s.hours // 24) + 4
            )
            tag = uuid.uuid4().hex[:6]
            orgs: dict[str, tuple[int, Any]] = {}
            for name in sorted({w.organization(t) for t in w.targets}):
                org = await accounts.ensure_organization(conn, f"sim-{w.seed}-{tag}-{name}")
                orgs[name] = (org, await customers.create(conn, org, "Simulated customer"))
            for target in w.targets:
                org, customer = orgs[w.organization(target)]
                m = await monitors.insert(
                    conn,
                    org,
                    {
                        "customer_id": customer.id,
                        "type": "smtp",
                        "name": target,
                        "hostname": f"{target}.sim.test",
                        "port": 25,
                        "status": "active",
                        "check_interval": s.interval,
                        "timeout_seconds": s.timeout,
                        "allowed_country_codes": list(s.countries),
                        "config": {},
                        "notification_email": "oncall@sim.test",
                        "notification_phone_number": None,
                    },
                    self.clock.now(),
                )
                public_id = uuid.UUID(bytes=hashlib.md5(f"{w.seed}:{target}".encode()).digest())
                await conn.execute(
                    "UPDATE monitors SET public_id = $2 WHERE id = $1", m.id, public_id
                )
                self.names[str(public_id)] = target
                for spell in w.windows.get(target, ()):
                    await maintenance_store.insert(
                        conn,
                        org,
                        {
                            "monitor_id": m.id,
                            "kind": "once",
                            "starts_at": w.at(spell.start),
                            "ends_at": w.at(spell.end),
                            "timezone": "UTC",
                            "note": "sim",
                        },
                    )
            # A monitor's creation stamps its grid's start and its first queue row with the
            # database's clock (migrations 0008, 0128): moved to the history's start.
            ids = [org for org, _ in orgs.values()]
            await conn.execute(
                "UPDATE monitors SET rounds_since = $2 WHERE organization_id = ANY($1::bigint[])",
                ids,
                w.start,
            )
            await conn.execute(
                "UPDATE alert_queue q SET due_at = $2 FROM monitors m"
                " WHERE m.id = q.monitor_id AND m.organization_id = ANY($1::bigint[])",
                ids,
                w.start,
            )
        await self.agents.start()

    # -- the parts' passes ----------------------------------------------------------------------

    def _offset(self) -> float:
        return self.world.offset(self.clock.now())

    def _beat(self) -> None:
        now = self._offset()
        for cc in self.shape.countries:
            if self.world.agent_down(cc, now) != "gone":
                self.agents.heard(heartbeats_subject(cc, f"{cc}-sim"), self._beats[cc])

    def _take(self, job: Any, at: float) -> None:
        """The country's agent runs `job` at `at` (seconds), as the world answers; its result is
        delivered when the check ends (later when the world makes it late, twice when it
        publishes it twice)."""
        w = self.world
        cc = job.country
        target = self.names[job.monitor_id]
        answer = w.answer(target, cc, at)
        started = w.at(at)
        result = _result(job, cc, answer, started, float(self.shape.timeout))
        checked = results.decode_result(encode(result))
        ends = w.offset(_parse(result.finished_at))
        late, again = w.delivery(self.delivery_key(job, target))
        first = _Delivery(ends + late, next(self.count), checked, late=late > 0)
        heapq.heappush(self.deliveries, first)
        if again is not None:
            copy = results.decode_result(encode(result))
            heapq.heappush(
                self.deliveries, _Delivery(first.at + again, next(self.count), copy, copy=True)
            )

    def delivery_key(self, job: Any, target: str) -> str:
        """What a job's delivery is drawn by (`World.delivery`): its monitor, country and the
        grid round it is or follows (`t` when off the grid: a confirmation, a check now)."""
        step = self.shape.interval * 1000
        since = int(_parse(job.scheduled_at).timestamp() * 1000) - schedule.phase_ms(
            job.monitor_id, self.shape.interval
        )
        return f"{target}:{job.country}:{since // step}{'' if since % step == 0 else 't'}"

    def _run_jobs(self) -> None:
        now = self._offset()
        jobs, self.inbox[:] = list(self.inbox), []
        self.run_figures["jobs"] += len(jobs)
        for job in jobs:
            expires = self.world.offset(_parse(job.expires_at))
            down = self.world.agent_down(job.country, now)
            if down == "gone":
                self.waiting.append(_Waiting(job, expires))
            elif down is None:
                self._take(job, now)
            # a stalled agent takes the job and never answers: lost
        still: list[_Waiting] = []
        for wait in self.waiting:
            if self.world.agent_down(wait.job.country, now) is None:
                if now < wait.expires:
                    self._take(wait.job, now)
            elif now < wait.expires:
                still.append(wait)
        self.waiting = still

    async def _ingest(self) -> None:
        now = self._offset()
        batch: list[_Delivery] = []
        while self.deliveries and self.deliveries[0].at <= now:
            batch.append(heapq.heappop(self.deliveries))
        if not batch:
            return
        # Handed to the controller: a result whose store failed must still end stored (sent
        # again by the stream), or `lost_results` and `unrecorded` find it.
        self.delivered.update(d.result.job_id for d in batch)
        try:
            with self._part("record"):
                async with self.db.acquire() as conn, conn.transaction():
                    await record.checked(
                        conn, [d.result for d in batch], DEFAULT_COUNTRIES, self.clock.now()
                    )
                    await self._fail_over()  # its statements run, its commit not yet
        except Killed:
            # Not acknowledged by the dead process: the stream delivers them again.
            for d in batch:
                heapq.heappush(self.deliveries, d)
            await self._killed()
            return
        except DB_AWAY:
            # Not acknowledged: the stream delivers them again (at the next wake here).
            for d in batch:
                heapq.heappush(self.deliveries, d)
            self._away()
            return
        self.run_figures["results"] += sum(not d.copy for d in batch)
        self.run_figures["duplicates"] += sum(d.copy for d in batch)
        self.run_figures["late"] += sum(d.late for d in batch)
        for d in batch:
            how = "late" if d.late else "copy" if d.copy else "on time"
            self.delivered_how[d.result.job_id] = (
                f"{how}, stored {self.clock.now():%H:%M:%S}, {d.result.status}"
            )

    async def _due_times(self) -> _DueTimes:
        """When the alerter's parts next have work (the earliest alert queue row and the
        earliest due time of an open flow incident), the earliest confirmation round asked
        for and not sent, and the earliest pending notice (one statement)."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT (SELECT min(due_at) FROM alert_queue) AS queue,"
                " (SELECT min(due_at) FROM flow_incidents WHERE ended_at IS NULL) AS flows,"
                " (SELECT min(requested_at) FROM confirmation_rounds WHERE sent_at IS NULL)"
                " AS confirm,"
                " (SELECT min(next_attempt_at) FROM notification_outbox WHERE status = 'pending')"
                " AS outbox"
            )
        assert row is not None
        return _DueTimes(row["queue"], row["flows"], row["confirm"], row["outbox"])

    async def _alert(self, due: _DueTimes) -> _DueTimes:
        """The alerter's pass, each part woken only when `due` says it has work: the evaluator
        while a queue row is due (`alert_queue.claim` leases rows due now, nothing else; the
        due times read after each of its passes say whether one is left), the teller while a
        flow incident is open with a due time (`flows.due` and `flows.first_waiting` read only
        those), one the evaluator opened in this pass included, as the alerter's own pass tells
        it at once. Otherwise each part's statements find nothing. `self.alerted` says whether
        any part ran. The due times as they stand after the pass: read once after the last
        part that ran."""
        now = self.clock.now()
        evaluated = 0
        self.alerted = False
        read = True  # `due` is as the database holds it
        while due.queue is not None and due.queue <= now:
            self.alerted = True
            n = await self.alerter.evaluator.evaluate_due()
            evaluated += n
            due = await self._due_times()
            if not n:  # none it could lease: the rest wait for their leases to end
                break
        if due.flows is not None:
            self.alerted, read = True, False
            await self.alerter.teller.send_due()
        self.run_figures["evaluated"] += evaluated
        return due if read else await self._due_times()

    async def _settle(self) -> None:
        """Skip the rounds of the settled monitors the world leaves alone (testkit.sim.settled)
        up to `LEAD` intervals before the next thing that touches each."""
        now = self._offset()
        flying = {d.result.monitor_id for d in self.deliveries}
        flying |= {w.job.monitor_id for w in self.waiting}
        ids: list[int] = []
        rounds: list[int] = []
        away: list[dict[str, int]] = []
        step = self.shape.interval
        async with self.pool.acquire() as conn:
            for c in await settled.candidates(conn, self.clock.now(), step):
                until = settled.quiet_until(self.world, c.name, now)
                if until is not None and c.public_id not in flying:
                    due = self.world.offset(c.next_due_at)
                    n = settled.rounds_until(due, until, step)
                    ids.append(c.id)
                    rounds.append(n)
                    away.append(settled.away_rounds(self.world, due, n))
            self.run_figures["skipped"] += await settled.skip(conn, ids, rounds, away)
            self.run_figures["skipped_away"] += sum(n for a in away for n in a.values())

    async def _sample(self) -> None:
        at = self.clock.now().timestamp()
        # With the settled path's model, a monitor a skip holds is left out (nothing touches
        # its rows until its rounds run again); `horizon` None samples every monitor.
        horizon = (
            self.clock.now() + timedelta(seconds=2 * self.shape.interval) if self.settled else None
        )
        # The history's database holds its world's monitors only.
        async with self.pool.acquire() as conn:
            if horizon is None:
                rows = await conn.fetch(
                    "SELECT m.name, s.state FROM monitors m"
                    " JOIN monitor_alert_state s ON s.monitor_id = m.id"
                )
            else:  # by the due times' index: the few monitors whose rounds run
                rows = await conn.fetch(
                    "SELECT m.name, s.state FROM monitor_due d"
                    " JOIN monitors m ON m.id = d.monitor_id"
                    " JOIN monitor_alert_state s ON s.monitor_id = d.monitor_id"
                    " WHERE d.next_due_at <= $1::timestamptz",
                    horizon,
                )
        for r in rows:
            self.states.setdefault(r["name"], []).append((at, r["state"]))

    async def _next_due(self, earliest: datetime | None, due: _DueTimes) -> float:
        """The next instant something is due, in seconds of the history (`due`: the alerter's
        due times as they stand after its pass)."""
        found = [self.world.offset(t) for t in (earliest, due.queue, due.flows) if t]
        if self.deliveries:
            found.append(self.deliveries[0].at)
        now = self._offset()
        found += [e for e in self._edges[self._edge_at :][:1]]
        found += [r.start for r in self.world.restarts if r.start > now][:1]
        found += [f.at for f in self.world.failovers if f.at > now][:1]
        found += [k.at for k in self.world.kills if k.at > now][:1]
        if self.waiting:
            found.append(now + self.quantum)
        return min(found, default=now + self.max_step)

    # -- the history ----------------------------------------------------------------------------

    async def play(self) -> None:
        s = self.shape
        end = s.seconds
        self._edges = self.world.edges()
        self._edge_at = 0
        next_sample = 0.0
        unplanned = True
        seen: PassDone | None = None
        restarts = iter(self.world.restarts)
        restart = next(restarts, None)
        failovers = iter(self.world.failovers)
        failover = next(failovers, None)
        kills = iter(self.world.kills)
        kill = next(kills, None)
        unsent = False  # an outbox pass the database failed
        while True:
            now = self._offset()
            if restart is not None and now >= restart.start:
                await self._restart(restart.end)
                seen = None
                restart = next(restarts, None)
                now = self._offset()
            while self._edge_at < len(self._edges) and self._edges[self._edge_at] <= now:
                self._edge_at += 1
            if failover is not None and now >= failover.at:
                if failover.part == "record":
                    self.failing = failover
                else:  # before that part's next statement (testkit.sim.kill)
                    self.db.armed.arm_failover(failover.part)
                failover = next(failovers, None)
            if kill is not None and now >= kill.at:
                self.db.armed.arm(kill.part, kill.statement)
                kill = next(kills, None)
            self._beat()
            earliest: datetime | None = None
            retry = False
            try:
                with self._part("scheduler"):
                    if unplanned and await self.scheduler.plan_new():
                        seen = None  # planning forces a full pass, as the scheduler's loop does
                    # A pass before the earliest due time the last one saw claims nothing (the
                    # scheduler's own loop, `Scheduler.run`).
                    idle = seen is not None and schedule.nothing_due(
                        seen.earliest, self.clock.now()
                    )
                    done = seen = await self.scheduler.run_pass(nothing_due=idle)
                unplanned, earliest = done.unplanned, done.earliest
            except Killed:
                await self._killed()
                seen, unplanned, retry = None, True, True
            except DB_AWAY:
                self._away()
                seen, retry = None, True
            self._run_jobs()
            # Answers published within the quantum (this pass's checks', 50 ms on) are stored in
            # this wake: the clock moves on to the last of them first.
            if self.deliveries and now < self.deliveries[0].at < now + self.quantum:
                ahead = max(d.at for d in self.deliveries if d.at < now + self.quantum)
                self.clock.advance(ahead - now + 0.001)  # past the last one's millisecond
                now = self._offset()
            await self._ingest()  # a `record` failover strikes in the first store from its instant
            told = False  # a notice the alerter's pass may have queued is due
            try:
                with self._part("alerter"):
                    due = await self._alert(await self._due_times())
                told = due.outbox is not None and due.outbox <= self.clock.now()
            except Killed:
                await self._killed()
                due, retry, told = _DueTimes(None, None), True, True
            except DB_AWAY:
                self._away()
                due, retry, told = _DueTimes(None, None), True, True
            # The outbox: what the alerter queued is sent (or dropped past its budget) at once.
            # Only the alerter queues notices here, and no send fails: a wake it did not run
            # at, or after which no notice is due, has nothing to send (its round trips saved).
            if (self.alerted and told) or unsent:
                try:
                    await self.outbox.burst()
                    unsent = False
                except DB_AWAY:
                    self._away()
                    unsent = retry = True
            if self.settled and now >= self._next_settle:
                try:
                    await self._settle()
                    self._next_settle = now + s.interval
                except DB_AWAY:
                    self._away()
            self.run_figures["ticks"] += 1
            if now >= next_sample:
                try:
                    await self._sample()
                    next_sample = now + SAMPLE_S
                except DB_AWAY:
                    self._away()
            if now >= end:
                break
            wake = await self._next_due(earliest, due)
            # a confirmation round the alerter asked for, or a pass the database failed, goes
            # at the next pass (the scheduler's own loop passes at least every IDLE_MAX_S)
            if due.confirm is not None or retry:
                wake = min(wake, now + self.quantum)
            wake = min(max(wake, now + self.quantum), now + self.max_step, end)
            self.clock.advance(max(wake - now, 0.0))

    # -- what it made of it ------------------------------------------------------------------------

    async def observed(self) -> Observed:
        async with self.pool.acquire() as conn:
            names = list(self.world.targets)
            incidents = [
                Incident(
                    r["id"],
                    r["name"],
                    r["started_at"].timestamp(),
                    r["opened_at"].timestamp(),
                    r["ended_at"].timestamp() if r["ended_at"] else None,
                    r["flow_incident_id"],
                    r["flow_ended_at"].timestamp() if r["flow_ended_at"] else None,
                )
                for r in await conn.fetch(
                    "SELECT i.id, m.name, i.started_at, i.opened_at, i.ended_at,"
                    " i.flow_incident_id, f.ended_at AS flow_ended_at FROM incidents i"
                    " JOIN monitors m ON m.id = i.monitor_id"
                    " LEFT JOIN flow_incidents f ON f.id = i.flow_incident_id"
                    " WHERE m.name = ANY($1::text[])",
                    names,
                )
            ]
            notices = [
                Notice(
                    r["name"],
                    r["incident_id"],
                    r["kind"],
                    r["created_at"].timestamp(),
                    r["flow_incident_id"],
                    r["dedupe_key"],
                    r["channel"],
                    r["source"],
                )
                for r in await conn.fetch(
                    "SELECT m.name, o.incident_id, o.kind, o.created_at, o.dedupe_key,"
                    " o.channel, o.source, i.flow_incident_id FROM notification_outbox o"
                    " JOIN monitors m ON m.id = o.monitor_id"
                    " LEFT JOIN incidents i ON i.id = o.incident_id"
                    " WHERE m.name = ANY($1::text[])",
                    names,
                )
            ]
            final = {
                r["name"]: r["state"] or "absent"
                for r in await conn.fetch(
                    "SELECT m.name, s.state FROM monitors m LEFT JOIN monitor_alert_state s"
                    " ON s.monitor_id = m.id WHERE m.name = ANY($1::text[])",
                    names,
                )
            }
        return Observed(self.states, incidents, notices, final)

    async def lost_results(self) -> list[str]:
        """Results the world delivered that the store does not hold as the agent's: a row
        without an agent (`expired`, `missed`) for a job whose result was stored."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT c.job_id, c.scheduled_at, c.country, c.status, c.error_kind, c.stored_at"
                " FROM check_results c"
                " JOIN monitors m ON m.id = c.monitor_id"
                " WHERE m.name = ANY($1::text[]) AND c.agent_id IS NULL",
                list(self.world.targets),
            )
            lost = [r for r in rows if r["job_id"] in self.delivered]
            near = await conn.fetch(
                "SELECT c.job_id, c.scheduled_at, c.country, c.status, c.agent_id"
                " FROM check_results c JOIN unnest($1::text[]) AS l(job) ON true"
                " WHERE c.job_id = l.job OR c.job_id IN (SELECT job_id FROM check_results"
                "   WHERE job_id = l.job)",
                [r["job_id"] for r in lost],
            )
        if near:
            print("  rows of the lost jobs:", [tuple(r.values()) for r in near][:10])
        return [
            f"{r['job_id']} ({r['country']} {r['scheduled_at']:%Y-%m-%d %H:%M:%S}):"
            f" delivered, stored {r['status']} / {r['error_kind']} at {r['stored_at']:%H:%M:%S}"
            f" ({self.delivered_how.get(r['job_id'], '')})"
            for r in rows
            if r["job_id"] in self.delivered
        ]

    async def budget_rows(self) -> list[budgets.Row]:
        """The monitors' outage e-mails as the outbox left them, with their organizations."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT m.name, o.status, o.created_at, o.last_error,"
                " coalesce(o.sent_at, (SELECT min(h.at) FROM alert_history h"
                "   WHERE h.outbox_id = o.id AND h.status = 'dropped')) AS done"
                " FROM notification_outbox o JOIN monitors m ON m.id = o.monitor_id"
                " WHERE m.name = ANY($1::text[]) AND o.channel = 'email'"
                " AND o.source = 'outage'",
                list(self.world.targets),
            )
        return [
            budgets.Row(
                self.world.organization(r["name"]),
                r["status"],
                r["created_at"],
                r["done"],
                r["last_error"],
            )
            for r in rows
        ]

    async def unrecorded(self) -> list[str]:
        """Jobs published whose round has closed (a round closes at most 75 s after its time
        here: its expiry, the timeout and 5 s) with no row at all: a result neither stored nor
        recorded `expired` at the close."""
        closed_by = self.world.at(self.shape.seconds - 2 * self.shape.interval - 60)
        wanted = {job for job, at in self.published_all if _parse(at) < closed_by}
        async with self.pool.acquire() as conn:
            found = {
                r["job_id"]
                for r in await conn.fetch(
                    "SELECT c.job_id FROM check_results c JOIN monitors m ON m.id = c.monitor_id"
                    " WHERE m.name = ANY($1::text[])",
                    list(self.world.targets),
                )
            }
        return [
            f"job {job}: published, no row once its round closed" for job in sorted(wanted - found)
        ]

    async def phantom_rounds(self) -> list[str]:
        """`expired` rows of rounds the scheduler never sent a job of: the alerter filled a
        round its grid rule expected (`ready_rounds.grid_rounds`) that the scheduler's did not
        send."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT m.public_id::text AS monitor, c.scheduled_at, c.country"
                " FROM check_results c JOIN monitors m ON m.id = c.monitor_id"
                " WHERE m.name = ANY($1::text[]) AND c.error_kind = 'expired'"
                " AND c.agent_id IS NULL",
                list(self.world.targets),
            )
        return [
            f"{r['monitor']} ({r['country']} {r['scheduled_at']:%Y-%m-%d %H:%M:%S.%f}):"
            " recorded expired, a round never sent"
            for r in rows
            if (r["monitor"], r["scheduled_at"]) not in self.rounds_all
        ]

    def rules(self) -> Rules:
        s = self.shape
        return Rules(
            interval=s.interval,
            timeout=s.timeout,
            countries=s.countries,
            group_wait=GROUP_WAIT_S,
            group_interval=0,
        )


async def run_one(
    pool: asyncpg.Pool,
    seed: int,
    shape: Shape,
    *,
    quantum: float = 1.0,
    max_step: float | None = None,
    settled: bool = False,
) -> Run:
    """One history; `max_step`: the longest step of the clock between wakes (by default 30 s,
    600 s with the settled path's model, whose skipped rounds leave long calm spans)."""
    world = World.of(seed, shape)
    step = max_step if max_step is not None else 600.0 if settled else 30.0
    driver = Driver(pool, world, quantum=quantum, max_step=step, settled=settled)
    started, cpu = time.perf_counter(), time.process_time()
    await driver.setup()
    try:
        await driver.play()
    finally:
        await driver.agents.stop()
    observed = await driver.observed()
    end = world.at(shape.seconds).timestamp()
    # A monitor with a maintenance window is judged by the windows' rule instead (its notices
    # held are owed at the window's end, not at the outage's).
    plain = tuple(t for t in world.targets if t not in world.windows)
    rules = driver.rules()
    figures = judge(world.facts(), observed, plain, rules, end)
    base = world.start.timestamp()
    held = windows.judged(
        {t: [(base + s.start, base + s.end) for s in ws] for t, ws in world.windows.items()},
        observed.incidents,
        observed.notices,
        rules.recover_bound + shape.interval,
    )
    lost = await driver.lost_results() + await driver.unrecorded() + await driver.phantom_rounds()
    spent = await driver.budget_rows()
    held += budgets.judged(spent, shape.budget, quantum + 1.0)
    f = driver.run_figures
    return Run(
        seed,
        shape,
        figures,
        figures.wrong() + held,
        lost,
        world.described(),
        jobs=f["jobs"],
        results=f["results"],
        duplicates=f["duplicates"],
        late=f["late"],
        ticks=f["ticks"],
        evaluated=f["evaluated"],
        restarts=f["restarts"],
        failovers=f["failovers"],
        kills=len(driver.struck),
        struck=driver.struck,
        sent=dict(Counter(r.organization for r in spent if r.status == "sent")),
        dropped=dict(Counter(r.organization for r in spent if r.status == "dropped")),
        db_errors=f["db_errors"],
        wall_s=time.perf_counter() - started,
        cpu_s=time.process_time() - cpu,
        observed=observed,
        rules=driver.rules(),
        quantum=quantum,
        settled=settled,
        skipped=f["skipped"],
        skipped_away=f["skipped_away"],
    )


@asynccontextmanager
async def database(server_url: str, template: str | None = None) -> AsyncIterator[str]:
    """A fresh migrated database on `server_url`'s server (copied from `template` when given),
    dropped at exit."""
    name = f"sim_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_url)
    try:
        extra = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{extra}')
    finally:
        await admin.close()
    url = _with_database(server_url, name)
    if template is None:
        conn = await connect(url)
        await migrate(conn)
        await conn.close()
    try:
        yield url
    finally:
        admin = await asyncpg.connect(server_url)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def _with_database(url: str, name: str) -> str:
    base, sep, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}{sep}{query}"


async def simulate(
    url: str,
    seed: int,
    shape: Shape,
    *,
    template: str | None = None,
    quantum: float = 1.0,
    settled: bool = False,
) -> Run:
    """One history on a database of its own beside `url`'s (copied from `template` when
    given)."""
    async with database(url, template) as db:
        pool = await create_pool(db, 4, application_name=scheme.session_name(SESSION_ROLES))
        try:
            return await run_one(pool, seed, shape, quantum=quantum, settled=settled)
        finally:
            await pool.close()


def describe(run: Run) -> str:
    f = run.figures
    days = run.shape.hours / 24
    return (
        f"seed {run.seed}: {'ok' if run.ok else 'FAILED'}; {len(run.figures.detection_s)} outages"
        f" timed, {f.outages} owed, {f.blips} blips, {f.monitor_incidents} incidents,"
        f" {f.flow_incidents} flow incidents; {run.jobs} jobs, {run.results} results"
        f" ({run.duplicates} twice, {run.late} late); {run.restarts} controller restarts;"
        f" {run.failovers} database failovers ({run.db_errors} passes failed);"
        f" {run.kills} controller kills mid-pass;"
        + (
            f" {run.skipped} rounds skipped by the settled path's model ({run.skipped_away}"
            " countries' checks of them with the agent away);"
            if run.settled
            else ""
        )
        + f" outage e-mails sent {run.sent}, dropped past the budget {run.dropped};"
        f" {run.ticks} ticks; world {run.world};"
        f" {days * run.shape.monitors:.1f} monitor-days in {run.wall_s:.1f} s"
        f" (this process {run.cpu_s:.1f} s CPU); detection p99 {f.detection_p99_s:.1f} s"
        + (f"; timing past the bounds: {', '.join(run.past_bounds)}" if run.past_bounds else "")
    )


def env_seeds(default: str) -> list[int]:
    """SIM_SEEDS: `1-20` or `1,5,9`."""
    text = os.environ.get("SIM_SEEDS", default)
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    return seeds
