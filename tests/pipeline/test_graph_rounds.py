"""Round trips over Microsoft Graph and the Gmail API, scheduler to NATS (issue 82): the real
scheduler fetches the legs' tokens from the peer's token endpoint and seals the job to a
country whose every live agent runs the API's legs (`graph`, `gmail`); a country with an agent
older than that gets no job, and its round is recorded `no_agent`, never sent to an agent that
would speak SMTP to the API."""

import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import httpx
import pytest
import trustme

from controller.oauth2.fetcher import TokenFetcher
from controller.oauth2.tokens import TokenService
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.clock import WALL
from shared.messages import (
    FEATURE_API_MAILBOX,
    FEATURE_GMAIL,
    FEATURE_GRAPH,
    FEATURE_OAUTH2,
    ImapPopConfig,
    RoundTripConfig,
    encode,
)
from shared.timefmt import utcnow
from testkit.oauth2.token_endpoint import ca_context
from testkit.peers.gmail import GmailPeer, serve_gmail
from testkit.peers.graph import GraphPeer, serve_graph
from testkit.sealing import KeyRing
from testkit.serving import http_client, serve_app
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries, SchedulerWith, WiredPipeline

SENDER, PROBE = "sender@contoso.test", "probe@contoso.test"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
async def oauth_api_url(
    settings: ControllerSettings, pipe_pool: asyncpg.Pool, pipeline: WiredPipeline
) -> AsyncIterator[str]:
    """The API with token endpoints on loopback allowed, served once for the module."""
    allowing = settings.replace(oauth2_token_hosts="127.0.0.1")
    async with serve_app(create_app(allowing, pipe_pool, pipeline)) as url:
        yield url


@pytest.fixture
async def oauth_api(oauth_api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=oauth_api_url, timeout=10) as client:
        yield client


def graph_body(org: Tenant, peer: GraphPeer, countries: list[str]) -> dict[str, object]:
    """A Graph round trip on the peer, from `countries`, its tokens from the peer's endpoint."""
    grant = {
        "grant": "client_credentials",
        "tokenUrl": f"{peer.url}/contoso.test/oauth2/v2.0/token",
        "clientId": peer.client_id,
        "clientSecret": peer.client_secret,
    }
    return {
        "customerId": org.customer_id,
        "name": "Mail over Graph",
        "allowedCheckCountryCodes": countries,
        "roundtripConfig": {
            "send": {
                "api": "graph",
                "hostname": "127.0.0.1",
                "port": peer.port,
                "auth": {"user": SENDER, "oauth2": grant},
            },
            "to": PROBE,
            "receive": {
                "api": "graph",
                "hostname": "127.0.0.1",
                "port": peer.port,
                "user": PROBE,
                "oauth2": grant,
            },
        },
    }


async def due_now(pool: asyncpg.Pool, org: Tenant, at: datetime) -> None:
    """The organization's monitors are due at `at`, the scheduler's (frozen) now: its round is
    the one sent, however long the test takes between its passes."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET next_due_at = $1 WHERE organization_id = $2", at, org.org_id
        )


async def reserved(pool: asyncpg.Pool, job_id: str) -> list[int]:
    """What a job reserved on each mailbox it calls (`api_calls`), smallest first."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT given FROM api_calls WHERE job = $1 ORDER BY given", uuid.UUID(job_id)
        )
    return [int(row["given"]) for row in rows]


async def test_graph_legs_go_only_where_every_agent_runs_them(
    oauth_api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    settings: ControllerSettings,
    seal_keys: KeyRing,
    scheduler_with: SchedulerWith,
    ca: trustme.CA,
) -> None:
    new, old = sorted(countries.take(2))
    await countries.live(new, features=[FEATURE_OAUTH2, FEATURE_GRAPH])
    await countries.live(old, features=[FEATURE_OAUTH2])  # older than Graph legs
    box = SecretBox(settings.secrets.secrets_key or "")
    async with serve_graph(GraphPeer({SENDER, PROBE}), ca) as peer:
        at = utcnow()
        scheduler = scheduler_with(
            clock=lambda: at,
            tokens=TokenService(
                pipe_pool, box, TokenFetcher(verify=ca_context(ca), allow_private=True), clock=WALL
            ),
        )
        r = await oauth_api.post(
            "/api/roundtrip-monitors", headers=org.auth(), json=graph_body(org, peer, [new, old])
        )
        assert r.status_code == 201, r.text
        public_id = r.json()["publicId"]
        await due_now(pipe_pool, org, at)
        await scheduler.run_due()  # the tokens are fetched in the background, then claimed
        await scheduler.planner.settled()
        await scheduler.run_due()
        asked = [c for c in peer.calls if c.endswith("/oauth2/v2.0/token")]
        assert len(asked) == 2  # one per leg's grant

    [(job, _)] = await countries.jobs(new)
    assert peer.client_secret.encode() not in encode(job)
    opened = seal_keys.opened(job)
    assert isinstance(opened.config, RoundTripConfig)
    assert (opened.config.send.api, opened.config.receive.api) == ("graph", "graph")
    assert opened.config.receive.access_token.reveal() in peer.tokens
    # Its calls are reserved on both mailboxes it calls: sendMail on the sender's, the rest on
    # the probe mailbox's; it carries their sum.
    assert (job.api_calls, job.api_units) == (200, None)
    assert await reserved(pipe_pool, job.job_id) == [1, 199]
    assert await countries.jobs(old) == []
    async with pipe_pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, error_kind, message FROM check_results"
            " WHERE monitor_public_id = $1 AND country = $2",
            public_id,
            old,
        )
    assert row is not None and (row["status"], row["error_kind"]) == ("missed", "no_agent")
    assert "graph" in row["message"]


async def test_a_graph_mailbox_counts_against_the_organizations_login_cap(
    oauth_api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    settings: ControllerSettings,
    scheduler_with: SchedulerWith,
    ca: trustme.CA,
) -> None:
    """A Graph leg's calls to its mailbox are bounded as a login to it is: each country's
    round is one login to the mailbox's account (`LOGIN_CAP_PER_ACCOUNT`, per organization),
    so with a cap of 1 the second country's round is held `login_capped`, not sent."""
    two = sorted(countries.take(2))
    for cc in two:
        await countries.live(cc, features=[FEATURE_OAUTH2, FEATURE_GRAPH])
    box = SecretBox(settings.secrets.secrets_key or "")
    async with serve_graph(GraphPeer({SENDER, PROBE}), ca) as peer:
        at = utcnow()
        scheduler = scheduler_with(
            clock=lambda: at,
            login_cap=1,
            tokens=TokenService(
                pipe_pool, box, TokenFetcher(verify=ca_context(ca), allow_private=True), clock=WALL
            ),
        )
        r = await oauth_api.post(
            "/api/roundtrip-monitors", headers=org.auth(), json=graph_body(org, peer, two)
        )
        assert r.status_code == 201, r.text
        public_id = r.json()["publicId"]
        await due_now(pipe_pool, org, at)
        await scheduler.run_due()
        await scheduler.planner.settled()
        await scheduler.run_due()
    sent = [cc for cc in two if await countries.jobs(cc)]
    assert len(sent) == 1, sent
    async with pipe_pool.acquire() as conn:
        capped = await conn.fetch(
            "SELECT country FROM check_results"
            " WHERE monitor_public_id = $1 AND error_kind = 'login_capped'",
            public_id,
        )
    assert [c["country"] for c in capped] == [cc for cc in two if cc not in sent]


async def test_gmail_legs_go_only_where_every_agent_runs_them(
    oauth_api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    settings: ControllerSettings,
    seal_keys: KeyRing,
    scheduler_with: SchedulerWith,
    ca: trustme.CA,
) -> None:
    """An agent that runs Graph legs but not Gmail's gets no Gmail round trip."""
    new, old = sorted(countries.take(2))
    await countries.live(new, features=[FEATURE_OAUTH2, FEATURE_GMAIL])
    await countries.live(old, features=[FEATURE_OAUTH2, FEATURE_GRAPH])
    box = SecretBox(settings.secrets.secrets_key or "")
    async with serve_gmail(GmailPeer({SENDER, PROBE}), ca) as peer:
        at = utcnow()
        scheduler = scheduler_with(
            clock=lambda: at,
            tokens=TokenService(
                pipe_pool, box, TokenFetcher(verify=ca_context(ca), allow_private=True), clock=WALL
            ),
        )
        grant = {
            "grant": "refresh_token",
            "tokenUrl": f"{peer.url}/token",
            "clientId": peer.client_id,
            "clientSecret": peer.client_secret,
            "refreshToken": peer.refresh_token,
        }
        leg = {"api": "gmail", "hostname": "127.0.0.1", "port": peer.port}
        body = {
            "customerId": org.customer_id,
            "name": "Mail over Gmail",
            "allowedCheckCountryCodes": [new, old],
            "roundtripConfig": {
                "send": {**leg, "auth": {"user": SENDER, "oauth2": grant}},
                "to": PROBE,
                "receive": {**leg, "user": PROBE, "oauth2": grant},
            },
        }
        r = await oauth_api.post("/api/roundtrip-monitors", headers=org.auth(), json=body)
        assert r.status_code == 201, r.text
        public_id = r.json()["publicId"]
        await due_now(pipe_pool, org, at)
        await scheduler.run_due()
        await scheduler.planner.settled()
        await scheduler.run_due()

    [(job, _)] = await countries.jobs(new)
    opened = seal_keys.opened(job)
    assert isinstance(opened.config, RoundTripConfig)
    assert (opened.config.send.api, opened.config.receive.api) == ("gmail", "gmail")
    assert opened.config.receive.access_token.reveal() in peer.tokens
    # Gmail's quota units: messages.send's 100 on the sender, the looks' on the probe mailbox.
    assert (job.api_calls, job.api_units) == (None, 1_000)
    assert await reserved(pipe_pool, job.job_id) == [100, 900]
    assert await countries.jobs(old) == []
    async with pipe_pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, error_kind, message FROM check_results"
            " WHERE monitor_public_id = $1 AND country = $2",
            public_id,
            old,
        )
    assert row is not None and (row["status"], row["error_kind"]) == ("missed", "no_agent")
    assert "gmail" in row["message"]


async def test_a_mailbox_check_over_graph_goes_only_where_every_agent_runs_it(
    oauth_api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    settings: ControllerSettings,
    seal_keys: KeyRing,
    scheduler_with: SchedulerWith,
    ca: trustme.CA,
) -> None:
    """An IMAP/POP monitor's `api` graph: only to a country whose every agent has `graph` and
    `api-mailbox`; an agent with `graph` alone (Graph round trips, no mailbox checks) would
    speak IMAP to Graph, so its country's round is `no_agent`."""
    new, old = sorted(countries.take(2))
    await countries.live(new, features=[FEATURE_OAUTH2, FEATURE_GRAPH, FEATURE_API_MAILBOX])
    await countries.live(old, features=[FEATURE_OAUTH2, FEATURE_GRAPH])
    box = SecretBox(settings.secrets.secrets_key or "")
    async with serve_graph(GraphPeer({PROBE}), ca) as peer:
        at = utcnow()
        scheduler = scheduler_with(
            clock=lambda: at,
            tokens=TokenService(
                pipe_pool, box, TokenFetcher(verify=ca_context(ca), allow_private=True), clock=WALL
            ),
        )
        grant = {
            "grant": "client_credentials",
            "tokenUrl": f"{peer.url}/contoso.test/oauth2/v2.0/token",
            "clientId": peer.client_id,
            "clientSecret": peer.client_secret,
        }
        body = {
            "customerId": org.customer_id,
            "name": "Inbox over Graph",
            "hostname": "127.0.0.1",
            "port": peer.port,
            "allowedCheckCountryCodes": [new, old],
            "imapPopConfig": {"api": "graph", "user": PROBE, "oauth2": grant},
        }
        r = await oauth_api.post("/api/imap-pop-monitors", headers=org.auth(), json=body)
        assert r.status_code == 201, r.text
        public_id = r.json()["publicId"]
        await due_now(pipe_pool, org, at)
        await scheduler.run_due()
        await scheduler.planner.settled()
        await scheduler.run_due()

    [(job, _)] = await countries.jobs(new)
    opened = seal_keys.opened(job)
    assert isinstance(opened.config, ImapPopConfig) and opened.config.api == "graph"
    assert opened.config.access_token.reveal() in peer.tokens
    assert peer.client_secret.encode() not in encode(job)
    assert await countries.jobs(old) == []
    async with pipe_pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, error_kind, message FROM check_results"
            " WHERE monitor_public_id = $1 AND country = $2",
            public_id,
            old,
        )
    assert row is not None and (row["status"], row["error_kind"]) == ("missed", "no_agent")
    assert "api-mailbox" in row["message"]


async def test_a_mailbox_check_over_graph_counts_against_the_login_cap(
    oauth_api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    countries: Countries,
    settings: ControllerSettings,
    scheduler_with: SchedulerWith,
    ca: trustme.CA,
) -> None:
    """A mailbox check's Graph calls are bounded as a login is, as a round trip's Graph leg's:
    each country's round is one login to the mailbox's account, so with a cap of 1 the second
    country's round is held `login_capped`, not sent."""
    two = sorted(countries.take(2))
    for cc in two:
        await countries.live(cc, features=[FEATURE_OAUTH2, FEATURE_GRAPH, FEATURE_API_MAILBOX])
    box = SecretBox(settings.secrets.secrets_key or "")
    async with serve_graph(GraphPeer({PROBE}), ca) as peer:
        at = utcnow()
        scheduler = scheduler_with(
            clock=lambda: at,
            login_cap=1,
            tokens=TokenService(
                pipe_pool, box, TokenFetcher(verify=ca_context(ca), allow_private=True), clock=WALL
            ),
        )
        grant = {
            "grant": "client_credentials",
            "tokenUrl": f"{peer.url}/contoso.test/oauth2/v2.0/token",
            "clientId": peer.client_id,
            "clientSecret": peer.client_secret,
        }
        body = {
            "customerId": org.customer_id,
            "name": "Inbox over Graph",
            "hostname": "127.0.0.1",
            "port": peer.port,
            "allowedCheckCountryCodes": two,
            "imapPopConfig": {"api": "graph", "user": PROBE, "oauth2": grant},
        }
        r = await oauth_api.post("/api/imap-pop-monitors", headers=org.auth(), json=body)
        assert r.status_code == 201, r.text
        public_id = r.json()["publicId"]
        await due_now(pipe_pool, org, at)
        await scheduler.run_due()
        await scheduler.planner.settled()
        await scheduler.run_due()
    sent = [cc for cc in two if await countries.jobs(cc)]
    assert len(sent) == 1, sent
    async with pipe_pool.acquire() as conn:
        capped = await conn.fetch(
            "SELECT country FROM check_results"
            " WHERE monitor_public_id = $1 AND error_kind = 'login_capped'",
            public_id,
        )
    assert [c["country"] for c in capped] == [cc for cc in two if cc not in sent]
