"""`serve`, the controller's composition root: the one place that opens the pool and the NATS
connection (with the pipeline on it), builds the workers of the roles this process runs (and
only theirs) and the API on them, runs them and closes them in order. Each part gets its group
of the settings (controller.settings), never the whole.

The roles of CONTROLLER_ROLES run as asyncio tasks sharing that pool and connection: `api`
(uvicorn, and the tokens' and login throttle's housekeeping), `scheduler`, `ingester` (which also
keeps the result partitions and stores the receivers' arrivals), `alerter` (evaluation, events,
and the outbox worker sending notifications). Without `api`, `/metrics`, `/health` and `/ready`
are served on CONTROLLER_METRICS_PORT instead.

The process's clock (shared.clock's `WALL`) is composed here, once: the pipeline's parts, the
housekeeping, retention and packing, and the alerter's parts take "now" from it."""

import asyncio
import contextlib
import functools
import signal
import socket
from collections.abc import Coroutine
from typing import TypeVar

import asyncpg
import structlog
import uvicorn
from litestar import Litestar

from controller.access import accounts_store as accounts
from controller.access.housekeeping import housekeeping
from controller.arrivals import addresses
from controller.arrivals.intake import ArrivalsIntake
from controller.db.pool import create_pool
from controller.fleet.live import LiveAgents
from controller.fleet.watch import FleetWatch
from controller.ingest.packer import keep_packing
from controller.ingest.retention import keep_partitions
from controller.jobs import scheme, scheme_store
from controller.jobs.rules import JobIds
from controller.jobs.scheme import SeededGate
from controller.notify import apprise_channel, channels, outbox_store
from controller.notify.channel_send import channel_sender
from controller.notify.links import Links
from controller.notify.outbox import OutboxWorker
from controller.observability import metrics
from controller.oracles.watch import OracleWatch
from controller.posture.senders import Grader
from controller.runtime.pipeline import Pipeline, build_alerter, open_pipeline
from controller.scheduling.plan import TENANT_PURPOSE, tenant
from controller.secrets.box import SecretBox
from controller.settings import ApiSettings, ControllerSettings, NotifySettings, RuntimeSettings
from controller.sidechecks.blocklists.oracles import ListOracles
from controller.sidechecks.blocklists.rules import lists_setting
from controller.sidechecks.blocklists.watch import BlocklistWatch, FreshNames
from controller.sidechecks.heartbeat_mail.store import HeartbeatReaders
from controller.web import h11_bounds
from controller.web.app import create_app, readiness
from controller.web.front_protocol import FrontLimits, front_protocol
from controller.web.front_server import FrontServer
from shared import ops
from shared.arrivals import ReceivingAddress
from shared.clock import WALL, Clock
from shared.loop import run_every
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

# A background worker of a role: runs until `serve`'s stop event is set.
Worker = Coroutine[object, None, None]
WATCH_S = 60.0  # how often blocklist listings are moved (answers come hours apart)
T = TypeVar("T")


async def serve(settings: ControllerSettings) -> None:
    roles = settings.roles
    stop = asyncio.Event()
    # Ours before uvicorn's: uvicorn re-raises the signal it caught when it returns, and this
    # handler then takes it, so the other roles still shut down in order.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        started = await _until_stopped(_start(stack, settings), stop)
        if started is None or stop.is_set():
            log.info("stop asked for during start-up: not serving")
            return
        pool, pipeline = started
        tasks = [asyncio.create_task(c) for c in _workers(settings, roles, pool, pipeline, stop)]
        log.info("controller started", roles=sorted(roles))
        try:
            if "api" in roles:
                await _serve_api(settings.api, create_app(settings, pool, pipeline), stop)
            else:
                await _serve_ops(settings.runtime, pool, pipeline, stop)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("controller stopped")


async def announce_grants(notify: NotifySettings, pool: asyncpg.Pool) -> None:
    """One line per NOTIFY_PRIVATE_NETWORK_GRANTS grant naming its organization, so the operator
    sees who may reach what; a warning for `*` and for an id no organization has (a grant
    that reaches no one, or the one meant for another organization)."""
    grants = notify.notify_private_grants
    ids = [org for org in grants if org != "*"]
    async with pool.acquire() as conn:
        names = await accounts.organization_names(conn, ids) if ids else {}
    for org, nets in grants.items():
        networks = [str(n) for n in nets]
        if org == "*":
            log.warning("private networks granted to every organization", networks=networks)
        elif org in names:
            log.info(
                "private networks granted",
                organization_id=org,
                organization=names[org],
                networks=networks,
            )
        else:
            log.warning(
                "private networks granted to an organization id that does not exist",
                organization_id=org,
                networks=networks,
            )


def application_name(roles: frozenset[str], seeded: bool = True) -> str:
    """What the controller's PostgreSQL sessions are called: `mailprobe controller`, its roles
    (so an operator, and `bench scale`, tells which role's sessions spend what) and that it
    lets scheduled rounds be seeded (JOB_IDS_SEEDED; controller.jobs.scheme: what the
    controllers' watches look for)."""
    return scheme.session_name(roles, seeded)


async def _start(
    stack: contextlib.AsyncExitStack, settings: ControllerSettings
) -> tuple[asyncpg.Pool, Pipeline]:
    """The pool and the pipeline, each closed by `stack` (what was opened, when cut short), the
    notification plugins loaded and the grants announced: all that comes before serving."""
    pool = await create_pool(
        settings.database.database_url,
        settings.database.db_pool_max,
        application_name=application_name(settings.roles, settings.scheduling.job_ids_seeded),
    )
    stack.push_async_callback(pool.close)
    pipeline = await stack.enter_async_context(open_pipeline(settings, pool, clock=WALL))
    await asyncio.to_thread(apprise_channel.load_plugins)  # never on the serving loop
    await announce_grants(settings.notify, pool)
    return pool, pipeline


async def _until_stopped(work: Coroutine[object, object, T], stop: asyncio.Event) -> T | None:
    """`work`'s result, or None once `stop` is set first (`work` is cancelled, and so is it
    when the caller is)."""
    task = asyncio.create_task(work)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result() if not task.cancelled() else None


def _workers(
    settings: ControllerSettings,
    roles: frozenset[str],
    pool: asyncpg.Pool,
    pipeline: Pipeline,
    stop: asyncio.Event,
) -> list[Worker]:
    """Every background worker of the roles this process runs, each ending once `stop` is set
    (the pipeline holds the parts of these roles only)."""
    work: list[Worker] = []
    clock = pipeline.clock
    if "api" in roles:
        work.append(housekeeping(pool, clock, stop))
    if "scheduler" in roles and pipeline.scheduler is not None:
        work.append(pipeline.scheduler.run(stop))
        if pipeline.fresh is not None:
            refresh = pipeline.fresh.refresh
            work.append(run_every(FreshNames.REFRESH_S, refresh, name="blocklist names", stop=stop))
    if pipeline.readers is not None:  # the scheduler's rounds and the API's check-now
        readers = pipeline.readers.refresh
        work.append(
            run_every(HeartbeatReaders.REFRESH_S, readers, name="mailbox readers", stop=stop)
        )
    if "ingester" in roles and pipeline.ingester is not None:
        retention = settings.retention
        work += [
            pipeline.ingester.run(stop),
            ArrivalsIntake(
                pipeline.js,
                pool,
                keep_days=retention.check_history_days,
                clock=clock,
                graded=Grader(Links.of(settings.notify)).grade,
            ).run(stop),
            _receiving_addresses(settings, pool, pipeline, stop),
            keep_partitions(
                pool, clock, stop, retention.check_history_days, retention.check_raw_days
            ),
            keep_packing(
                pool, JobIds.from_box(SecretBox(settings.secrets.secrets_key or "")), clock, stop
            ),
        ]
    if "alerter" in roles and pipeline.agents is not None:
        work += _alerter(settings, pool, pipeline, pipeline.agents, stop)
    if roles & {"scheduler", "alerter"}:
        work.append(_watch_scheme(pool, pipeline.seeded, stop, clock))
    work.append(metrics.sample_every(stop, _probes(roles, pool, pipeline)))
    return work


async def _receiving_addresses(
    settings: ControllerSettings, pool: asyncpg.Pool, pipeline: Pipeline, stop: asyncio.Event
) -> None:
    """The RECEIVERS bucket kept as the heartbeat monitors say (controller.arrivals.addresses)."""
    key = SecretBox(settings.secrets.secrets_key or "").subkeys(TENANT_PURPOSE)[0]
    of = functools.partial(tenant, key)
    known: dict[str, ReceivingAddress | None] = {}

    async def one_pass() -> None:
        try:
            await addresses.sync(pipeline.js, pool, of, known)
        except Exception as exc:  # NATS or PostgreSQL away: tried again next pass
            log.warning("receiving_addresses_failed", error=repr(exc)[:200])

    await run_every(addresses.SYNC_EVERY_S, one_pass, name="receiving addresses", stop=stop)


def _alerter(
    settings: ControllerSettings,
    pool: asyncpg.Pool,
    pipeline: Pipeline,
    agents: LiveAgents,
    stop: asyncio.Event,
) -> list[Worker]:
    """The evaluation loop and the outbox worker (which warns of each channel not configured
    here). The alerter makes the scheduler's job ids for the rounds nobody ran (under the
    scheme the pipeline's `seeded` says, as the scheduler's); its parts take the pipeline's
    clock."""
    from controller.notify.budget import Budget

    alerting, notify = settings.alerting, settings.notify
    box = SecretBox(settings.secrets.secrets_key or "")
    links = Links.of(notify)
    js, seeded, clock = pipeline.js, pipeline.seeded, pipeline.clock
    found = channels(notify) | channel_sender(notify, pool, box, clock=clock.now).channels()
    alerter = build_alerter(
        settings, pool, js, JobIds.from_box(box, seeded), links, clock=clock.now
    )
    worker = OutboxWorker(
        pool,
        found,
        max_attempts=notify.notify_max_attempts,
        interval_s=alerting.alert_eval_interval_seconds,
        senders=notify.notify_senders,
        org_share=notify.notify_org_sender_share,
        budget=Budget.of(settings.budget),
        links=links,
        clock=clock.now,
    )
    from controller.oauth2.fetcher import TokenFetcher
    from controller.reports.intake import Limits
    from controller.reports.keeping import keep_reports
    from controller.reports.reading import Reader, read_mailboxes

    reports, oauth2 = settings.reports, settings.oauth2
    kept = keep_reports(pool, reports.reports_retention_days, links, stop, clock)
    reader = Reader(
        box,
        TokenFetcher.from_settings(oauth2),
        links,
        clock,
        interval_s=reports.reports_mailbox_interval_seconds,
        calls_per_hour=oauth2.oauth2_token_calls_per_hour,
        allow_private=reports.reports_mailbox_allow_private,
        limits=Limits.of(reports),
    )
    work = [alerter.run(stop), worker.run(stop), kept, read_mailboxes(pool, reader, stop)]
    reputation = settings.reputation
    list_oracles = ListOracles(
        lists_setting(reputation.blocklists), reputation.blocklist_interval_seconds
    )
    oracles = OracleWatch(
        pool,
        [list_oracles],
        dns_window_s=2 * settings.scheduling.dns_posture_interval_seconds,
        clock=clock,
    )
    work.append(run_every(WATCH_S, oracles.run_once, name="oracle health", stop=stop))
    fleet = FleetWatch(
        pool, agents, saturated_ratio_max=settings.fleet.fleet_saturated_ratio_max, clock=clock
    )
    work.append(run_every(WATCH_S, fleet.run_once, name="fleet health", stop=stop))
    if lists := lists_setting(reputation.blocklists):
        watch = BlocklistWatch(
            pool,
            lists,
            interval_s=reputation.blocklist_interval_seconds,
            hold_s=reputation.blocklist_hold_seconds,
            links=links,
            clock=clock,
        )
        work.append(run_every(WATCH_S, watch.run_once, name="blocklist findings", stop=stop))
    return work


async def _watch_scheme(
    pool: asyncpg.Pool, seeded: SeededGate, stop: asyncio.Event, clock: Clock
) -> None:
    """Look at the live controllers every LOOK_EVERY_S, moving and reading `seeded_from`
    (controller.jobs.scheme); a line when it changes. A look that fails keeps the value last
    read (every process applies the same one) and starts the wait for a switch again."""

    async def step() -> None:
        was = seeded()
        try:
            now = await scheme_store.look(pool, seeded, clock)
        except BaseException:
            seeded.unseen()
            raise
        if now != was:
            log.info(
                "scheduled rounds' job ids",
                scheme="seeded" if now else "keyed",
                seeded_from=iso_ms(now) if now else None,
            )

    await run_every(scheme.LOOK_EVERY_S, step, name="job id scheme", stop=stop)


def _probes(roles: frozenset[str], pool: asyncpg.Pool, pipeline: Pipeline) -> list[metrics.Probe]:
    """The gauges this process samples: those of the roles it runs."""
    probes = []
    if "ingester" in roles and pipeline.ingester is not None:
        probes.append(metrics.ingest_lag(pipeline.js, pipeline.ingester.durable))
    if "alerter" in roles:
        probes.append(metrics.outbox_pending(functools.partial(outbox_store.pending, pool)))
    return probes


async def _serve_ops(
    runtime: RuntimeSettings, pool: asyncpg.Pool, pipeline: Pipeline, stop: asyncio.Event
) -> None:
    """No API in this process: the ops endpoints on their own port (none with port 0), so a
    scheduler- or ingester-only replica is probed and scraped like any other, until `stop`."""
    server = None
    if runtime.controller_metrics_port:
        server = await ops.start(
            runtime.controller_metrics_host,
            runtime.controller_metrics_port,
            functools.partial(readiness, pool, pipeline),
            setting="CONTROLLER_METRICS_PORT",
        )
    try:
        await stop.wait()
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()


# How long an idle keep-alive connection stays open: longer than clients keep theirs (httpx 5 s,
# load balancers 60 s), so a client never reuses a connection the server is closing that
# instant (a reset, not an answer). uvicorn's default, 5 s, is httpx's own expiry.
KEEP_ALIVE_S = 75
# The API's HTTP/1.1 parser is h11 (uvicorn's httptools parser keeps a head of any size in
# memory), under the bounds of its protocol (controller.web.front_protocol): a head past
# MAX_HEAD_BYTES is refused with 400 and the connection closed, whole or in pieces.
MAX_HEAD_BYTES = h11_bounds.MAX_HEAD_BYTES


def api_server(api: ApiSettings, app: Litestar) -> uvicorn.Server:
    """The API's uvicorn server: HTTPS when API_TLS_CERT_FILE / API_TLS_KEY_FILE are set."""
    config = uvicorn.Config(
        app,
        host=api.api_host,
        port=api.api_port,
        ssl_certfile=api.api_tls_cert_file,
        ssl_keyfile=api.api_tls_key_file,
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        http=front_protocol(FrontLimits.of(api)),
        # No websocket route: an upgrade stays HTTP (an upgraded connection would leave the
        # front's protocol, and its bounds with it).
        ws="none",
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        # The client address (login throttling, logs) is the socket peer unless it is one of
        # API_TRUSTED_PROXIES; uvicorn's default would trust X-Forwarded-For from loopback.
        proxy_headers=bool(api.trusted_proxies),
        forwarded_allow_ips=api.trusted_proxies,
    )
    return FrontServer(config, handshake_seconds=api.api_head_seconds)


def _port_taken(host: str, port: int) -> bool:
    """Whether another socket holds `port` (bound as uvicorn binds: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


async def _serve_api(api: ApiSettings, app: Litestar, stop: asyncio.Event) -> None:
    """uvicorn returns on SIGINT/SIGTERM (it installs the handlers while it serves), and on
    `stop`, which ours set: a signal taken before uvicorn's handlers were in place."""
    server = api_server(api, app)

    async def exit_on_stop() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(exit_on_stop())
    try:
        await server.serve()
    except SystemExit:
        # uvicorn logs the bind error and exits; say which setting moves the port.
        if _port_taken(api.api_host, api.api_port):
            log.error(
                "the API's port is in use by another program: set API_PORT (and API_HOST) to a"
                " free one",
                setting="API_PORT",
                host=api.api_host,
                port=api.api_port,
            )
        raise
    finally:
        watcher.cancel()
