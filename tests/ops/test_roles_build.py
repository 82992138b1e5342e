"""A controller builds only what its CONTROLLER_ROLES use: the pipeline's parts (live agents,
scheduler, ingester) and the background workers, against real PostgreSQL and NATS."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import CoroutineType
from typing import Any, cast

import asyncpg
import httpx
import pytest

from controller.db.pool import create_pool
from controller.jobs.scheme import OPEN_AFTER_S
from controller.runtime.pipeline import open_pipeline
from controller.runtime.serve import _workers
from controller.settings import ControllerSettings
from shared import embedded
from shared.clock import WALL
from shared.streams import INGEST_CONSUMER
from shared.subjects import HEARTBEATS_SUBJECTS, RESULTS_STREAM
from testkit.serving import http_client
from tests.conftest import scratch_database
from tests.ops.controller_process import controller_serving
from tests.ops.starting import until_started

# What each role builds: the pipeline's parts, and its workers by their coroutines' names
# (`sample_every`, the metrics, runs in every process; `_watch_scheme`, the job id scheme's
# gate, in those that make scheduled rounds' ids).
BUILT = {
    "api": ({"agents", "scheduler"}, {"housekeeping", "run_every", "sample_every"}),
    "scheduler": (
        {"agents", "scheduler"},
        {"Scheduler.run", "_watch_scheme", "run_every", "sample_every"},
    ),
    "ingester": (
        {"ingester"},
        {"Ingester.run", "ArrivalsIntake.run", "keep_partitions", "keep_packing", "sample_every"}
        | {"_receiving_addresses"},
    ),
    "alerter": (
        {"agents"},
        {"Alerter.run", "OutboxWorker.run", "keep_reports", "read_mailboxes", "run_every"}
        | {"_watch_scheme", "sample_every"},
    ),
}


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A NATS server of this test alone (its consumers and subscriptions are the test's), with
    its monitoring port."""
    monitor = embedded.free_port()
    proc, url = embedded.start_nats(tmp_path / "nats", monitor_port=monitor)
    yield url, monitor
    embedded.stop(proc)


@pytest.fixture(scope="module")
async def scratch(database_url: str) -> AsyncIterator[str]:
    """A database of its own: a scheduler claims every due monitor it finds."""
    async with scratch_database(database_url, "roles_build") as url:
        yield url


@pytest.mark.parametrize("role", sorted(BUILT))
async def test_a_controller_with_one_role_builds_that_roles_parts_only(
    role: str, settings: ControllerSettings, scratch: str, own_nats: tuple[str, int]
) -> None:
    """Pins BUILT: the pipeline holds the parts the role uses and None for the others, and
    the workers are the role's (no scheduler loop without `scheduler`, no ingester without
    `ingester`)."""
    parts, workers = BUILT[role]
    one = settings.replace(controller_roles=role, database_url=scratch, nats_url=own_nats[0])
    pool = await create_pool(scratch, 4)
    stop = asyncio.Event()
    try:
        async with open_pipeline(one, pool, clock=WALL) as pipeline:
            built = {p for p in ("agents", "scheduler", "ingester") if getattr(pipeline, p)}
            assert built == parts
            work = _workers(one, one.roles, pool, pipeline, stop)
            try:
                # Coroutine objects: the `Worker` alias (a Coroutine) has no __qualname__.
                assert {
                    cast("CoroutineType[object, None, None]", c).__qualname__ for c in work
                } == workers
            finally:
                for c in work:
                    c.close()
    finally:
        await pool.close()


async def _monitor(port: int, path: str) -> Any:
    async with http_client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        return (await http.get(path)).json()


async def _consumers(port: int) -> dict[str, set[str]]:
    """Each stream's consumers, from the server's monitoring."""
    jsz = await _monitor(port, "/jsz?streams=true&consumers=true")
    return {
        s["name"]: {c["name"] for c in s.get("consumer_detail", [])}
        for account in jsz.get("account_details", [])
        for s in account.get("stream_detail", [])
    }


async def _subscriptions(port: int) -> set[str]:
    connz = await _monitor(port, "/connz?subs=1")
    return {s for c in connz.get("connections", []) for s in c.get("subscriptions_list", [])}


async def test_an_ingester_only_controller_does_not_watch_the_agents(
    scratch: str, own_nats: tuple[str, int]
) -> None:
    """`python -m controller serve` with CONTROLLER_ROLES=ingester: once its ingester reads
    RESULTS, its connection holds no subscription to the agents' heartbeats (no live agents
    view, which the scheduler, the API and the alerter use), and the process stops cleanly.
    The ingester's consumer is made after the heartbeats' subscription would have been, on the
    same connection, so the server would list that subscription by then."""
    url, monitor = own_nats
    async with controller_serving(scratch, url, "ingester", embedded.free_port()) as proc:

        async def pulling() -> bool | None:
            try:
                made = await _consumers(monitor)
            except httpx.TransportError:
                return None
            return True if INGEST_CONSUMER in made.get(RESULTS_STREAM, set()) else None

        await until_started(proc, pulling, "ingest consumer")
        assert HEARTBEATS_SUBJECTS not in await _subscriptions(monitor)


async def test_the_scheduler_role_alone_makes_no_ingest_consumer(
    settings: ControllerSettings, scratch: str, own_nats: tuple[str, int]
) -> None:
    """With CONTROLLER_ROLES=scheduler, once the live agents view subscribes to heartbeats, no
    ingest consumer exists on RESULTS (the ingester, which makes it, is not built)."""
    url, monitor = own_nats
    one = settings.replace(controller_roles="scheduler", database_url=scratch, nats_url=url)
    pool: asyncpg.Pool = await create_pool(scratch, 4)
    try:
        async with open_pipeline(one, pool, clock=WALL) as pipeline:
            await pipeline.nc.flush()  # the server has our subscriptions
            assert HEARTBEATS_SUBJECTS in await _subscriptions(monitor)
            assert pipeline.ingester is None
            assert INGEST_CONSUMER not in (await _consumers(monitor)).get(RESULTS_STREAM, set())
    finally:
        await pool.close()


@pytest.mark.parametrize("allowed", [True, False])
async def test_a_pipeline_reads_seeded_from_at_start_and_job_ids_seeded_false_clears_it(
    allowed: bool, settings: ControllerSettings, scratch: str, own_nats: tuple[str, int]
) -> None:
    """The scheduler's and the alerter's ids follow `seeded_from` as the pipeline read it at
    start (no closed start); with `JOB_IDS_SEEDED=false` the start clears it, and its watch
    never asks to set it."""
    one = settings.replace(
        controller_roles="scheduler",
        database_url=scratch,
        nats_url=own_nats[0],
        job_ids_seeded=allowed,
    )
    pool = await create_pool(scratch, 4)
    try:
        async with pool.acquire() as conn:
            since = await conn.fetchval(
                "UPDATE job_id_scheme SET seeded_from = now() RETURNING seeded_from"
            )
        async with open_pipeline(one, pool, clock=WALL) as pipeline:
            assert pipeline.seeded() == (since if allowed else None)
            assert pipeline.seeded.look(True, OPEN_AFTER_S) == (None if allowed else "close")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT seeded_from FROM job_id_scheme") == (
                since if allowed else None
            )
    finally:
        await pool.close()
