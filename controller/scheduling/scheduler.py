"""The scheduler: due monitors → one check job per country on `mon.jobs.CC`.

A config with credentials is sealed to the job's country (controller.secrets.seal_keys): the job
carries it
as `sealedConfig`, its `config` is the type's default, and a country without a public key gets no
job, only a `no_seal_key` round: credentials never go out in clear.

Each batch is claimed in a transaction (`SKIP LOCKED`, so replicas share the work), its jobs are
published with `Nats-Msg-Id` = job id and their acks awaited, then the monitors' next due times
are written and the transaction commits. A crash before the commit leaves the monitors due: the
next claim republishes the same job ids and JetStream drops the duplicates.
"""

import asyncio
import contextlib
import hashlib
import hmac
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from nats.js import JetStreamContext

from controller.alerting.evaluator import LOOKBACK
from controller.db.pool import Conn
from controller.fleet.live import LiveAgents
from controller.ingest import store as results
from controller.ingest.store import NO_SEAL_KEY, OVERDUE, ResultRow
from controller.logins import account_store as account_logins
from controller.logins import cap as login_cap
from controller.logins import cap_notice as login_cap_notice
from controller.logins.account_store import Login
from controller.logins.backoff import CAPPED, HELD, logins
from controller.monitors import limits_store as limits
from controller.monitors import store as monitors
from controller.roundtrips import sends as roundtrip_sends
from controller.runtime import metrics
from controller.scheduling import confirm_store as confirmations
from controller.scheduling import deferred_store as deferred
from controller.scheduling import due_store as due
from controller.scheduling import rules as schedule
from controller.secrets.box import SecretBox, SecretBoxError
from controller.secrets.seal_keys import CountryKeys, carries_credentials
from shared.messages import (
    JOB_TYPES,
    CheckJob,
    ImapPopConfig,
    JobConfig,
    MonitorType,
    RoundTripCheckJob,
    RoundTripConfig,
    SealedConfig,
    decode_job,
    default_port,
    encode,
    encode_sealed,
)
from shared.subjects import jobs_subject
from shared.timefmt import iso_ms, parse_iso, utcnow

log = structlog.get_logger(__name__)

PUBLISH_TIMEOUT_S = 10.0
IDLE_MAX_S = 0.5
MIN_PASS_S = 0.025
PLAN_EVERY_S = 0.5
ACCOUNT_PURPOSE = "mailprobe login accounts"
TENANT_PURPOSE = "mailprobe job tenants"


class JobConfigError(Exception):
    """A monitor's stored config cannot become a job (a secret does not decrypt, bad shape)."""


@dataclass
class PlannedRound:
    """One monitor's round as the scheduler plans it: its countries, the jobs to publish and
    the countries where it is recorded missed (`no_agent`, `no_seal_key`)."""

    monitor_id: int
    scheduled_at: datetime
    next_due: datetime | None
    countries: Sequence[str] = ()
    jobs: list[CheckJob] = field(default_factory=list)
    missed: list[ResultRow] = field(default_factory=list)
    # Later logins to the account, (seconds after the first, job): see `_space_logins`.
    deferred: list[tuple[float, CheckJob]] = field(default_factory=list)
    account: str | None = None  # the account its jobs log in to (`_account`), if any
    legs: int = 1  # logins a check makes to that account (a round trip sending as it: 2)
    mail_dns: bool = False  # its jobs carry the mail domain


def job_config(monitor_type: MonitorType, stored: Any, box: SecretBox) -> JobConfig:
    """The stored config with its secrets decrypted, as the job's typed config."""
    try:
        return box.opened(monitors.decode_config(monitor_type, stored))
    except (SecretBoxError, monitors.MonitorConfigError) as exc:
        raise JobConfigError(str(exc)) from None


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
        dns_interval_s: int = 3600,
        login_spacing_s: float = 5.0,
        login_cap: int = 1000,
        trigger_burst: int = 3,
        checks_per_minute: int = 2000,
        mails_per_domain: int = 60,
        confirm_per_minute: int = 600,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._pool = pool
        self._mails_per_domain = mails_per_domain  # ROUNDTRIP_MAILS_PER_DOMAIN_PER_MINUTE
        self._confirm_per_minute = confirm_per_minute  # CONFIRM_ROUNDS_PER_MINUTE
        self._login_spacing = login_spacing_s
        self._login_cap = login_cap  # the ceiling per organization and account
        self._trigger_burst = trigger_burst
        self._account_key = box.subkeys(ACCOUNT_PURPOSE)[0]
        self._tenant_key = box.subkeys(TENANT_PURPOSE)[0]
        self._js = js
        self._agents = agents
        self._box = box
        self._keys = keys
        self._job_ids = schedule.JobIds.from_box(box)
        self._default_countries = default_countries
        self._checks_per_minute = checks_per_minute  # ORG_MAX_CHECKS_PER_MINUTE
        self._batch = batch
        self._dns_interval_s = dns_interval_s
        self._clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        """Schedule until `stop` is set; errors are logged and retried, never fatal.

        Passes start at most every `MIN_PASS_S`: with monitors due every few hundred
        microseconds, a pass per due monitor would spend more on round trips than on jobs; a
        short spacing batches them at the cost of a few milliseconds of lateness. New monitors
        are planned every `PLAN_EVERY_S`.
        """
        log.info("scheduler started", batch=self._batch)
        loop = asyncio.get_running_loop()
        plan_at = loop.time()
        while not stop.is_set():
            started = loop.time()
            wait = 1.0
            try:
                if started >= plan_at:
                    await self.plan_new()
                    plan_at = started + PLAN_EVERY_S
                await self.run_due()
                await self.run_confirmations()
                await self.run_deferred()
                wait = max(await self._idle_s(), MIN_PASS_S - (loop.time() - started))
                wait = min(wait, max(0.0, plan_at - loop.time()))
            except Exception:
                log.exception("scheduler pass failed; retrying")
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)

    async def _idle_s(self) -> float:
        """Seconds until the earliest due monitor, capped so new monitors are seen soon."""
        async with self._pool.acquire() as conn:
            times = [await due.earliest_due(conn), await deferred.earliest(conn)]
        earliest = min((t for t in times if t is not None), default=None)
        if earliest is None:
            return IDLE_MAX_S
        return min(IDLE_MAX_S, max(0.0, (earliest - self._clock()).total_seconds()))

    async def tick(self) -> int:
        """One pass: give new monitors a due time, then run every due round, confirmation round
        and spaced login; return jobs sent."""
        await self.plan_new()
        return await self.run_due() + await self.run_confirmations() + await self.run_deferred()

    async def run_due(self) -> int:
        """Run every round due now, a batch at a time; return jobs sent. Nothing while the live
        agents view is warming up: a country missing from it may have agents, so its rounds
        stay due until the view is complete instead of being recorded `no_agent`."""
        if not self._agents.is_warm():
            return 0
        sent = 0
        while True:
            # Each batch's own time: after an outage a pass takes long, and a round planned
            # with a stale clock could be sent already over.
            count, full = await self._run_batch(self._clock())
            sent += count
            if not full:
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
                conn, self._clock(), self._confirm_per_minute, self._batch
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
            rows = await due.job_rows(conn, sorted({m for m, _ in asked}))
            avoid = self._second_opinions(await confirmations.failed_agents(conn, asked))
            now, live = self._clock(), self._agents.countries()
            plans = await asyncio.to_thread(
                lambda: [
                    self._round(row, now, live, trigger=True, avoid=avoid.get(row["id"], {}))
                    for row in rows
                ]
            )
            jobs = await self._send(conn, plans, now)
            missed = [row for p in plans for row in p.missed]
            if missed:
                await results.store(conn, missed)
        metrics.confirmation("sent", len(plans))
        self._missed(missed)
        log.info("confirmation rounds sent", monitors=len(plans), jobs=jobs)
        return jobs

    async def _send(self, conn: Conn, rounds: Sequence[PlannedRound], now: datetime) -> int:
        """Publish the rounds' jobs now and keep their later logins for `run_deferred`; a login
        over its organization's cap for the account is not sent but recorded in its round's
        `missed` (`login_capped`), shown on the monitor and told to the owners, and so is a round
        trip's message its mailbox or recipient domain may not get now (`roundtrip_sends`);
        return jobs published."""
        mail = [(r.monitor_id, job) for r in rounds for job in r.jobs]
        held_mail = await roundtrip_sends.hold(conn, mail, now, self._mails_per_domain)
        for r in rounds:
            r.missed += [held_mail[job.job_id] for job in r.jobs if job.job_id in held_mail]
            r.jobs = [job for job in r.jobs if job.job_id not in held_mail]
        wanted = [(r, job) for r in rounds if r.account for job in r.jobs]
        caps = await self._caps(conn, [r.monitor_id for r, _ in wanted])
        allowed = await account_logins.take(
            conn,
            [self._login(job, r.account or "", r.legs, caps[r.monitor_id]) for r, job in wanted],
            now,
        )
        for (r, job), ok in zip(wanted, allowed, strict=True):
            if not ok:
                r.jobs.remove(job)
                cap = caps[r.monitor_id][1]
                r.missed.append(_held(job, CAPPED, self._capped_why(cap)))
                await login_cap_notice.reached(conn, r.monitor_id, cap, now)
        jobs = [job for r in rounds for job in r.jobs]
        await self.publish(jobs)
        await due.mail_dns_sent(conn, [r.monitor_id for r in rounds if r.mail_dns and r.jobs], now)
        for r in rounds:
            if r.deferred and r.account:
                at = [(now + timedelta(seconds=delay), job) for delay, job in r.deferred]
                await deferred.add(conn, r.monitor_id, r.account, at)
        return len(jobs)

    async def _caps(self, conn: Conn, monitor_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Per monitor: its organization and the cap of its account's logins (login_cap)."""
        if not monitor_ids:
            return {}
        need = await account_logins.need(
            conn, sorted(set(monitor_ids)), self._default_countries, self._trigger_burst
        )
        return {m: (org, login_cap.cap(n, self._login_cap)) for m, (org, _, n) in need.items()}

    @staticmethod
    def _login(job: CheckJob, account: str, legs: int, cap: tuple[int, int]) -> Login:
        settles = parse_iso(job.expires_at) + timedelta(seconds=job.timeout_seconds)
        return Login(job.job_id, cap[0], account, legs, settles, cap[1])

    def _capped_why(self, cap: int) -> str:
        return (
            f"over this account's login cap ({cap} logins in"
            f" {login_cap.WINDOW.seconds // 60} minutes over your organization's monitors of"
            f" it; {login_cap.SETTING} {self._login_cap} at most): not sent"
        )

    async def run_deferred(self) -> int:
        """Publish the later logins of rounds that are due now; one whose round has had a login
        rejected meanwhile is recorded `auth_backoff` instead (the account is not tried again);
        return jobs sent."""
        sent = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await deferred.claim(conn, self._clock(), self._batch)
                if not rows:
                    return sent
                jobs = [decode_job(bytes(r["payload"])) for r in rows]
                tried = [(job, r) for job, r in zip(jobs, rows, strict=True) if not r["rejected"]]
                caps = await self._caps(conn, [r["monitor_id"] for _, r in tried])
                now = self._clock()
                wanted = [
                    self._login(job, r["account"], _legs(job), caps[r["monitor_id"]])
                    for job, r in tried
                    if r["monitor_id"] in caps
                ]
                tried = [(job, r) for job, r in tried if r["monitor_id"] in caps]
                allowed = await account_logins.take(conn, wanted, now)
                mail = [
                    (r["monitor_id"], job)
                    for (job, r), ok in zip(tried, allowed, strict=True)
                    if ok
                ]
                held_mail = await roundtrip_sends.hold(conn, mail, now, self._mails_per_domain)
                send = [job for _, job in mail if job.job_id not in held_mail]
                await self.publish(send)
                why = "an earlier login of this round was rejected: not tried again"
                held = [
                    _held(job, HELD, why)
                    for job, r in zip(jobs, rows, strict=True)
                    if r["rejected"]
                ]
                for (job, r), ok in zip(tried, allowed, strict=True):
                    if not ok:
                        cap = caps[r["monitor_id"]][1]
                        held.append(_held(job, CAPPED, self._capped_why(cap)))
                        await login_cap_notice.reached(conn, r["monitor_id"], cap, now)
                held += held_mail.values()
                if held:
                    await results.store(conn, held)
            sent += len(send)
            if held:
                log.info("deferred logins not sent", jobs=len(held))

    def _second_opinions(
        self, failed: dict[int, dict[str, set[str]]]
    ) -> dict[int, dict[str, list[str]]]:
        """Per monitor and country, the agents a confirmation job should avoid: those whose
        check failed, when another agent of the country is live to give a second opinion."""
        live: dict[str, set[str]] = {}
        for beat in self._agents.agents():
            live.setdefault(beat.country, set()).add(beat.agent_id)
        return {
            monitor: {
                cc: sorted(agents)
                for cc, agents in by_country.items()
                if live.get(cc, set()) - agents
            }
            for monitor, by_country in failed.items()
        }

    async def plan_new(self) -> int:
        """First due time of monitors that have none: now for one that never ran (a new
        monitor's first check should not wait up to an interval) while its organization's
        trigger allowance has room, else the first grid point after now."""
        planned = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await due.claim_unplanned(conn, self._batch, self._default_countries)
                if not rows:
                    return planned
                # Allowances are taken in organization order: two replicas planning monitors of
                # the same organizations lock their rows in one order, never each other's.
                rows.sort(key=lambda r: r["organization_id"])
                now = self._clock()
                at_once = now.replace(microsecond=now.microsecond // 1000 * 1000)  # job times
                nexts = [
                    at_once
                    if r["never_run"] and await self._first_round_allowed(conn, r)
                    else schedule.next_due(
                        schedule.phase_ms(str(r["public_id"]), r["check_interval"]),
                        r["check_interval"],
                        now,
                    )
                    for r in rows
                ]
                await due.set_next_due(conn, [r["id"] for r in rows], nexts)
            planned += len(rows)

    async def _first_round_allowed(self, conn: Conn, row: asyncpg.Record) -> bool:
        """Whether a new monitor's first round may go at once: it draws on its organization's
        allowance for triggered checks, as a trigger-check does. Otherwise creating and deleting
        a monitor of every country was a trigger-check without a limit (hundreds of checks of
        one target a second)."""
        per_check = 60.0 / self._checks_per_minute
        cost = row["countries"] * per_check
        return not await limits.take_trigger(
            conn, "organizations", row["organization_id"], cost, 60.0
        )

    async def _run_batch(self, now: datetime) -> tuple[int, bool]:
        await self._keys.refresh()
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await due.claim_due(conn, now, self._batch)
            if not rows:
                return 0, False
            rounds = await self.rounds(rows, now, self._agents.countries())
            jobs = await self._send(conn, rounds, now)
            await due.set_next_due(
                conn,
                [r.monitor_id for r in rounds],
                [r.next_due for r in rounds],
                [",".join(r.countries) if r.countries else None for r in rounds],
            )
            missed = [row for r in rounds for row in r.missed]
            if missed:
                await results.store(conn, missed)
        late = (self._clock() - min(r.scheduled_at for r in rounds)).total_seconds()
        metrics.rounds_scheduled([r.scheduled_at for r in rounds], self._clock())
        self._missed(missed)
        log.info(
            "round batch",
            monitors=len(rows),
            jobs=jobs,
            missed=len(missed),
            oldest_late_s=round(late, 3),
        )
        return jobs, len(rows) == self._batch

    async def rounds(
        self, rows: Sequence[asyncpg.Record], now: datetime, live: frozenset[str]
    ) -> list[PlannedRound]:
        """The rounds of claimed monitors, planned in a thread. Decrypting and sealing cost
        0.1-0.2 ms a credentialed job: a batch of them inline would stall the loop (API,
        ingester, alerter) for hundreds of milliseconds, in a thread it does not, as OpenSSL and
        libsodium release the GIL (bench/seal.py)."""
        return await asyncio.to_thread(lambda: [self._round(row, now, live) for row in rows])

    def _round(
        self,
        row: asyncpg.Record,
        now: datetime,
        live: frozenset[str],
        *,
        trigger: bool = False,
        avoid: Mapping[str, list[str]] | None = None,
    ) -> PlannedRound:
        """The monitor's round now: one job per country with a live agent (and a key when the
        job carries credentials), a missed row per country without. A monitor that cannot
        become jobs is logged and skipped (its next due time still moves), so one bad row never
        stops the scheduler."""
        public_id = str(row["public_id"])
        interval: int = row["check_interval"]
        over: list[datetime] = []
        run: datetime | None = now
        next_at = row["next_due_at"]
        if not trigger:
            phase = schedule.phase_ms(public_id, interval)
            since = now - max(LOOKBACK, 3 * timedelta(seconds=interval))
            over, run, next_at = schedule.overdue_rounds(
                phase, interval, row["next_due_at"], now, since
            )
        plan = PlannedRound(row["id"], run or over[-1], next_at)
        try:
            self._plan(plan, row, now, live, trigger, avoid or {}, send=run is not None)
            why = f"the round was over when the scheduler got to it at {iso_ms(now)}: not sent"
            plan.missed += [
                ResultRow.missed(row, cc, self._job_ids.make(public_id, cc, at), at, OVERDUE, why)
                for at in over
                for cc in plan.countries
            ]
        except (JobConfigError, KeyError, ValueError) as exc:
            log.error("monitor unusable; round skipped", monitor_id=public_id, error=str(exc))
            plan.jobs.clear()
            plan.missed.clear()
        return plan

    def _plan(
        self,
        plan: PlannedRound,
        row: asyncpg.Record,
        now: datetime,
        live: frozenset[str],
        trigger: bool,
        avoid: Mapping[str, list[str]],
        *,
        send: bool = True,
    ) -> None:
        """The round's countries, and unless it is over (not `send`), its jobs (asking the
        agents in `avoid` of each country to leave them to another) and the countries it cannot
        go to."""
        public_id = str(row["public_id"])
        listed: Sequence[str] | None = row["allowed_country_codes"]
        countries = (
            listed
            if listed is not None
            else schedule.pick_countries(public_id, live, self._default_countries)
            # No live agent anywhere: the round is `no_agent` where the last one went.
            or row["round_countries"]
            or ()
        )
        if not countries:
            log.warning("no live agent in any country", monitor_id=public_id)
            return
        for cc in countries:
            jobs_subject(cc)  # a valid country code, or ValueError
        plan.countries = countries
        if not send:
            return
        config = job_config(row["type"], row["config"], self._box)
        port = row["port"] or default_port(row["type"], config)
        plain = None
        if carries_credentials(config):
            plan.account = self._account(row["hostname"], config)
            plan.legs = _legs_of(row["hostname"], config)
            bound = SealedConfig(
                monitor_id=public_id, hostname=row["hostname"], port=port, config=config
            )
            plain = encode_sealed(bound)
        scheduled = plan.scheduled_at
        retry_at = row["login_retry_at"]
        may_log_in = logins(row["login_failures"], retry_at, scheduled, countries)
        scheduled_iso = iso_ms(scheduled)
        expires_iso = iso_ms(schedule.expires_at(scheduled, row["check_interval"]))
        job_type = JOB_TYPES[row["type"]]
        mail_domain: str | None = row["mail_domain"]
        if mail_domain:
            args = (public_id, scheduled, row["check_interval"], self._dns_interval_s)
            dns = (
                schedule.trigger_dns(*args, row["mail_dns_at"])
                if trigger
                else schedule.dns_due(*args)
            )
            mail_domain = mail_domain if dns else None
            plan.mail_dns = dns
        for cc in countries:
            jid = self._job_ids.make(public_id, cc, scheduled, trigger)
            if cc not in live:
                plan.missed.append(_no_agent(jid, row, cc, scheduled, now))
                continue
            fields: dict[str, Any] = {"config": config}
            if plain is not None and cc not in may_log_in:
                why = (
                    "credentials rejected: logins paused so the account is not locked (next"
                    f" login at or after {iso_ms(retry_at)}, from one country); update them to"
                    " resume"
                )
                plan.missed.append(ResultRow.missed(row, cc, jid, scheduled, HELD, why))
                continue
            if plain is not None:
                key = self._keys.get(cc)
                if key is None:
                    why = f"credentials not sent to {cc}: {self._keys.missing(cc)}"
                    plan.missed.append(ResultRow.missed(row, cc, jid, scheduled, NO_SEAL_KEY, why))
                    continue
                # The config stays the type's default: no secret, no user name in clear.
                fields = {"sealed_config": key.seal(plain), "seal_key_id": key.id}
            plan.jobs.append(
                job_type(
                    job_id=jid,
                    monitor_id=public_id,
                    hostname=row["hostname"],
                    port=port,
                    timeout_seconds=float(row["timeout_seconds"]),
                    country=cc,
                    scheduled_at=scheduled_iso,
                    expires_at=expires_iso,
                    mail_domain=mail_domain or None,
                    avoid_agents=avoid.get(cc, []),
                    tenant=self._tenant(row["organization_id"]),
                    **fields,
                )
            )
        if plain is not None:
            self._space_logins(plan, row["check_interval"])

    def _account(self, hostname: str, config: JobConfig) -> str:
        """The account a config logs in to, user@host, as a keyed hash (no user name kept); a
        round trip's is its mailbox, where every country logs in each round."""
        if isinstance(config, RoundTripConfig):
            user, hostname = config.receive.user, config.receive.hostname
        elif isinstance(config, ImapPopConfig):
            user = config.user
        else:
            user = config.auth.user if config.auth else ""
        name = f"{user.lower()}@{hostname.lower().rstrip('.')}".encode()
        return hmac.digest(self._account_key, name, hashlib.sha256).hex()[:32]

    def _tenant(self, organization_id: int) -> str:
        """The job's `tenant`: the organization as a keyed hash, so agents can tell tenants
        apart without learning which organization is which."""
        digest = hmac.digest(self._tenant_key, str(organization_id).encode(), hashlib.sha256)
        return digest.hex()[:16]

    def _space_logins(self, plan: PlannedRound, interval: int) -> None:
        """Logins to one account go country after country, `login_spacing_s` apart, starting
        with a different country each round: the first job now, the others deferred. Then a
        rejected password is tried from one country, not from all at once (`run_deferred`)."""
        if len(plan.jobs) < 2 or self._login_spacing <= 0:
            return
        start = int(plan.scheduled_at.timestamp()) // interval % len(plan.jobs)  # round number
        order = plan.jobs[start:] + plan.jobs[:start]
        plan.jobs = order[:1]
        plan.deferred = [(i * self._login_spacing, job) for i, job in enumerate(order) if i]

    async def publish(self, jobs: Sequence[CheckJob]) -> int:
        """Publish with `Nats-Msg-Id` = job id and wait for every ack; return how many were new."""
        if not jobs:
            return 0
        futures: list[asyncio.Future[Any]] = []
        try:
            for job in jobs:
                futures.append(
                    await self._js.publish_async(
                        jobs_subject(job.country),
                        encode(job),
                        headers={"Nats-Msg-Id": job.job_id},
                    )
                )
            acks = await asyncio.wait_for(asyncio.gather(*futures), PUBLISH_TIMEOUT_S)
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()
        metrics.jobs_published(jobs)
        return sum(1 for ack in acks if not ack.duplicate)

    async def trigger(self, monitor_id: int) -> PlannedRound | None:
        """A round now from all the monitor's countries; None when the monitor is gone.
        Right after (re)connecting, it waits for the live agents view (AgentsUnknownError if
        that takes too long) rather than record countries `no_agent` that may have agents."""
        await self._agents.until_warm()
        await self._keys.refresh()
        async with self._pool.acquire() as conn:
            row = await due.job_row(conn, monitor_id)
            if row is None:
                return None
            live = self._agents.countries()
            plan = self._round(row, self._clock(), live, trigger=True)
            async with conn.transaction():
                await self._send(conn, [plan], self._clock())
                if plan.missed:
                    await results.store(conn, plan.missed)
        self._missed(plan.missed)
        log.info("round triggered", monitor_id=str(row["public_id"]), jobs=len(plan.jobs))
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


def _legs_of(hostname: str, config: JobConfig) -> int:
    """Logins a check makes to its account: a round trip whose submission logs in as its
    mailbox's user on the mailbox's host makes two."""
    if isinstance(config, RoundTripConfig) and config.send.auth:
        send = f"{config.send.auth.user.lower()}@{hostname.lower().rstrip('.')}"
        mailbox = config.receive
        return 2 if send == f"{mailbox.user.lower()}@{mailbox.hostname.lower().rstrip('.')}" else 1
    return 1


def _legs(job: CheckJob) -> int:
    """A deferred job's logins: its config is sealed, so a round trip counts both legs."""
    return 2 if isinstance(job, RoundTripCheckJob) else 1


def _held(job: CheckJob, kind: str, why: str) -> ResultRow:
    """The missed row of a login not sent (`auth_backoff`, `login_capped`)."""
    monitor = {"public_id": UUID(job.monitor_id), "type": job.monitor_type}
    return ResultRow.missed(
        monitor, job.country, job.job_id, parse_iso(job.scheduled_at), kind, why
    )


def _no_agent(
    jid: str, row: asyncpg.Record, country: str, scheduled: datetime, now: datetime
) -> ResultRow:
    why = f"no live agent in {country} at {iso_ms(now)}: the round did not run there"
    return ResultRow.missed(row, country, jid, scheduled, "no_agent", why)
