"""The controller's scheduler and ingester metrics move when their events happen: a round
scheduled (lateness), a round with no live agent in a listed country (no_agent), results
stored (by country, status and error kind) and the batch that stored them.

Prometheus' registry is one per process and shared by every test, so counters are compared
before and after.
"""

import uuid
from datetime import timedelta

import asyncpg
import httpx
from prometheus_client import REGISTRY

from controller.jobs.rules import JobIds
from shared.timefmt import utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline
from tests.pipeline.test_ingest import publish, result
from tests.pipeline.test_scheduler import make_due


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_scheduled_round_counts_its_lateness_jobs_and_no_agent_countries(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    live, dark = countries.take(2)
    await countries.live(live)
    monitor = await create(api, org, allowedCheckCountryCodes=[live, dark], port=None)
    before = {
        "late": value("mailprobe_schedule_lateness_seconds_count"),
        "jobs": value("mailprobe_jobs_published_total", country=live),
        "dark": value("mailprobe_no_agent_rounds_total", country=dark),
        "live": value("mailprobe_no_agent_rounds_total", country=live),
    }
    await make_due(pipe_pool, monitor["publicId"])
    assert await pipeline.scheduler.tick() == 1
    assert value("mailprobe_schedule_lateness_seconds_count") - before["late"] == 1
    assert value("mailprobe_jobs_published_total", country=live) - before["jobs"] == 1
    assert value("mailprobe_no_agent_rounds_total", country=dark) - before["dark"] == 1
    assert value("mailprobe_no_agent_rounds_total", country=live) == before["live"]


async def test_stored_results_count_by_country_status_and_kind_with_their_batch(
    api: httpx.AsyncClient,
    org: Tenant,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    (cc,) = countries.take()
    monitor = await create(api, org)
    up = {"country": cc, "status": "up", "error_kind": "none"}
    down = {"country": cc, "status": "down", "error_kind": "refused"}
    before = {
        "up": value("mailprobe_results_ingested_total", **up),
        "down": value("mailprobe_results_ingested_total", **down),
        "batches": value("mailprobe_ingest_batch_seconds_count"),
    }
    now = utcnow()
    await publish(pipeline.js, result(job_ids, monitor, cc, at=now - timedelta(minutes=2)))
    await publish(pipeline.js, result(job_ids, monitor, cc, "down", at=now))
    assert await pipeline.ingester.burst() == 2
    assert value("mailprobe_results_ingested_total", **up) - before["up"] == 1
    assert value("mailprobe_results_ingested_total", **down) - before["down"] == 1
    assert value("mailprobe_ingest_batch_seconds_count") - before["batches"] >= 1


async def test_a_made_up_error_kind_is_counted_as_other_and_makes_no_new_series(
    api: httpx.AsyncClient,
    org: Tenant,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """An agent may send any string as errorKind; a label takes only the known kinds, else
    every made-up string would be a series of its own, kept until the controller restarts."""
    (cc,) = countries.take()
    monitor = await create(api, org)
    made_up = f"made-up-{uuid.uuid4().hex[:8]}"
    other = {"country": cc, "status": "down", "error_kind": "other"}
    before = value("mailprobe_results_ingested_total", **other)
    await publish(pipeline.js, result(job_ids, monitor, cc, "down", error_kind=made_up))
    assert await pipeline.ingester.burst() == 1
    assert value("mailprobe_results_ingested_total", **other) - before == 1
    labels = {
        sample.labels.get("error_kind")
        for family in REGISTRY.collect()
        for sample in family.samples
    }
    assert made_up not in labels
