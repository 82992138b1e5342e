"""The scheduler bundles a pass's jobs of a country (controller.scheduling.bundles) only where
every live agent takes bundles: an older agent there would term a bundle as a malformed job."""

import asyncpg
import httpx

from shared.messages import FEATURE_BUNDLES, bundle_parts
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline


async def test_a_pass_bundles_the_jobs_of_countries_whose_every_agent_takes_bundles(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    bundling, mixed = countries.take(2)
    await countries.live(bundling, features=[FEATURE_BUNDLES])
    await countries.live(mixed, "new", features=[FEATURE_BUNDLES])
    await countries.live(mixed, "old")  # predates bundles
    plain = {"secure": False, "ignoreTls": True}  # no login: a job that may run twice
    made = [
        await create(api, org, allowedCheckCountryCodes=[bundling, mixed], smtpConfig=plain)
        for _ in range(3)
    ]
    login = await create(api, org, allowedCheckCountryCodes=[bundling])
    assert await pipeline.scheduler.tick() == 7

    sent = await countries.messages(bundling)
    [bundle] = [(data, msg_id) for data, msg_id in sent if bundle_parts(data) is not None]
    [login_msg] = [msg_id for data, msg_id in sent if bundle_parts(data) is None]
    jobs = {job.monitor_id: (job, msg_id) for job, msg_id in await countries.jobs(bundling)}
    assert jobs[login["publicId"]][0].sealed_config and jobs[login["publicId"]][1] == login_msg
    assert len(bundle_parts(bundle[0]) or []) == 3
    assert {jobs[m["publicId"]][1] for m in made} == {bundle[1]}
    assert bundle[1].endswith("+3")

    alone = await countries.messages(mixed)
    assert len(alone) == 3 and all(bundle_parts(data) is None for data, _ in alone)
    assert sorted(msg_id for _, msg_id in alone) == sorted(
        job.job_id for job, _ in await countries.jobs(mixed)
    )


async def test_no_bundle_carries_more_jobs_than_the_smallest_agent_of_its_country_has_slots(
    api: httpx.AsyncClient,
    org: Tenant,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    """An agent keeps a bundle whole, however few its free slots: a bundle of more jobs than
    an agent's AGENT_CONCURRENCY leaves them waiting there, one slot's checks after another
    (past their window when checks are slow), while the country's other agents stand idle."""
    [cc] = countries.take(1)
    for agent_id, capacity in (("a", 4), ("b", 2), ("c", 8)):
        await countries.live(cc, agent_id, features=[FEATURE_BUNDLES], capacity=capacity)
    plain = {"secure": False, "ignoreTls": True}
    for _ in range(5):
        await create(api, org, allowedCheckCountryCodes=[cc], smtpConfig=plain)
    assert await pipeline.scheduler.tick() == 5
    sizes = [len(bundle_parts(data) or [data]) for data, _ in await countries.messages(cc)]
    print(f"capacities=4,2,8 jobs=5 messages={sizes}")
    assert sum(sizes) == 5 and max(sizes) <= 2, sizes
