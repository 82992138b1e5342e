"""The scheduler's publisher: what went out and what went nowhere.

Jobs are published on `mon.jobs.CC`, in bundles where the country's agents take them
(`bundles.outgoing`), with `Nats-Msg-Id` = job id, each job's side check asks sealed with its
id (controller.jobs.asks_seal, a carried preemption's job too), the legacy side fields only to
countries with an agent that predates `sideChecks` (controller.sidechecks.legacy), and their
acks awaited
(`shared.publishing.Publisher`); the checks admission takes back go to their agents once the jobs
are out; a round trip's round is recorded as it went (its countries' jobs, when it ends); the
rows of rounds that went nowhere are recorded as results
(controller.ingest.record, `missed`) and counted, and a country without a sealing key is told
once per batch.
"""

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

import msgspec
import structlog
from nats.js import JetStreamContext

from controller.db.pool import Conn
from controller.fleet.live import LiveAgents
from controller.ingest import record
from controller.jobs.asks_seal import AskSeals
from controller.jobs.result_kinds import NO_SEAL_KEY, ResultRow
from controller.observability import metrics
from controller.roundtrips import rounds_store as roundtrip_rounds
from controller.roundtrips import sends as roundtrip_sends
from controller.scheduling import bundles
from controller.scheduling.plan import PlannedRound
from controller.secrets.seal_keys import CountryKeys
from controller.sidechecks import legacy
from shared.messages import FEATURE_BUNDLES, FEATURE_SIDE_CHECKS, CheckJob, Preempt
from shared.publishing import Publisher

log = structlog.get_logger(__name__)

PUBLISH_TIMEOUT_S = 10.0


class JobPublisher:
    def __init__(
        self,
        js: JetStreamContext,
        agents: LiveAgents,
        keys: CountryKeys,
        asks: AskSeals,
        *,
        default_countries: int = 2,
    ) -> None:
        """`agents`: the live agents view (who takes bundles, where a preemption goes);
        `keys`: the sealing keys (where a missing one is looked for, as logged); `asks`: what
        seals each job's side check asks; `default_countries`: DEFAULT_CHECK_COUNTRIES, as the
        results' record takes it."""
        self._publisher = Publisher(js, timeout_s=PUBLISH_TIMEOUT_S)
        self._agents = agents
        self._keys = keys
        self._asks = asks
        self._default_countries = default_countries

    def _sealed(self, job: CheckJob) -> CheckJob:
        """`job` with its side check asks sealed with its id (`asksSeal`), as it goes out: after
        every change admission makes to them."""
        return msgspec.structs.replace(job, asks_seal=self._asks.seal(job.job_id, job.side_checks))

    async def publish(self, jobs: Sequence[CheckJob]) -> None:
        """Publish, in bundles where the country's agents take them (`bundles.outgoing`), and
        return once JOBS stored every message (as one fast-ingest batch where it can,
        `shared.publishing.Publisher`); raise the first failure."""
        if not jobs:
            return
        capacities: dict[str, list[int]] = {}
        for beat in self._agents.agents():
            capacities.setdefault(beat.country, []).append(beat.capacity)
        sizes = {cc: bundles.bundle_size(c) for cc, c in capacities.items()}
        bundling = self._agents.countries_with(FEATURE_BUNDLES)
        older = self._agents.countries_lacking(FEATURE_SIDE_CHECKS)
        sealed = [self._sealed(job) for job in legacy.for_countries(jobs, older)]
        outcomes = await self._publisher.publish(bundles.outgoing(sealed, bundling, sizes=sizes))
        if failed := next((e for e in outcomes if e is not None), None):
            raise failed
        metrics.jobs_published(jobs)

    async def went(self, conn: Conn, rounds: Sequence[PlannedRound], now: datetime) -> None:
        """In the caller's transaction, once their jobs are out: the round trips' rounds as they
        went (`roundtrip_rounds.sent`)."""
        await roundtrip_rounds.sent(conn, [s for r in rounds if (s := _went(r, now)) is not None])

    async def preempt(self, preempts: Sequence[Preempt]) -> None:
        """Ask the agents to cancel these checks (once the jobs they make room for are out)."""
        if preempts:
            await self._agents.preempt(
                [
                    p if p.job is None else msgspec.structs.replace(p, job=self._sealed(p.job))
                    for p in preempts
                ]
            )

    async def record(
        self,
        conn: Conn,
        rows: Sequence[ResultRow],
        answered: Sequence[ResultRow] = (),
        *,
        now: datetime,
    ) -> None:
        """In the caller's transaction, at the scheduler's `now`: the missed rows of rounds that
        went nowhere, and the `up` rows of looks their awaited round answered (recorded first:
        each batch moves a state by its rows in time order, so the two batches move it as one
        would)."""
        if answered:
            await record.answered(conn, answered, self._default_countries, now)
        if rows:
            await record.missed(conn, rows, self._default_countries, now)

    def recorded(self, rows: Sequence[ResultRow]) -> None:
        """Once their transaction committed: count the missed rows; say once per country
        which credentialed ones went nowhere."""
        metrics.missed_rounds(rows)
        unsealed = Counter(r.country for r in rows if r.error_kind == NO_SEAL_KEY)
        for cc, n in sorted(unsealed.items()):
            log.error(
                "no sealing key: jobs with credentials not sent",
                country=cc,
                rounds=n,
                key_file=str(self._keys.directory / f"{cc}.pub") if self._keys.directory else None,
            )


def _went(r: PlannedRound, now: datetime) -> roundtrip_rounds.SentRound | None:
    """A round trip's round as it went out: its jobs not recorded missed (held, saturated)."""
    if not any(job.monitor_type == "roundtrip" for job in r.jobs) and not any(
        job.monitor_type == "roundtrip" for _, job in r.deferred
    ):
        return None  # another kind's round
    gone = {row.job_id for row in r.missed}
    return roundtrip_sends.went(
        r.monitor_id,
        [job for job in r.jobs if job.job_id not in gone],
        [(d, job) for d, job in r.deferred if job.job_id not in gone],
        now,
    )
