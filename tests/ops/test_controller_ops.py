"""A controller without the `api` role (a scheduler- or ingester-only replica) still answers
`/metrics`, `/health` and `/ready`, on CONTROLLER_METRICS_PORT."""

import functools
from collections.abc import AsyncIterator

import asyncpg
import httpx
import nats
import pytest

from controller.runtime.pipeline import open_pipeline
from controller.settings import ControllerSettings
from controller.web.app import readiness
from shared import embedded, ops
from shared.clock import WALL
from testkit.serving import http_client
from tests.conftest import scratch_database
from tests.ops.controller_process import controller_serving
from tests.ops.starting import until_started


async def test_ops_ready_follows_postgres_and_nats(
    settings: ControllerSettings, pool: asyncpg.Pool, nats_url: str
) -> None:
    """The check `serve` gives the ops server without `api`: the API's `/ready`, PostgreSQL
    and NATS; 503 with the reason once NATS is gone."""
    nc = await nats.connect(nats_url)
    port = embedded.free_port()
    async with open_pipeline(settings, pool, nc, clock=WALL) as pipeline:
        server = await ops.start("127.0.0.1", port, functools.partial(readiness, pool, pipeline))
        assert server is not None
        try:
            async with http_client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
                assert (await http.get("/ready")).json() == {"status": "ready"}
                await nc.close()
                r = await http.get("/ready")
                assert (r.status_code, r.json()["reason"]) == (503, "NATS is not connected")
                assert (await http.get("/health")).status_code == 200
        finally:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def scratch(database_url: str) -> AsyncIterator[str]:
    """A database of its own: a scheduler claims every due monitor it finds."""
    async with scratch_database(database_url, "ops_serve") as url:
        yield url


async def test_a_scheduler_only_controller_serves_metrics_health_and_ready(
    scratch: str, nats_url: str
) -> None:
    ops_port, api_port = embedded.free_port(), embedded.free_port()
    async with (
        controller_serving(
            scratch, nats_url, "scheduler", ops_port, API_PORT=str(api_port)
        ) as proc,
        http_client(base_url=f"http://127.0.0.1:{ops_port}", timeout=5) as http,
    ):

        async def answer() -> httpx.Response | None:
            try:
                return await http.get("/ready")
            except httpx.TransportError:  # the interpreter starting, the streams made
                return None

        r = await until_started(proc, answer, "answer on /ready")
        assert (r.status_code, r.json()) == (200, {"status": "ready"})
        assert (await http.get("/health")).json()["status"] == "ok"
        text = (await http.get("/metrics")).text
        assert "# TYPE mailprobe_schedule_lateness_seconds histogram" in text
        with pytest.raises(httpx.TransportError):  # no API in this process
            await http.get(f"http://127.0.0.1:{api_port}/health")
