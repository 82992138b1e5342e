"""The controller's side of the check pipeline on one NATS connection: streams, live agents
(from heartbeats), scheduler and ingester. `serve` opens it and hands it to the API, whose
services (controller.web.services) take what they need of it."""

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from controller.fleet.live import LiveAgents
from controller.ingest.ingester import Ingester
from controller.jobs.rules import JobIds
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
from controller.sidechecks.blocklists.rules import lists_setting
from controller.sidechecks.blocklists.watch import FreshNames
from shared.settings import ControllerSettings, nats_tls_context
from shared.streams import MIB, JobsConsumers, ensure_streams

log = structlog.get_logger(__name__)

# Jobs in flight between publish and ack; the scheduler publishes a whole batch at once.
PUBLISH_ASYNC_MAX_PENDING = 20_000


@dataclass(frozen=True)
class Pipeline:
    nc: NATS
    js: JetStreamContext
    agents: LiveAgents
    scheduler: Scheduler
    ingester: Ingester
    # The names answered lately per country, which rounds skip (None: BLOCKLISTS is off).
    fresh: FreshNames | None = None


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


def build_scheduler(
    settings: ControllerSettings,
    pool: asyncpg.Pool,
    js: JetStreamContext,
    agents: LiveAgents,
    box: SecretBox,
    fresh: FreshNames | None,
) -> Scheduler:
    """The scheduler's three parts (planner, admission, publisher) and the worker that drives
    them, each given what it uses."""
    keys = CountryKeys(settings.seal_public_keys_dir)
    links = Links.of(settings)
    rounds = RoundPlanner(
        JobIds.from_box(box),
        box,
        keys,
        default_countries=settings.default_check_countries,
        dns_interval_s=settings.dns_posture_interval_seconds,
        login_spacing_s=settings.login_spacing_seconds,
        result_bundles=settings.result_bundles,
        blocklists=lists_setting(settings.blocklists),
        blocklist_interval_s=settings.blocklist_interval_seconds,
        fresh=fresh or (lambda cc: ()),
        known=fresh.known if fresh else (lambda monitor_id, cc: ()),
        asked_at=fresh.asked_at if fresh else (lambda monitor_id, cc: None),
    )
    tokens = TokenService(
        pool,
        box,
        TokenFetcher.from_settings(
            settings.oauth2_ca_file, settings.oauth2_allow_private_endpoints
        ),
        calls_per_hour=settings.oauth2_token_calls_per_hour,
        fetches=settings.oauth2_token_fetches,
        links=links,
    )
    admission = Admission(
        agents,
        links,
        default_countries=settings.default_check_countries,
        login_cap=settings.login_cap_per_account,
        trigger_burst=settings.trigger_check_burst,
        mails_per_domain=settings.roundtrip_mails_per_domain_per_minute,
    )
    return Scheduler(
        pool,
        Planner(
            rounds, agents, keys, tokens, readiness_queries=settings.readiness_queries_per_hour
        ),
        admission,
        JobPublisher(js, agents, keys, default_countries=settings.default_check_countries),
        default_countries=settings.default_check_countries,
        batch=settings.scheduler_batch,
        gather_s=settings.scheduler_gather_seconds,
        checks_per_minute=settings.org_max_checks_per_minute,
        confirm_per_minute=settings.confirm_rounds_per_minute,
    )


@asynccontextmanager
async def open_pipeline(
    settings: ControllerSettings, pool: asyncpg.Pool, nc: NATS | None = None
) -> AsyncIterator[Pipeline]:
    """Connect (unless `nc` is given), create the streams, build the parts; drain at exit."""
    owned = nc is None
    conn = nc or await connect_nats(settings.nats_url, nats_tls_context(settings))
    try:
        js = conn.jetstream(publish_async_max_pending=PUBLISH_ASYNC_MAX_PENDING)
        await ensure_streams(
            js,
            settings.results_retention_days,
            results_max_bytes=settings.results_max_mib * MIB,
            events_max_bytes=settings.events_max_mib * MIB,
            replicas=settings.stream_replicas,
        )
        lists = lists_setting(settings.blocklists)
        fresh = FreshNames(pool, lists, settings.blocklist_interval_seconds) if lists else None
        agents = LiveAgents(conn, per_country_max=settings.agents_per_country_max)
        await agents.start()
        # `jobs-CC` for each country with a live agent (agents may not create or change their
        # consumer, deploy/nats_conf.py: they wait for it), removed by JetStream when unused.
        consumers = JobsConsumers(js, agents.countries)
        await consumers.start()
        box = SecretBox(settings.secrets_key or "")
        scheduler = build_scheduler(settings, pool, js, agents, box, fresh)
        ingester = Ingester(
            pool,
            conn,
            js,
            JobIds.from_box(box),
            default_countries=settings.default_check_countries,
        )
        try:
            yield Pipeline(conn, js, agents, scheduler, ingester, fresh)
        finally:
            await ingester.close()
            await consumers.stop()
            await agents.stop()
    finally:
        if owned:
            await conn.drain()
