"""The scheduler: due monitors → one check job per country on `mon.jobs.CC`.

Each round is planned by controller.scheduling.plan (pure); this worker claims the monitors,
holds what the login cap and the round-trip caps do not allow, publishes the jobs and stores the
missed rows. A config with credentials is sealed to the job's country: the job carries it as
`sealedConfig`, its `config` is the type's default, and a country without a public key gets no
job, only a `no_seal_key` round: credentials never go out in clear.

Each batch is claimed in a transaction (`SKIP LOCKED`, so replicas share the work), its jobs are
published with `Nats-Msg-Id` = job id and their acks awaited, then the monitors' next due times
are written and the transaction commits. A crash before the commit leaves the monitors due: the
next claim republishes the same job ids and JetStream drops the duplicates.

No network call happens in a transaction other than the publish to NATS: a monitor with an OAuth2
login whose access token is not cached is left due (its row unlocked at the commit), its token is
fetched in the background (controller.oauth2.tokens, bounded per organization), and it is claimed
again, with the outcome, once the fetch is done; claims skip it meanwhile. So a hanging token
endpoint holds no row lock and delays no other organization's rounds, and the round it delays
is sent late, or recorded `overdue`, or `oauth2_token` when no token came, as rounds are.
"""

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import UUID

import asyncpg
import structlog
from nats.js import JetStreamContext

from controller.db.pool import Conn
from controller.fleet.live import LiveAgents
from controller.ingest import alert_queue_store as alert_queue
from controller.ingest import store as results
from controller.jobs import rules as job_rules
from controller.jobs.result_kinds import NO_SEAL_KEY, ResultRow
from controller.logins import account_store as account_logins
from controller.logins import cap as login_cap
from controller.logins.backoff import CAPPED, HELD
from controller.monitors import limits_store as limits
from controller.monitors.store import WatchedMonitor
from controller.notify.links import NO_LINKS, Links
from controller.oauth2.tokens import TokenFailure, TokenService
from controller.observability import metrics
from controller.roundtrips import rounds_store as roundtrip_rounds
from controller.roundtrips import sends as roundtrip_sends
from controller.scheduling import bundles, login_cap_notice
from controller.scheduling import confirm_store as confirmations
from controller.scheduling import deferred_store as deferred
from controller.scheduling import due_store as due
from controller.scheduling import plan as planning
from controller.scheduling import rules as schedule
from controller.scheduling.admission_ledger import Admissions
from controller.scheduling.due_store import ClaimedMonitor, Unplanned
from controller.scheduling.plan import PlannedRound, RoundPlanner
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.sidechecks.blocklists.rules import BlockList
from controller.sidechecks.readiness import budget_store as readiness_budget
from controller.sidechecks.readiness.budget import QUERIES_PER_HOUR as READINESS_QUERIES_PER_HOUR
from controller.sidechecks.readiness.budget import READINESS
from shared.loop import run_every
from shared.messages import (
    FEATURE_BUNDLES,
    FEATURE_LOOK_ONLY,
    FEATURE_OAUTH2,
    CheckJob,
    Preempt,
)
from shared.publishing import Publisher
from shared.secret import Secret
from shared.timefmt import iso_ms, parse_iso, utcnow

log = structlog.get_logger(__name__)

PUBLISH_TIMEOUT_S = 10.0
IDLE_MAX_S = 0.5
# While jobs wait for a slot, a pass comes at least this often to give them the slots freed.
WAITING_RETRY_S = 0.2
PLAN_EVERY_S = 0.5
# A pass's due rounds end after this long even when more are due (the next pass follows at
# once): a scheduler behind its rounds still plans new monitors, sends confirmation rounds and
# deferred logins, and sees a stop, between batches.
PASS_MAX_S = 1.0


class PassDone(NamedTuple):
    """What a pass did: jobs published, the earliest due time of a monitor or deferred login
    left (None: none), and whether a monitor waits to be planned (`due.Waiting.unplanned`)."""

    jobs: int
    earliest: datetime | None
    unplanned: bool


class Scheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        agents: LiveAgents,
        box: SecretBox,
        keys: CountryKeys,
        *,
        default_countries: int = 2,
        batch: int = 1000,
        gather_s: float = 0.5,
        dns_interval_s: int = 3600,
        login_spacing_s: float = 5.0,
        login_cap: int = 1000,
        trigger_burst: int = 3,
        checks_per_minute: int = 2000,
        mails_per_domain: int = 60,
        confirm_per_minute: int = 600,
        result_bundles: bool = False,
        blocklists: tuple[BlockList, ...] = (),
        blocklist_interval_s: int = 6 * 3600,
        fresh: Callable[[str], Collection[str]] = lambda cc: (),
        known: Callable[[int, str], Collection[str]] = lambda monitor_id, cc: (),
        asked_at: Callable[[int, str], datetime | None] = lambda monitor_id, cc: None,
        tokens: TokenService | None = None,
        links: Links = NO_LINKS,
        clock: Callable[[], datetime] = utcnow,
        readiness_queries: int = READINESS_QUERIES_PER_HOUR,
    ) -> None:
        """`links`: where the owners' login cap notice points them; `readiness_queries`: each
        organization's readiness DNS queries per hour and country (READINESS_QUERIES_PER_HOUR,
        controller.sidechecks.readiness.budget)."""
        self._readiness_queries = readiness_queries
        self._pool = pool
        self._tokens = tokens  # OAuth2 access tokens; None: OAuth2 logins are never sent
        self._links = links
        self._mails_per_domain = mails_per_domain  # ROUNDTRIP_MAILS_PER_DOMAIN_PER_MINUTE
        self._confirm_per_minute = confirm_per_minute  # CONFIRM_ROUNDS_PER_MINUTE
        self._login_cap = login_cap  # the ceiling per organization and account
        self._trigger_burst = trigger_burst
        self._js = js
        self._publisher = Publisher(js, timeout_s=PUBLISH_TIMEOUT_S)
        self._agents = agents
        self._keys = keys
        self._planner = RoundPlanner(
            job_rules.JobIds.from_box(box),
            box,
            keys,
            default_countries=default_countries,
            dns_interval_s=dns_interval_s,
            login_spacing_s=login_spacing_s,
            result_bundles=result_bundles,
            blocklists=blocklists,
            blocklist_interval_s=blocklist_interval_s,
            fresh=fresh,
            known=known,
            asked_at=asked_at,
        )
        self._default_countries = default_countries
        self._checks_per_minute = checks_per_minute  # ORG_MAX_CHECKS_PER_MINUTE
        self._batch = batch
        self._gather_s = gather_s  # SCHEDULER_GATHER_SECONDS
        self._clock = clock
        # Jobs go out only while their country has a slot for them (scheduling.admission_rules).
        self._admissions = Admissions(agents.load, agents.now)

    async def run(self, stop: asyncio.Event) -> None:
        """Schedule until `stop` is set; errors are logged and retried, never fatal.

        Passes are spaced by `schedule.pass_spacing`: each has a fixed cost (its transaction,
        the publish flush, and the wake-ups its jobs set off at the agents, the ingester and the
        alerter), so at a rate of jobs falling due where a pass per due monitor would spend more
        on that than on the jobs, a pass waits (at most `gather_s`) to carry about
        `schedule.PASS_JOBS` jobs (the wait drawn between half and all of that, so replicas
        share what falls due); a round then starts up to `gather_s` after its due time, and its
        results keep the due time. At high rates passes are full anyway and come every
        `MIN_PASS_S`. New monitors are planned when a pass's closing statement found some
        waiting (`due.Waiting.unplanned`), at most about every `PLAN_EVERY_S` (drawn between half
        and 1.5 times it), on a clock of their own (a pass follows at once when one was planned):
        neither may keep a replica's phase, which would give it a fixed share of what falls due
        (and of new monitors' first rounds). A pass claims confirmation
        rounds and deferred logins only when the statement after its due rounds says some wait
        (`due.waiting`), which also says when the next pass is due: a routine pass is its due
        rounds' transaction and that statement.
        """
        log.info("scheduler started", batch=self._batch, gather_s=self._gather_s)
        loop = asyncio.get_running_loop()
        plan_at = pass_at = loop.time()
        last_start: float | None = None
        unplanned = True  # until a pass's closing statement says

        async def one_pass() -> float:
            nonlocal plan_at, pass_at, last_start, unplanned
            started = loop.time()
            if unplanned and started >= plan_at:
                plan_at = started + PLAN_EVERY_S * random.uniform(0.5, 1.5)
                unplanned = False
                if await self.plan_new():
                    pass_at = started  # a new monitor's first round goes at once
            if started >= pass_at:
                done = await self.run_pass()
                unplanned = done.unplanned
                since = 0.0 if last_start is None else started - last_start
                last_start = started
                spacing = schedule.pass_spacing(done.jobs, since, self._gather_s, random.random())
                pass_at = max(started + spacing, loop.time() + self._idle_s(done.earliest))
            wake_at = min(pass_at, plan_at) if unplanned else pass_at
            return max(0.0, wake_at - loop.time())

        try:
            await run_every(1.0, one_pass, name="scheduler", stop=stop)  # 1 s after a failed pass
        finally:
            if self._tokens is not None:
                await self._tokens.close()

    async def run_pass(self) -> PassDone:
        """A pass's work after planning new monitors: every due round, then the confirmation
        rounds and deferred logins, each only when the statement after the due rounds says some
        wait. Jobs waiting for a slot are asked again first: a country with no round falling due
        would otherwise never publish them, nor record them `saturated` once too late."""
        sent = await self.run_waiting() + await self.run_due(PASS_MAX_S)
        async with self._pool.acquire() as conn:
            waiting = await due.waiting(conn, self._clock(), self._fetching())
        if not (waiting.confirmations or waiting.deferred):
            return PassDone(sent, waiting.earliest, waiting.unplanned)
        if waiting.confirmations:
            sent += await self.run_confirmations()
        if waiting.deferred:
            sent += await self.run_deferred()
        async with self._pool.acquire() as conn:
            earliest = await due.earliest_work(conn, self._fetching())
        return PassDone(sent, earliest, waiting.unplanned)

    def _fetching(self) -> list[int]:
        """Monitors whose OAuth2 tokens are being fetched: no claim takes them meanwhile."""
        return self._tokens.fetching() if self._tokens is not None else []

    def _idle_s(self, earliest: datetime | None) -> float:
        """Seconds until `earliest` (the earliest due monitor or deferred login), capped so new
        monitors are seen soon."""
        most = WAITING_RETRY_S if self._admissions.waiting() else IDLE_MAX_S
        if earliest is None:
            return most
        return min(most, max(0.0, (earliest - self._clock()).total_seconds()))

    async def tick(self) -> int:
        """One pass: give new monitors a due time, then run every due round, confirmation round
        and spaced login; return jobs sent."""
        await self.plan_new()
        sent = await self.run_waiting() + await self.run_due()
        return sent + await self.run_confirmations() + await self.run_deferred()

    async def run_waiting(self) -> int:
        """Publish the jobs waiting for a slot that their country has room for now, and record
        `saturated` those that can no longer start in time; return jobs sent."""
        if not self._admissions.waiting():
            return 0
        taken = self._admissions.retry(self._clock())
        try:
            await self.publish(taken.admitted)
        except BaseException:
            self._admissions.put_back(taken.admitted, taken.preempts)  # a later pass's
            raise
        if taken.preempts:
            await self._agents.preempt(taken.preempts)
        if taken.refused:
            async with self._pool.acquire() as conn, conn.transaction():
                await roundtrip_sends.not_sent(conn, taken.refused_jobs)
                await readiness_budget.release(conn, taken.refused_jobs)
                await results.store(conn, taken.refused, self._default_countries)
            self._missed(taken.refused)
        return len(taken.admitted)

    async def run_due(self, max_s: float | None = None) -> int:
        """Run every round due now, a batch at a time, or those `max_s` seconds of batches
        reach; return jobs sent. Nothing while the live agents view is warming up: a country
        missing from it may have agents, so its rounds stay due until the view is complete
        instead of being recorded `no_agent`."""
        if not self._agents.is_warm():
            return 0
        loop = asyncio.get_running_loop()
        until = None if max_s is None else loop.time() + max_s
        sent = 0
        while True:
            # Each batch's own time: after an outage a pass takes long, and a round planned
            # with a stale clock could be sent already over.
            count, full = await self._run_batch(self._clock())
            sent += count
            if not full or (until is not None and loop.time() >= until):
                return sent

    async def run_confirmations(self) -> int:
        """Send the confirmation rounds the alerter asked for (`controller.scheduling.confirm`): a
        round of
        each monitor from all its countries now, as a triggered round; return jobs sent. Nothing
        while the live agents view warms up (the requests wait)."""
        if not self._agents.is_warm():
            return 0
        await self._keys.refresh()
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await confirmations.claim(
                conn, self._clock(), self._confirm_per_minute, self._batch, self._fetching()
            )
            if claimed.expired:
                metrics.confirmation("capped", claimed.expired)
                log.warning(
                    "confirmation rounds not sent: no slot of CONFIRM_ROUNDS_PER_MINUTE within"
                    " their monitor's interval",
                    rounds=claimed.expired,
                )
            asked = claimed.rounds
            if not asked:
                return 0
            monitors = await due.monitors(conn, sorted({m for m, _ in asked}))
            now = self._clock()
            tokens, waiting = await self._ready_tokens(conn, monitors, now)
            if waiting:  # asked again once their tokens are fetched
                await confirmations.give_back(conn, [a for a in asked if a[0] in waiting])
                monitors = [m for m in monitors if _id(m) not in waiting]
            live_agents = [(beat.country, beat.agent_id) for beat in self._agents.agents()]
            avoid = planning.second_opinions(
                await confirmations.failed_agents(conn, asked), live_agents
            )
            live = self._agents.countries()
            oauth2_live = self._agents.countries_with(FEATURE_OAUTH2)
            side = await self._side_of(conn, monitors, now)
            plans = await asyncio.to_thread(
                lambda: [
                    self._round(
                        m,
                        now,
                        live,
                        trigger=True,
                        avoid=avoid.get(_id(m), {}),
                        tokens=tokens.get(_id(m)),
                        oauth2_live=oauth2_live,
                        side=side,
                    )
                    for m in monitors
                ]
            )
            jobs = await self._send(conn, plans, now)
            missed = [row for p in plans for row in p.missed]
            if missed:
                await results.store(conn, missed, self._default_countries)
        metrics.confirmation("sent", len(plans))
        self._missed(missed)
        log.info("confirmation rounds sent", monitors=len(plans), jobs=jobs)
        return jobs

    async def _send(self, conn: Conn, rounds: Sequence[PlannedRound], now: datetime) -> int:
        """Publish the rounds' jobs now and keep their later logins for `run_deferred`; a login
        over its organization's cap for the account is not sent but recorded in its round's
        `missed` (`login_capped`), shown on the monitor and told to the owners, and so is a round
        trip's message its mailbox or recipient domain may not get now (`roundtrip_sends`), or
        it goes as a look that sends nothing, where its country's agents can; return jobs
        published. A round trip's round is held or sent whole, its later logins with it."""
        whole = [(r.monitor_id, [*r.jobs, *(job for _, job in r.deferred)]) for r in rounds]
        held_mail, looks, waits = await roundtrip_sends.hold(
            conn,
            whole,
            now,
            self._mails_per_domain,
            self._agents.countries_with(FEATURE_LOOK_ONLY),
            wait=True,
        )
        awaited: dict[str, datetime] = {}
        for r, (_, jobs) in zip(rounds, whole, strict=True):
            r.missed += [held_mail[job.job_id] for job in jobs if job.job_id in held_mail]
            r.jobs = [looks.get(job.job_id, job) for job in r.jobs if job.job_id not in held_mail]
            r.deferred = [
                (d, looks.get(job.job_id, job))
                for d, job in r.deferred
                if job.job_id not in held_mail
            ]
            if r.account:  # only a round logging in to an account keeps later logins
                awaited |= _await_flights(r, waits, now)
        wanted = [(r, job) for r in rounds if r.account for job in r.jobs]
        caps = await self._caps(conn, [r.monitor_id for r, _ in wanted])
        allowed = await account_logins.take(
            conn,
            [planning.login(job, r.account or "", r.legs, caps[r.monitor_id]) for r, job in wanted],
            now,
        )
        await roundtrip_sends.not_sent(
            conn, [job for (_, job), ok in zip(wanted, allowed, strict=True) if not ok]
        )
        for (r, job), ok in zip(wanted, allowed, strict=True):
            if not ok:
                r.jobs.remove(job)
                cap = caps[r.monitor_id][1]
                r.missed.append(
                    planning.held(job, CAPPED, planning.capped_why(cap, self._login_cap))
                )
                await login_cap_notice.reached(conn, r.monitor_id, cap, now, self._links)
        # Readiness asked of the jobs going out now, waiting for a slot, or logging in later
        # (a job the budget has no room for goes out with its readiness held); those refused
        # give their reservation back.
        planned = [job for r in rounds for job in [*r.jobs, *(job for _, job in r.deferred)]]
        held = await readiness_budget.reserve(conn, planned, now, self._readiness_queries)
        for r in rounds:
            r.jobs = [held.get(job.job_id, job) for job in r.jobs]
            r.deferred = [(d, held.get(job.job_id, job)) for d, job in r.deferred]
        jobs, earlier, refused, preempts = self._admitted(rounds, now)
        await readiness_budget.release(conn, refused)
        await roundtrip_sends.not_sent(conn, refused)
        await self.publish(jobs)
        await roundtrip_rounds.sent(conn, [s for r in rounds if (s := _went(r, now)) is not None])
        if preempts:
            await self._agents.preempt(preempts)
        if earlier:
            await results.store(conn, earlier, self._default_countries)
            self._missed(earlier)
        await due.mail_dns_sent(conn, [r.monitor_id for r in rounds if r.mail_dns and r.jobs], now)
        for r in rounds:
            if r.deferred and r.account:
                at = [(now + timedelta(seconds=delay), job) for delay, job in r.deferred]
                await deferred.add(conn, r.monitor_id, r.account, at, awaited)
        return len(jobs)

    def _admitted(
        self, rounds: Sequence[PlannedRound], now: datetime
    ) -> tuple[list[CheckJob], list[ResultRow], list[CheckJob], list[Preempt]]:
        """(the jobs their countries take now, of the rounds' and of those waiting for a slot;
        the `saturated` rows of earlier rounds' waiting jobs that can no longer start, to
        store; every job given up, whose round-trip messages count no more; the checks to
        cancel for waiting jobs, sent once the jobs are out). A job of the rounds given up is
        recorded in its round's `missed` (`saturated`), one waiting for a slot goes out with a
        later pass (`admission_ledger.Admissions`)."""
        taken = self._admissions.take([job for r in rounds for job in r.jobs], now)
        refused = {row.job_id: row for row in taken.refused}
        for r in rounds:
            r.missed += [refused.pop(job.job_id) for job in r.jobs if job.job_id in refused]
        return taken.admitted, list(refused.values()), taken.refused_jobs, taken.preempts

    async def _caps(self, conn: Conn, monitor_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Per monitor: its organization and the cap of its account's logins (login_cap)."""
        if not monitor_ids:
            return {}
        need = await account_logins.need(
            conn, sorted(set(monitor_ids)), self._default_countries, self._trigger_burst
        )
        return {m: (org, login_cap.cap(n, self._login_cap)) for m, (org, _, n) in need.items()}

    async def run_deferred(self) -> int:
        """Publish the later logins of rounds that are due now; one whose round has had a login
        rejected meanwhile is recorded `auth_backoff` instead (the account is not tried again);
        return jobs sent."""
        sent = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                claimed = await deferred.claim(conn, self._clock(), self._batch)
                if not claimed:
                    return sent
                answered = await _answered(conn, claimed)
                claimed = [d for d in claimed if d.job.job_id not in answered]
                tried = [d for d in claimed if not d.rejected]
                caps = await self._caps(conn, [d.monitor_id for d in tried])
                now = self._clock()
                tried = [d for d in tried if d.monitor_id in caps]
                allowed = await account_logins.take(
                    conn,
                    [
                        planning.login(d.job, d.account, planning.legs(d.job), caps[d.monitor_id])
                        for d in tried
                    ],
                    now,
                )
                mail = [(d.monitor_id, [d.job]) for d, ok in zip(tried, allowed, strict=True) if ok]
                held_mail, looks, _ = await roundtrip_sends.hold(
                    conn,
                    mail,
                    now,
                    self._mails_per_domain,
                    self._agents.countries_with(FEATURE_LOOK_ONLY),
                )
                taken = self._admissions.take(
                    [
                        looks.get(job.job_id, job)
                        for _, (job,) in mail
                        if job.job_id not in held_mail
                    ],
                    now,
                )
                send = taken.admitted
                not_sent = (
                    [d.job for d in claimed if d.rejected]
                    + [d.job for d, ok in zip(tried, allowed, strict=True) if not ok]
                    + taken.refused_jobs
                )
                await roundtrip_sends.not_sent(conn, not_sent)
                await readiness_budget.release(conn, not_sent)
                await self.publish(send)
                if taken.preempts:
                    await self._agents.preempt(taken.preempts)
                why = "an earlier login of this round was rejected: not tried again"
                held = [planning.held(d.job, HELD, why) for d in claimed if d.rejected]
                for d, ok in zip(tried, allowed, strict=True):
                    if not ok:
                        cap = caps[d.monitor_id][1]
                        held.append(
                            planning.held(d.job, CAPPED, planning.capped_why(cap, self._login_cap))
                        )
                        await login_cap_notice.reached(conn, d.monitor_id, cap, now, self._links)
                held += held_mail.values()
                held += taken.refused
                held += answered.values()
                if held:
                    await results.store(conn, held, self._default_countries)
            sent += len(send)
            if held:
                log.info("deferred logins not sent", jobs=len(held))

    async def plan_new(self) -> int:
        """First due time of monitors that have none: now for one that never ran (a new
        monitor's first check should not wait up to an interval) while its organization's
        trigger allowance has room, else the first grid point after now."""
        planned = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                new = await due.claim_unplanned(conn, self._batch, self._default_countries)
                if not new:
                    return planned
                # Allowances are taken in organization order: two replicas planning monitors of
                # the same organizations lock their rows in one order, never each other's.
                new.sort(key=lambda m: m.organization_id)
                now = self._clock()
                at_once = now.replace(microsecond=now.microsecond // 1000 * 1000)  # job times
                nexts = [
                    at_once
                    if m.never_run and await self._first_round_allowed(conn, m)
                    else planning.grid_after(str(m.public_id), m.check_interval, now)
                    for m in new
                ]
                await due.set_next_due(conn, [m.id for m in new], nexts)
            planned += len(new)

    async def _first_round_allowed(self, conn: Conn, monitor: Unplanned) -> bool:
        """Whether a new monitor's first round may go at once: it draws on its organization's
        allowance for triggered checks, as a trigger-check does. Otherwise creating and deleting
        a monitor of every country was a trigger-check without a limit (hundreds of checks of
        one target a second)."""
        per_check = 60.0 / self._checks_per_minute
        cost = monitor.countries * per_check
        return not await limits.take_trigger(
            conn, "organizations", monitor.organization_id, cost, 60.0
        )

    async def _run_batch(self, now: datetime) -> tuple[int, bool]:
        await self._keys.refresh()
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await due.claim_due(conn, now, self._batch, self._fetching())
            if not claimed:
                return 0, False
            tokens, waiting = await self._ready_tokens(conn, claimed, now)
            planned = [m for m in claimed if _id(m) not in waiting]
            side = await self._side_of(conn, planned, now)
            rounds = await self.rounds(planned, now, self._agents.countries(), tokens, side)
            jobs = await self._send(conn, rounds, now)
            await due.set_next_due(
                conn,
                [r.monitor_id for r in rounds],
                [r.next_due for r in rounds],
                [",".join(r.countries) if r.countries else None for r in rounds],
            )
            missed = [row for r in rounds for row in r.missed]
            if missed:
                await results.store(conn, missed, self._default_countries)
        if not rounds:
            return 0, len(claimed) == self._batch
        late = (self._clock() - min(r.scheduled_at for r in rounds)).total_seconds()
        metrics.rounds_scheduled([r.scheduled_at for r in rounds], self._clock())
        self._missed(missed)
        log.info(
            "round batch",
            monitors=len(claimed),
            jobs=jobs,
            missed=len(missed),
            oldest_late_s=round(late, 3),
        )
        return jobs, len(claimed) == self._batch

    async def rounds(
        self,
        claimed: Sequence[ClaimedMonitor],
        now: datetime,
        live: frozenset[str],
        tokens: Mapping[int, Mapping[str, Secret] | TokenFailure] | None = None,
        side: Mapping[str, object] | None = None,
    ) -> list[PlannedRound]:
        """The rounds of claimed monitors, planned in a thread. Decrypting and sealing cost
        0.1-0.2 ms a credentialed job: a batch of them inline would stall the loop (API,
        ingester, alerter) for hundreds of milliseconds, in a thread it does not, as OpenSSL and
        libsodium release the GIL (bench/seal.py). `tokens`: the OAuth2 logins' access tokens
        (or why there are none), by monitor id; `side`: what side checks read of the batch
        (`_side_of`)."""
        got = tokens or {}
        oauth2_live = self._agents.countries_with(FEATURE_OAUTH2)
        return await asyncio.to_thread(
            lambda: [
                self._round(
                    m, now, live, tokens=got.get(_id(m)), oauth2_live=oauth2_live, side=side
                )
                for m in claimed
            ]
        )

    def _token_logins(
        self, claimed: Sequence[ClaimedMonitor], now: datetime
    ) -> list[tuple[WatchedMonitor, datetime]]:
        """The claimed monitors with OAuth2 logins whose round may log in now (none while a
        login back-off holds every country), each with how long its token must live."""
        if self._tokens is None:
            return []
        return [
            (
                m,
                schedule.settles_at(now, m.monitor.check_interval, m.monitor.timeout_seconds),
            )
            for m in claimed
            if isinstance(m, WatchedMonitor)
            and m.monitor.grants
            and (m.rounds.login_retry_at is None or m.rounds.login_retry_at <= now)
        ]

    async def _ready_tokens(
        self, conn: Conn, claimed: Sequence[ClaimedMonitor], now: datetime
    ) -> tuple[dict[int, Mapping[str, Secret] | TokenFailure], set[int]]:
        """In a claim's transaction: the access tokens known without asking an endpoint, by
        monitor id, and the monitors whose tokens are now fetched in the background (left
        unplanned: claimed again when the fetch is done)."""
        ready: dict[int, Mapping[str, Secret] | TokenFailure] = {}
        waiting: set[int] = set()
        if self._tokens is None:
            return ready, waiting
        for w, until in self._token_logins(claimed, now):
            got = await self._tokens.ready(conn, w.monitor, until)
            if got is None:
                self._tokens.start(w.monitor, until)
                waiting.add(w.monitor.id)
            else:
                ready[w.monitor.id] = got
        return ready, waiting

    async def _access_tokens(
        self, claimed: Sequence[ClaimedMonitor], now: datetime
    ) -> dict[int, Mapping[str, Secret] | TokenFailure]:
        """The access tokens of the claimed monitors, asking the endpoints and waiting for
        them: only where no transaction is open (a triggered round)."""
        if self._tokens is None:
            return {}
        service = self._tokens
        wanted = self._token_logins(claimed, now)
        got = await asyncio.gather(*(service.tokens(w.monitor, until) for w, until in wanted))
        return {w.monitor.id: t for (w, _), t in zip(wanted, got, strict=True)}

    async def settled(self) -> None:
        """Wait for the OAuth2 token fetches started so far (tests, shutdown)."""
        if self._tokens is not None:
            await self._tokens.settled()

    async def _side_of(
        self, conn: Conn, claimed: Sequence[ClaimedMonitor], now: datetime
    ) -> dict[str, object]:
        """What side checks read of a batch of rounds as they are planned: the readiness DNS
        budgets of its organizations (a `Ledger` of this batch alone)."""
        orgs = [
            m.monitor.organization_id
            for m in claimed
            if isinstance(m, WatchedMonitor) and m.monitor.mail_domain
        ]
        ledger = await readiness_budget.load(conn, orgs, now, self._readiness_queries)
        return {READINESS: ledger}

    def _round(
        self,
        claimed: ClaimedMonitor,
        now: datetime,
        live: frozenset[str],
        *,
        trigger: bool = False,
        avoid: Mapping[str, list[str]] | None = None,
        tokens: Mapping[str, Secret] | TokenFailure | None = None,
        oauth2_live: frozenset[str],
        side: Mapping[str, object] | None = None,
    ) -> PlannedRound:
        """The monitor's round (`RoundPlanner.round`). A monitor that cannot become jobs is
        logged and skipped (its next due time still moves), so one bad monitor never stops the
        scheduler. `oauth2_live`: the countries whose every live agent logs in with OAuth2,
        read once for the caller's whole batch; `side`: what side checks read of the batch
        (`_side_of`)."""
        plan = self._planner.round(
            claimed,
            now,
            live,
            trigger=trigger,
            avoid=avoid,
            tokens=tokens,
            oauth2_live=oauth2_live,
            side=side,
        )
        if plan.unusable is None and plan.countries:
            return plan
        monitor = claimed.monitor if isinstance(claimed, WatchedMonitor) else claimed
        bound = log.bind(
            monitor_id=str(monitor.public_id), monitor_type=monitor.type, monitor_db_id=monitor.id
        )
        if plan.unusable is not None:
            bound.error("monitor unusable; round skipped", error=plan.unusable)
        else:
            bound.warning("no live agent in any country")
        return plan

    async def publish(self, jobs: Sequence[CheckJob]) -> None:
        """Publish, in bundles where the country's agents take them (`bundles.outgoing`), and
        return once JOBS stored every message (as one fast-ingest batch where it can,
        `shared.publishing.Publisher`); raise the first failure."""
        if not jobs:
            return
        outcomes = await self._publisher.publish(
            bundles.outgoing(jobs, self._agents.countries_with(FEATURE_BUNDLES))
        )
        if failed := next((e for e in outcomes if e is not None), None):
            raise failed
        metrics.jobs_published(jobs)

    async def trigger(self, monitor_id: int) -> PlannedRound | None:
        """A round now from all the monitor's countries; None when the monitor is gone. A
        monitor none of whose rounds has gone yet gets it as its first round
        (`due.take_first_round`): a "Check now" right after creating one sends one round, not
        this one and the first round `plan_new` would send besides. A round trip's round in
        flight is joined instead (`joined`, nothing sent: `roundtrip_rounds.in_flight`).
        Right after (re)connecting, it waits for the live agents view (AgentsUnknownError if
        that takes too long) rather than record countries `no_agent` that may have agents."""
        await self._agents.until_warm()
        await self._keys.refresh()
        async with self._pool.acquire() as conn:
            claimed = await due.monitor(conn, monitor_id)
            if claimed is None:
                return None
            side = await self._side_of(conn, [claimed], self._clock())
        # Its access tokens are got holding no connection: many triggers at once must not hold
        # the pool while the token service needs it.
        now = self._clock()
        tokens = await self._access_tokens([claimed], now)
        live = self._agents.countries()
        plan = self._round(
            claimed,
            now,
            live,
            trigger=True,
            tokens=tokens.get(_id(claimed)),
            oauth2_live=self._agents.countries_with(FEATURE_OAUTH2),
            side=side,
        )
        async with self._pool.acquire() as conn:
            # Off its grid: the settled monitor's routine rounds no longer move its due time
            # on past this one (ingest.alert_queue_store.push_settled). Alone, before the round's
            # rows.
            await alert_queue.unwatch(conn, _id(claimed))
            async with conn.transaction():
                if _type(claimed) == "roundtrip" and (
                    joined := await roundtrip_rounds.in_flight(conn, _id(claimed), self._clock())
                ):
                    log.info(
                        "round trip in flight joined",
                        monitor_id=str(_public_id(claimed)),
                        scheduled_at=iso_ms(joined.scheduled_at),
                    )
                    return PlannedRound(_id(claimed), joined.scheduled_at, None, joined=joined)
                first = bool(plan.countries) and await due.take_first_round(
                    conn,
                    plan.monitor_id,
                    planning.grid_after(str(_public_id(claimed)), _interval(claimed), now),
                    plan.countries,
                )
                await self._send(conn, [plan], self._clock())
                if plan.missed:
                    await results.store(conn, plan.missed, self._default_countries)
        self._missed(plan.missed)
        log.info(
            "round triggered",
            monitor_id=str(_public_id(claimed)),
            jobs=len(plan.jobs),
            first_round=first,
        )
        return plan

    def _missed(self, rows: Sequence[ResultRow]) -> None:
        """Count the missed rounds; say once per country which credentialed ones went nowhere."""
        metrics.missed_rounds(rows)
        unsealed = Counter(r.country for r in rows if r.error_kind == NO_SEAL_KEY)
        for cc, n in sorted(unsealed.items()):
            log.error(
                "no sealing key: jobs with credentials not sent",
                country=cc,
                rounds=n,
                key_file=str(self._keys.directory / f"{cc}.pub") if self._keys.directory else None,
            )


async def _answered(conn: Conn, claimed: Sequence[deferred.DeferredJob]) -> dict[str, ResultRow]:
    """The looks among `claimed` whose awaited round found its message in their country, each
    as its `up` row from that finding (`roundtrip_sends.answer`): not sent, no login."""
    looks = [
        roundtrip_rounds.Awaited(
            d.job.job_id, d.monitor_id, d.job.country, d.after_round, parse_iso(d.job.scheduled_at)
        )
        for d in claimed
        if d.after_round is not None and not d.rejected
    ]
    found = await roundtrip_rounds.found(conn, looks)
    return {
        d.job.job_id: roundtrip_sends.answer(d.job, found[d.job.job_id])
        for d in claimed
        if d.job.job_id in found
    }


def _await_flights(
    r: PlannedRound, waits: Mapping[str, roundtrip_rounds.Flight], now: datetime
) -> dict[str, datetime]:
    """Move the round's looks that wait for their monitor's round in flight to its later
    logins, each due when that round ends (or later, as its login was); return the awaited
    round's scheduled time by job id."""

    def until(job: CheckJob) -> float:
        return max(0.0, (waits[job.job_id].ends_at - now).total_seconds())

    later = [(until(job), job) for job in r.jobs if job.job_id in waits]
    r.jobs = [job for job in r.jobs if job.job_id not in waits]
    r.deferred = [
        (max(d, until(job)) if job.job_id in waits else d, job) for d, job in r.deferred
    ] + later
    return {
        job.job_id: waits[job.job_id].scheduled_at for _, job in r.deferred if job.job_id in waits
    }


def _went(r: PlannedRound, now: datetime) -> roundtrip_rounds.SentRound | None:
    """A round trip's round as it went out: its jobs not recorded missed (held, saturated)."""
    gone = {row.job_id for row in r.missed}
    return roundtrip_sends.went(
        r.monitor_id,
        [job for job in r.jobs if job.job_id not in gone],
        [(d, job) for d, job in r.deferred if job.job_id not in gone],
        now,
    )


def _public_id(claimed: ClaimedMonitor) -> UUID:
    return claimed.monitor.public_id if isinstance(claimed, WatchedMonitor) else claimed.public_id


def _type(claimed: ClaimedMonitor) -> str:
    return claimed.monitor.type if isinstance(claimed, WatchedMonitor) else claimed.type


def _interval(claimed: ClaimedMonitor) -> int:
    m = claimed.monitor if isinstance(claimed, WatchedMonitor) else claimed
    return m.check_interval


def _id(claimed: ClaimedMonitor) -> int:
    return claimed.monitor.id if isinstance(claimed, WatchedMonitor) else claimed.id
