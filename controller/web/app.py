"""`create_app`: the Litestar application on the pool (and pipeline) `serve` built for it."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

import asyncpg
import structlog
from litestar import Litestar, MediaType, Response, get
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.params import QueryParameter
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from controller.access.instance_proof import CHALLENGE, proof
from controller.access.instance_proof import PATH as PROOF_PATH
from controller.db.pool import ping
from controller.notify.egress import Egress
from controller.observability import metrics
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from controller.web import body_bounds, console, request_rate
from controller.web.alertsite.routes import AlertSiteController
from controller.web.api import openapi_doc
from controller.web.api.alerts import AlertSettingsController
from controller.web.api.alerts import router as alerts_router
from controller.web.api.allow import options_allow
from controller.web.api.auth import AuthController, BearerAuthMiddleware, flood_guard
from controller.web.api.blocklists import list_blocklists
from controller.web.api.channels import NotificationChannelController
from controller.web.api.customers import CustomerController
from controller.web.api.errors import EXCEPTION_HANDLERS
from controller.web.api.fleet import list_fleet
from controller.web.api.heartbeat_monitors import router as heartbeat_monitors_router
from controller.web.api.incidents import IncidentController
from controller.web.api.maintenance import MaintenanceWindowController
from controller.web.api.monitor_blocklists import router as blocklists_router
from controller.web.api.monitor_kinds import APIS
from controller.web.api.monitors import router as monitors_router
from controller.web.api.oracles import list_oracles
from controller.web.api.posture import router as posture_router
from controller.web.api.report_mailbox import ReportMailboxController
from controller.web.api.reports import ReportsController, post_guard, receive_tls
from controller.web.api.results import list_agents
from controller.web.api.results import router as results_router
from controller.web.api.status_notices import StatusNoticeController
from controller.web.api.users import UserController
from controller.web.request_types import AnyRequest
from controller.web.services import (
    DEPENDENCIES,
    ApiSettingsDep,
    NatsUp,
    NatsUpDep,
    PoolDep,
    Services,
    WorldDep,
    clock_of,
)
from shared import __version__

if TYPE_CHECKING:
    # What the composition root hands the app (the pipeline): a type only, so web/
    # does not depend on the runtime package above it.
    from controller.runtime.pipeline import Pipeline

log = structlog.get_logger("controller.web.api")

MAX_BODY_BYTES = 64 * 1024
DOCS_PATH = "/schema"  # the OpenAPI document and its pages
READY_TIMEOUT_S = 5.0


def access_log(app: ASGIApp) -> ASGIApp:
    """One canonical log line per request: method, path, status, duration, caller."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        except Exception as exc:
            # Raised by a middleware (e.g. 401); Litestar's outer handler answers with this status.
            status = getattr(exc, "status", 0) or getattr(exc, "status_code", 500)
            raise
        finally:
            user = scope.get("user")
            elapsed = time.perf_counter() - started
            log.info(
                "request",
                method=scope.get("method"),
                path=scope["path"],
                status=status,
                ms=round(elapsed * 1000, 2),
                user=getattr(user, "email", None),
            )
            # The route's template (`/api/smtp-monitors/{smtpMonitorPublicId}`), never the
            # raw path: one series per route, not one per monitor.
            route = scope.get("path_template") or "unmatched"
            metrics.api_request(scope.get("method", ""), route, status, elapsed)

    return middleware


@get("/health", tags=["ops"], summary="Liveness: the process answers", media_type=MediaType.JSON)
async def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


async def readiness(pool: asyncpg.Pool, pipeline: "Pipeline | None") -> str | None:
    """None when PostgreSQL answers and NATS (with the pipeline here) is connected; else a reason
    for whoever probes, who needs no token: never the error itself (it may name hosts, users,
    databases), which goes to the log."""
    return await _readiness(pool, None if pipeline is None else lambda: pipeline.nc.is_connected)


async def _readiness(pool: asyncpg.Pool, nats_up: NatsUp | None) -> str | None:
    try:
        async with pool.acquire(timeout=READY_TIMEOUT_S) as conn:
            await ping(conn, READY_TIMEOUT_S)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        log.warning("not ready: PostgreSQL", error=repr(exc))
        return "database unavailable"
    if nats_up is not None and not nats_up():
        log.warning("not ready: NATS is not connected")
        return "NATS is not connected"
    return None


@get(
    "/ready",
    tags=["ops"],
    summary="Readiness: PostgreSQL answers, and NATS is connected when the pipeline runs here",
    media_type=MediaType.JSON,
)
async def ready(pool: PoolDep, nats_up: NatsUpDep) -> Response[dict[str, str]]:
    reason = await _readiness(pool, nats_up)
    if reason is not None:
        return Response({"status": "not ready", "reason": reason}, status_code=503)
    body = {"status": "ready"}
    if nats_up is not None:
        body["nats"] = "connected"
    return Response(body)


@get(PROOF_PATH, include_in_schema=False, media_type=MediaType.JSON)
async def instance_proof(
    request: AnyRequest,
    api_settings: ApiSettingsDep,
    challenge: Annotated[str, QueryParameter(max_length=256)] = "",
) -> Response[dict[str, str]]:
    """The proof that this controller holds INSTANCE_KEY (controller.access.instance_proof),
    for the address its socket was reached at; 404 when it has none."""
    if api_settings.instance_key is None:
        return Response({"detail": "not found"}, status_code=404)
    if not CHALLENGE.fullmatch(challenge):
        return Response({"detail": "challenge: 32 to 128 lower-case hex digits"}, status_code=400)
    server = request.scope.get("server") or ("", 0)
    key, port = api_settings.instance_key, api_settings.api_port
    return Response({"proof": proof(key, challenge, server[0], port)})


@get(
    "/metrics",
    tags=["ops"],
    summary="Prometheus metrics (text exposition format)",
    include_in_schema=False,
)
async def prometheus_metrics(pool: PoolDep, world: WorldDep) -> Response[bytes]:
    await world.refresh(pool)
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


def create_app(
    settings: ControllerSettings,
    pool: asyncpg.Pool,
    pipeline: "Pipeline | None" = None,
    *,
    egress: Egress | None = None,
) -> Litestar:
    """The API on `pool`, which its caller opens and closes (controller.runtime.serve). Without
    `pipeline` (NATS), trigger-check and the agents list answer 503. `egress`: the notification
    channels' outbound HTTP, when not the settings' (tests: a private CA, loopback receivers)."""
    if settings.secrets.secrets_key is None:
        raise ValueError("SECRETS_KEY is required to serve the API")

    box = SecretBox(settings.secrets.secrets_key)
    clock = clock_of(pipeline)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with Services.open(settings, pool, box, pipeline, egress) as services:
            app.state.services = services
            yield

    app = Litestar(
        route_handlers=[
            AuthController,
            AlertSiteController,
            *(
                make(api)
                for make in (
                    monitors_router,
                    results_router,
                    alerts_router,
                    posture_router,
                    blocklists_router,
                )
                for api in APIS
            ),
            heartbeat_monitors_router,
            AlertSettingsController,
            IncidentController,
            MaintenanceWindowController,
            NotificationChannelController,
            StatusNoticeController,
            ReportsController,
            ReportMailboxController,
            receive_tls,
            list_agents,
            list_blocklists,
            list_oracles,
            list_fleet,
            CustomerController,
            UserController,
            health,
            ready,
            instance_proof,
            prometheus_metrics,
            *console.routers(box, pool, clock),
        ],
        lifespan=[lifespan],
        dependencies=DEPENDENCIES,
        middleware=[
            access_log,
            options_allow,
            DefineMiddleware(
                BearerAuthMiddleware,
                pool=pool,
                clock=clock,
                exclude=[
                    r"^/schema",
                    r"^/health$",
                    r"^/ready$",
                    r"^/instance-proof$",
                    r"^/metrics(/monitors|/reports)?$",
                    r"^/$",
                    r"^/favicon\.ico$",
                    r"^/console(/|$)",
                    r"^/status/",
                    r"^/api/auth/login$",
                    r"^/api/v3/access-tokens$",
                    r"^/reports/tls/",
                ],
            ),
            flood_guard(settings.access).middleware,
            post_guard(settings.reports).middleware,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="mailprobe API",
            version=__version__,
            path=DOCS_PATH,
            render_plugins=[console.docs_plugin(), openapi_doc.KeptJson()],
        ),
        template_config=console.template_config(),
        logging_config=None,
        debug=False,
    )
    app.asgi_handler = openapi_doc.on_demand(app.asgi_handler, app, DOCS_PATH)
    # Around Litestar's own handler, not in `middleware=` (which runs for matched routes only):
    # bodies sent to a path no route takes are cut as well.
    app.asgi_handler = body_bounds.bounded(app.asgi_handler, settings.api.api_body_seconds)
    # Outermost: a request past its address's rate costs no more than its answer.
    rate = request_rate.RequestRate(
        settings.api.api_requests_per_second_per_address,
        settings.api.api_request_burst_per_address,
        trusted=settings.api.trusted_proxies,
    )
    app.asgi_handler = request_rate.bounded(app.asgi_handler, rate)
    return app
