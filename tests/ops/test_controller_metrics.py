"""The controller's `/metrics` and `/ready` over real HTTP, and its sampled ingest lag."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import nats
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from controller.observability import metrics
from controller.runtime.pipeline import open_pipeline
from controller.runtime.serve import KEEP_ALIVE_S, api_server
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared import embedded
from shared.clock import WALL
from shared.messages import CheckResult, encode
from shared.subjects import RESULTS_STREAM, results_subject
from shared.timefmt import iso_ms, utcnow
from testkit.serving import http_client
from tests.conftest import Tenant

ONE_MONITOR_ROUTE = "/api/smtp-monitors/{smtpMonitorPublicId}"


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called `name` in an exposition text, by their sorted labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def api_count(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("mailprobe_api_request_seconds_count", labels) or 0.0


async def test_metrics_answers_without_a_token_in_text_format_with_api_latency_by_route(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    """A request to one monitor counts under its route template and status class, never under
    its raw path (one series per route, not per monitor)."""
    before = api_count("GET", ONE_MONITOR_ROUTE, "4xx")
    missing = uuid.uuid4()
    assert (
        await http.get(f"/api/smtp-monitors/{missing}", headers=tenant.auth())
    ).status_code == 404
    assert (await http.get(f"/api/smtp-monitors/{missing}")).status_code == 401  # no token

    r = await http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert str(missing) not in r.text
    found = samples(r.text, "mailprobe_api_request_seconds_count")
    key = (("method", "GET"), ("route", ONE_MONITOR_ROUTE), ("status", "4xx"))
    assert found[key] == before + 2
    assert "# TYPE mailprobe_api_request_seconds histogram" in r.text
    assert "# TYPE mailprobe_jobs_published_total counter" in r.text


async def test_ready_reports_postgres_and_nats_and_turns_503_when_nats_is_gone(
    settings: ControllerSettings, pool: asyncpg.Pool, nats_url: str
) -> None:
    """With the pipeline in the process (`serve`), readiness needs the NATS connection too."""
    nc = await nats.connect(nats_url)
    async with (
        open_pipeline(settings, pool, nc, clock=WALL) as pipeline,
        serving(settings, pool, pipeline) as url,
        http_client(base_url=url, timeout=5) as client,
    ):
        r = await client.get("/ready")
        assert (r.status_code, r.json()) == (200, {"status": "ready", "nats": "connected"})
        await nc.close()
        r = await client.get("/ready")
        assert r.status_code == 503
        assert r.json() == {"status": "not ready", "reason": "NATS is not connected"}
        assert (await client.get("/health")).status_code == 200  # alive all the same


@asynccontextmanager
async def serving(
    settings: ControllerSettings, pool: asyncpg.Pool, pipeline: object
) -> AsyncIterator[str]:
    """The API as `serve` runs it (controller.runtime.serve.api_server), on a free loopback port."""
    port = embedded.free_port()
    app = create_app(settings, pool, pipeline)  # type: ignore[arg-type]
    server = api_server(settings.replace(api_port=port).api, app)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_ingest_lag_is_the_consumers_pending_count(
    js: JetStreamContext, country: str
) -> None:
    """Results of a monitor nobody has (other tests' ingesters drop them), on a consumer of
    its own made after they are stored: a consumer counts what the stream holds when it is
    made, whereas a message stored later reaches an existing consumer's count through the
    stream's signal to it, a moment after the publish is acknowledged."""
    durable = f"lag-test-{uuid.uuid4().hex[:8]}"
    monitor_id = str(uuid.uuid4())
    subject = results_subject(country, "smtp", monitor_id)
    try:
        now = iso_ms(utcnow())
        for _ in range(3):
            result = CheckResult(
                job_id=str(uuid.uuid4()),
                monitor_id=monitor_id,
                monitor_type="smtp",
                country=country,
                agent_id=f"{country}-lag-test",
                scheduled_at=now,
                started_at=now,
                finished_at=now,
                status="up",
                message="220 ready",
            )
            await js.publish(subject, encode(result))
        await js.add_consumer(
            RESULTS_STREAM, ConsumerConfig(durable_name=durable, filter_subject=subject)
        )
        await metrics.sample([metrics.ingest_lag(js, durable)])
        assert REGISTRY.get_sample_value("mailprobe_ingest_lag_messages") == 3
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(RESULTS_STREAM, durable)
        await js.purge_stream(RESULTS_STREAM, subject=subject)


async def test_no_ingest_consumer_yet_is_no_warning(js: JetStreamContext) -> None:
    """Sampled before the ingester made its consumer (every `make run` start), the lag probe
    used to warn `metrics sample failed error=NotFoundError()`; it now waits for the consumer.
    Another probe's real failure still warns."""

    async def broken() -> None:
        raise RuntimeError("database gone")

    with capture_logs() as logs:
        await metrics.sample([metrics.ingest_lag(js, f"absent-{uuid.uuid4().hex[:8]}"), broken])
    warned = [e for e in logs if e["event"] == "metrics sample failed"]
    assert [e["error"] for e in warned] == ["RuntimeError('database gone')"]


async def test_an_idle_keep_alive_connection_outlives_a_clients_own_expiry(
    settings: ControllerSettings, pool: asyncpg.Pool
) -> None:
    """A client keeps an idle connection for its own expiry (httpx: 5 s) and then reuses it:
    the server keeps it longer (KEEP_ALIVE_S), so the reuse is answered, never reset."""
    assert KEEP_ALIVE_S > 60  # past httpx's 5 s and load balancers' usual 60 s
    async with (
        serving(settings, pool, None) as url,
        http_client(base_url=url, limits=httpx.Limits(keepalive_expiry=30)) as client,
    ):
        first = await client.get("/health")
        assert first.status_code == 200
        await asyncio.sleep(6)  # past uvicorn's default keep-alive (5 s)
        peers: list[object] = []

        async def trace(event: str, info: dict[str, object]) -> None:
            if event.startswith("connection.connect_tcp"):
                peers.append(info)

        again = await client.get("/health", extensions={"trace": trace})
        assert again.status_code == 200
        assert peers == [], "a new connection: the idle one was closed"
