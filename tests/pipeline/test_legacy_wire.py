"""A job carries the legacy side fields (`mailDomain`, `reverseDns`: what `sideChecks` asks, for
agents that predate it) only to a country with a live agent that does not announce
`FEATURE_SIDE_CHECKS`; `sideChecks` goes everywhere (controller.sidechecks.legacy)."""

import httpx

from shared.messages import AGENT_FEATURES, FEATURE_SIDE_CHECKS
from shared.sidechecks.mail_dns import WIRE as MAIL_DNS
from shared.sidechecks.mail_dns import MailDnsAsk
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, WiredPipeline


async def test_a_job_carries_the_legacy_fields_only_where_an_older_agent_is_live(
    api: httpx.AsyncClient,
    org: Tenant,
    pipeline: WiredPipeline,
    countries: Countries,
) -> None:
    assert FEATURE_SIDE_CHECKS in AGENT_FEATURES  # what this release's heartbeat announces
    new, mixed, old = countries.take(3)
    await countries.live(new, features=list(AGENT_FEATURES), capacity=4)
    await countries.live(mixed, "new", features=list(AGENT_FEATURES), capacity=4)
    await countries.live(mixed, "old", features=["bundles"])  # predates `sideChecks`
    await countries.live(old)
    plain = {"secure": False, "ignoreTls": True}
    for cc in (new, mixed, old):
        await create(
            api, org, allowedCheckCountryCodes=[cc], smtpConfig=plain, mailDomain="example.com"
        )
    assert await pipeline.scheduler.tick() == 3  # a new monitor's DNS round, at once

    for cc, legacy in ((new, False), (mixed, True), (old, True)):
        [(job, _)] = await countries.jobs(cc)
        assert MAIL_DNS.ask_of(job.side_checks) == MailDnsAsk(domain="example.com"), cc
        assert "reverse_dns" in job.side_checks, cc
        got = (job.mail_domain, job.reverse_dns, job.blocklists)
        assert got == (("example.com", True, None) if legacy else (None, False, None)), cc
        assert job.asks_seal, cc  # the asks are sealed either way
