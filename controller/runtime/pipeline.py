"""The controller's side of the check pipeline on one NATS connection: streams, live agents
(from heartbeats), scheduler and ingester, each built only for the roles that use it. `serve`
opens it and hands it to the API, whose services (controller.web.services) take what they need
of it; it builds the alerter's parts with `build_alerter`."""

import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from controller.alerting import flows
from controller.alerting.alerter import Alerter
from controller.alerting.effects import Effects
from controller.alerting.evaluator import BATCH as ALERT_BATCH
from controller.alerting.evaluator import Evaluator
from controller.alerting.event_publisher import EventPublisher
from controller.alerting.heartbeats import HeartbeatJudge
from controller.alerting.ready_rounds import ReadyRounds
from controller.alerting.rules import Policy
from controller.alerting.telling import Teller
from controller.fleet.live import LiveAgents
from controller.ingest.ingester import Ingester
from controller.jobs import scheme_store
from controller.jobs.rules import JobIds
from controller.jobs.scheme import SeededGate
from controller.notify.links import Links
from controller.oauth2.fetcher import TokenFetcher
from controller.oauth2.tokens import TokenService
from controller.scheduling.admission import Admission
from controller.scheduling.plan import RoundPlanner
from controller.scheduling.planner import Planner
from controller.scheduling.publisher import JobPublisher
from controller.scheduling.scheduler import Scheduler
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.settings import ControllerSettings, FleetSettings, OAuth2Settings
from controller.sidechecks import blocklists, heartbeat_mail
from controller.sidechecks.blocklists.rules import lists_setting
from controller.sidechecks.blocklists.watch import FreshNames
from controller.sidechecks.heartbeat_mail.store import HeartbeatReaders
from shared.clock import Clock
from shared.guards import BrokenInvariant
from shared.settings import nats_tls_context
from shared.streams import MIB, JobsConsumers, ensure_streams

log = structlog.get_logger(__name__)

# Jobs in flight between publish and ack; the scheduler publishes a whole batch at once.
PUBLISH_ASYNC_MAX_PENDING = 20_000


# The roles that use each part of the pipeline: the live agents (the scheduler's countries, the
# API's agents list and trigger-check, the alerter's fleet health; with them the `jobs-CC`
# consumers), the scheduler (its loop; the API's trigger-check plans and sends a round with it)
# and the ingester.
AGENTS_ROLES = frozenset({"api", "scheduler", "alerter"})
SCHEDULER_ROLES = frozenset({"api", "scheduler"})
INGESTER_ROLES = frozenset({"ingester"})


@dataclass(frozen=True)
class Pipeline:
    nc: NATS
    js: JetStreamContext
    # None: no role of this process uses it (AGENTS_ROLES, SCHEDULER_ROLES, INGESTER_ROLES).
    agents: LiveAgents | None
    scheduler: Scheduler | None
    ingester: Ingester | None
    # The process's clock (shared.clock), which the parts were given.
    clock: Clock
    # The names answered lately per country, which rounds skip (None: BLOCKLISTS is off).
    fresh: FreshNames | None = None
    # Who reads which mailbox for heartbeat mail (None: no scheduler role).
    readers: HeartbeatReaders | None = None
    # From when scheduled rounds get seeded ids (controller.jobs.scheme): the scheduler's and
    # the alerter's view of the database-wide `seeded_from`, read at start and by `serve`'s
    # watch.
    seeded: SeededGate = field(default_factory=SeededGate)


async def _reconnected() -> None:
    log.info("NATS reconnected")


async def _error(exc: Exception) -> None:
    log.warning("NATS error", error=str(exc))


async def connect_nats(url: str, tls: ssl.SSLContext | None = None) -> NATS:
    """A connection that reconnects forever, with logged state changes; `tls` verifies the
    server (and presents a client certificate) on `tls://` URLs."""
    nc = NATS()

    async def disconnected() -> None:
        # The client reports its own close (drain at shutdown) as a disconnect too: that one
        # is no fault and no reconnect follows.
        if nc.is_closed:
            log.info("NATS connection closed")
        else:
            log.warning("NATS disconnected; reconnecting")

    await nc.connect(
        servers=[u.strip() for u in url.split(",")],
        tls=tls,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        disconnected_cb=disconnected,
        reconnected_cb=_reconnected,
        error_cb=_error,
    )
    return nc


@asynccontextmanager
async def open_pipeline(
    settings: ControllerSettings,
    pool: asyncpg.Pool,
    nc: NATS | None = None,
    *,
    clock: Clock,
) -> AsyncIterator[Pipeline]:
    """Connect (unless `nc` is given), create the streams, build the parts CONTROLLER_ROLES
    use, each given `clock`; drain at exit."""
    roles = settings.roles
    owned = nc is None
    conn = nc or await connect_nats(settings.process.nats_url, nats_tls_context(settings.process))
    try:
        js = conn.jetstream(publish_async_max_pending=PUBLISH_ASYNC_MAX_PENDING)
        streams = settings.streams
        await ensure_streams(
            js,
            streams.results_retention_days,
            results_max_bytes=streams.results_max_mib * MIB,
            events_max_bytes=streams.events_max_mib * MIB,
            replicas=streams.stream_replicas,
        )
        # `seeded_from` read before any round is planned or closed (no closed start).
        seeded = SeededGate(allowed=settings.scheduling.job_ids_seeded)
        await scheme_store.read(pool, seeded)
        async with contextlib.AsyncExitStack() as stack:
            agents = (
                await _agents(stack, settings.fleet, conn, js, clock)
                if roles & AGENTS_ROLES
                else None
            )
            scheduler, fresh, readers = None, None, None
            if roles & SCHEDULER_ROLES:
                if agents is None:
                    raise BrokenInvariant(
                        "pipeline.open_pipeline: SCHEDULER_ROLES is within AGENTS_ROLES"
                    )
                scheduler, fresh, readers = build_scheduler(
                    settings, pool, js, agents, seeded, clock
                )
            ingester = None
            if roles & INGESTER_ROLES:
                ingester = Ingester(
                    pool,
                    conn,
                    js,
                    JobIds.from_box(SecretBox(settings.secrets.secrets_key or "")),
                    default_countries=settings.fair_use.default_check_countries,
                    accept_unsealed=settings.fleet.accept_unsealed_side_facts,
                    clock=clock,
                )
                stack.push_async_callback(ingester.close)
            yield Pipeline(
                conn,
                js,
                agents,
                scheduler,
                ingester,
                clock,
                fresh=fresh,
                readers=readers,
                seeded=seeded,
            )
    finally:
        if owned:
            await conn.drain()


async def _agents(
    stack: contextlib.AsyncExitStack,
    fleet: FleetSettings,
    nc: NATS,
    js: JetStreamContext,
    clock: Clock,
) -> LiveAgents:
    """The live agents, and `jobs-CC` for each country with one (agents may not create or
    change their consumer, deploy/nats_conf.py: they wait for it), removed by JetStream when
    unused; both stopped by `stack`."""
    agents = LiveAgents(
        nc, per_country_max=fleet.agents_per_country_max, clock=clock.monotonic, wall=clock.now
    )
    await agents.start()
    stack.push_async_callback(agents.stop)
    consumers = JobsConsumers(js, agents.countries)
    await consumers.start()
    stack.push_async_callback(consumers.stop)
    return agents


def build_scheduler(
    settings: ControllerSettings,
    pool: asyncpg.Pool,
    js: JetStreamContext,
    agents: LiveAgents,
    seeded: SeededGate,
    clock: Clock,
) -> tuple[Scheduler, FreshNames | None, HeartbeatReaders]:
    """The scheduler's three parts (planner, admission, publisher) and the worker that drives
    them, each given what it uses; the names it skips (None: BLOCKLISTS is off); and who reads
    which mailbox for heartbeat mail (both refreshed by `serve`). `seeded`:
    whether its rounds get seeded job ids (controller.jobs.scheme); `clock`: the instant the
    scheduler and the OAuth2 tokens judge by."""
    reputation, scheduling, fair_use = settings.reputation, settings.scheduling, settings.fair_use
    lists = lists_setting(reputation.blocklists)
    interval = reputation.blocklist_interval_seconds
    fresh = FreshNames(pool, lists, interval, clock) if lists else None
    readers = HeartbeatReaders(pool)
    box = SecretBox(settings.secrets.secrets_key or "")
    keys = CountryKeys(settings.secrets.seal_public_keys_dir)
    links = Links.of(settings.notify)
    countries = fair_use.default_check_countries
    job_ids = JobIds.from_box(box, seeded)
    rounds = RoundPlanner(
        job_ids,
        box,
        keys,
        scheduling=scheduling,
        default_countries=countries,
        held=[
            *([blocklists.ANSWERS.held(fresh)] if fresh is not None else []),
            heartbeat_mail.READERS.held(readers),
        ],
    )
    tokens = token_service(settings.oauth2, pool, box, links, clock)
    planner = Planner(rounds, agents, keys, tokens)
    admission = Admission(
        agents,
        links,
        default_countries=countries,
        login_cap=fair_use.login_cap_per_account,
        trigger_burst=fair_use.trigger_check_burst,
        mails_per_domain=scheduling.roundtrip_mails_per_domain_per_minute,
        budgets=scheduling,
    )
    publisher = JobPublisher(js, agents, keys, job_ids.asks, default_countries=countries)
    scheduler = Scheduler(
        pool,
        planner,
        admission,
        publisher,
        scheduling=scheduling,
        fair_use=fair_use,
        clock=clock.now,
    )
    return scheduler, fresh, readers


def token_service(
    oauth2: OAuth2Settings, pool: asyncpg.Pool, box: SecretBox, links: Links, clock: Clock
) -> TokenService:
    """The OAuth2 access tokens of monitors' logins, as OAUTH2_* allow."""
    return TokenService(
        pool,
        box,
        TokenFetcher.from_settings(oauth2),
        calls_per_hour=oauth2.oauth2_token_calls_per_hour,
        fetches=oauth2.oauth2_token_fetches,
        links=links,
        clock=clock,
    )


def build_alerter(
    settings: ControllerSettings,
    pool: asyncpg.Pool,
    js: JetStreamContext,
    job_ids: JobIds,
    links: Links,
    *,
    batch: int = ALERT_BATCH,
    clock: Callable[[], datetime],
) -> Alerter:
    """The alerter's parts (the evaluator, the teller of its notices, the events' publisher),
    each given what it uses of the alerting, fair use and scheduling settings; `job_ids`: the
    scheduler's, for the `expired` results of rounds nobody ran; `links`: PUBLIC_URL's."""
    alerting, fair_use = settings.alerting, settings.fair_use
    policy = Policy.of(alerting, settings.scheduling.confirm_rounds_per_minute)
    timing = flows.Timing.of(alerting)
    teller = Teller(pool, links, policy=policy, timing=timing, batch=batch, clock=clock)
    effects = Effects(teller, links, fair_use=fair_use)
    evaluator = Evaluator(
        pool,
        ReadyRounds(job_ids, default_countries=fair_use.default_check_countries),
        effects,
        policy=policy,
        batch=batch,
        clock=clock,
    )
    events = EventPublisher(pool, js, batch=batch)
    heartbeats = HeartbeatJudge(pool, effects, policy=policy, clock=clock)
    return Alerter(
        evaluator,
        teller,
        events,
        interval_s=alerting.alert_eval_interval_seconds,
        heartbeats=heartbeats,
    )
