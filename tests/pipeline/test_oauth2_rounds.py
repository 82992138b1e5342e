"""OAuth2 rounds, scheduler to server: the real scheduler asks the token service (a loopback
HTTPS token endpoint issuing tokens Dovecot accepts), publishes the job on NATS sealed to its
country with only the access token in it, the agent's prober opens it and logs in to Dovecot's
OAuth2 passdb; a country whose agent is older than OAuth2 gets no job; a revoked grant is a
round recorded `oauth2_token` with one notice to the owners, never a check of the server."""

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import trustme

from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from controller.oauth2.fetcher import TokenFetcher
from controller.oauth2.tokens import TokenService
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.clock import WALL
from shared.messages import FEATURE_OAUTH2, ImapPopConfig, encode
from shared.timefmt import utcnow
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.token_endpoint import TokenEndpoint, ca_context, serve
from testkit.sealing import KeyRing
from testkit.serving import http_client, serve_app
from tests.conftest import Tenant
from tests.oauth2.conftest import ca, imap_pop, ssl_contexts  # noqa: F401  # fixtures
from tests.pipeline.conftest import Countries, SchedulerWith, WiredPipeline

USER = "alice@example.com"
CLIENT, SECRET = "mailprobe-app", "round-secret-4711"


@pytest.fixture
async def oauth_api(
    settings: ControllerSettings, pipe_pool: asyncpg.Pool, pipeline: WiredPipeline
) -> AsyncIterator[httpx.AsyncClient]:
    allowing = settings.replace(oauth2_token_hosts="127.0.0.1")
    async with (
        serve_app(create_app(allowing, pipe_pool, pipeline)) as url,
        http_client(base_url=url, timeout=10) as client,
    ):
        yield client


async def _monitor(
    api: httpx.AsyncClient, org: Tenant, port: int, countries: list[str], grant: dict[str, Any]
) -> dict[str, Any]:
    r = await api.post(
        "/api/imap-pop-monitors",
        headers=org.auth(),
        json={
            "customerId": org.customer_id,
            "name": "OAuth2 mailbox",
            "hostname": "127.0.0.1",
            "port": port,
            "allowedCheckCountryCodes": countries,
            "imapPopConfig": {
                "protocol": "imap",
                "tls": True,
                "tlsOptions": {"servername": "localhost"},
                "user": USER,
                "oauth2": grant,
            },
        },
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_round_fetches_a_token_and_logs_in_only_where_agents_can(
    oauth_api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    settings: ControllerSettings,
    seal_keys: KeyRing,
    scheduler_with: SchedulerWith,
    imap_pop: Dovecot,  # noqa: F811
    ca: trustme.CA,  # noqa: F811
    ssl_contexts: SslContexts,  # noqa: F811
) -> None:
    new, old = sorted(countries.take(2))
    await countries.live(new, features=[FEATURE_OAUTH2])
    await countries.live(old)  # an agent older than OAuth2 logins
    box = SecretBox(settings.secrets.secrets_key or "")
    endpoint = TokenEndpoint(imap_pop.issuer, USER, clients={CLIENT: SECRET})
    async with serve(endpoint, ca) as served:
        at = utcnow()  # the scheduler's now, frozen: the round sent is the one due
        scheduler = scheduler_with(
            clock=lambda: at,
            tokens=TokenService(
                pipe_pool, box, TokenFetcher(verify=ca_context(ca), allow_private=True), clock=WALL
            ),
        )
        grant = {
            "grant": "client_credentials",
            "tokenUrl": served.url,
            "clientId": CLIENT,
            "scopes": ["mail"],
            "clientSecret": SECRET,
        }
        good = await _monitor(oauth_api, org, imap_pop.ports["imaps"], [new, old], grant)
        revoked = await _monitor(
            oauth_api,
            org,
            imap_pop.ports["imaps"],
            [new],
            {**grant, "grant": "refresh_token", "refreshToken": "revoked"},
        )
        async with pipe_pool.acquire() as conn:
            await conn.execute(
                "UPDATE monitors SET next_due_at = $1 WHERE organization_id = $2",
                at,
                org.org_id,
            )
        await scheduler.run_due()  # the tokens are fetched in the background, then claimed
        await scheduler.planner.settled()
        await scheduler.run_due()
        assert len(endpoint.calls) == 2  # one token each; the revoked grant refused

    jobs = [job for job, _ in await countries.jobs(new)]
    assert [j.monitor_id for j in jobs] == [good["publicId"]]
    assert SECRET.encode() not in encode(jobs[0])
    opened = seal_keys.opened(jobs[0])
    assert isinstance(opened.config, ImapPopConfig)
    assert opened.config.mechanism == "XOAUTH2" and not opened.config.password
    result = await run_check(opened, f"{new}-a1", True, ssl_contexts, clock=WALL)
    assert result.status == "up", result.message
    assert await countries.jobs(old) == []
    async with pipe_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT monitor_public_id::text AS m, country, status, error_kind, message"
            " FROM check_results WHERE monitor_public_id = ANY($1::uuid[])",
            [good["publicId"], revoked["publicId"]],
        )
        notes = await conn.fetchval(
            "SELECT count(*) FROM notification_outbox o JOIN monitors m ON m.id = o.monitor_id"
            " WHERE m.public_id = $1 AND o.kind = 'oauth2_token'",
            revoked["publicId"],
        )
    seen = {(r["m"], r["country"]): (r["status"], r["error_kind"], r["message"]) for r in rows}
    status, kind, message = seen[(good["publicId"], old)]
    assert (status, kind) == ("missed", "no_agent") and "OAuth2" in message
    status, kind, message = seen[(revoked["publicId"], new)]
    assert (status, kind) == ("missed", "oauth2_token") and "invalid_grant" in message
    assert notes == 1
