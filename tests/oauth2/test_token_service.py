"""The controller's OAuth2 logins: the API's `oauth2` object on a login (secrets write-only,
sealed, bound like passwords, custom endpoints only on allowed hosts), the token service
against a loopback HTTPS token endpoint (each grant, caching across replicas, refresh-token
rotation stored back, refusals as `oauth2_token` with one notice to the owners, an endpoint
down, a wrong scope, private addresses refused, the hourly budget), the scheduler's planner
putting only the access token into the sealed job, and a round's job logging in to Dovecot."""

import argparse
import asyncio
import base64
import gc
import json
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import pytest
import structlog
import trustme
from joserfc.jwk import RSAKey

from agent.probers.run import run_check
from agent.probers.tls import SslContexts
from controller.ascode import device_cli
from controller.ascode.api_url import Target
from controller.jobs.rules import JobIds
from controller.monitors import store as monitors
from controller.monitors.store import WatchedMonitor
from controller.oauth2.fetcher import TokenFetcher
from controller.oauth2.tokens import TokenFailure, TokenService
from controller.scheduling.plan import RoundPlanner
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.clock import WALL, ManualClock
from shared.messages import ImapPopConfig, encode
from shared.secret import SECRET_MASK, Secret
from shared.timefmt import utcnow
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.issuer import SCOPE, TokenIssuer
from testkit.oauth2.token_endpoint import TokenEndpoint, ca_context, serve
from testkit.sealing import KeyRing
from testkit.serving import http_client, serve_app
from tests.agent.helpers import until
from tests.conftest import Tenant, make_tenant

USER = "alice@example.com"
CLIENT, CLIENT_SECRET = "mailprobe-app", "cs-" + uuid.uuid4().hex
SERVICE_ACCOUNT = "probe@project.iam.gserviceaccount.com"
CC = "DE"


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer(Path(tempfile.mkdtemp()))


@pytest.fixture(scope="module")
def service_key() -> RSAKey:
    return RSAKey.generate_key(2048)


@pytest.fixture
async def endpoint(
    issuer: TokenIssuer, ca: trustme.CA, service_key: RSAKey
) -> AsyncIterator[TokenEndpoint]:
    made = TokenEndpoint(issuer, USER, clients={CLIENT: CLIENT_SECRET})
    made.service_accounts[SERVICE_ACCOUNT] = RSAKey.import_key(service_key.as_pem(private=False))
    async with serve(made, ca) as served:
        yield served


@pytest.fixture(scope="module")
async def api(settings: ControllerSettings, pool: asyncpg.Pool) -> AsyncIterator[str]:
    """The API of a controller that allows token endpoints on 127.0.0.1."""
    allowing = settings.replace(oauth2_token_hosts="127.0.0.1")
    async with serve_app(create_app(allowing, pool)) as url:
        yield url


@pytest.fixture
async def client(api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=api, timeout=10) as c:
        yield c


@pytest.fixture
def box(settings: ControllerSettings) -> SecretBox:
    return SecretBox(settings.secrets.secrets_key or "")


def fetcher(ca: trustme.CA, *, allow_private: bool = True) -> TokenFetcher:
    return TokenFetcher(verify=ca_context(ca), allow_private=allow_private, timeout_s=5)


def grant_of(endpoint: TokenEndpoint, kind: str, **more: Any) -> dict[str, Any]:
    grant: dict[str, Any] = {
        "mechanism": "XOAUTH2",
        "grant": kind,
        "provider": "custom",
        "tokenUrl": endpoint.url,
        "clientId": SERVICE_ACCOUNT if kind == "jwt_bearer" else CLIENT,
        "scopes": [SCOPE],
    }
    return {**grant, **more}


async def create_imap(
    http: httpx.AsyncClient, tenant: Tenant, oauth2: dict[str, Any], *, port: int = 993
) -> httpx.Response:
    body = {
        "customerId": tenant.customer_id,
        "name": f"m365 {uuid.uuid4().hex[:6]}",
        "hostname": "127.0.0.1",
        "port": port,
        "imapPopConfig": {
            "protocol": "imap",
            "user": USER,
            "tls": True,
            "tlsOptions": {"servername": "localhost"},
            "oauth2": oauth2,
        },
    }
    return await http.post("/api/imap-pop-monitors", json=body, headers=tenant.auth())


async def watched(pool: asyncpg.Pool, monitor_id: int) -> WatchedMonitor:
    async with pool.acquire() as conn:
        found = await monitors.watched(conn, monitor_id)
    assert found is not None
    return found


def claims(token: Secret) -> dict[str, Any]:
    payload = token.reveal().split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def later() -> Any:
    return utcnow() + timedelta(minutes=5)


async def test_an_oauth2_login_is_taken_stored_sealed_and_never_shown(
    client: httpx.AsyncClient,
    endpoint: TokenEndpoint,
    tenant: Tenant,
    pool: asyncpg.Pool,
    box: SecretBox,
) -> None:
    r = await create_imap(
        client, tenant, grant_of(endpoint, "client_credentials", clientSecret=CLIENT_SECRET)
    )
    assert r.status_code == 201, r.text
    assert CLIENT_SECRET not in r.text
    shown = r.json()["imapPopConfig"]["oauth2"]
    assert shown["clientSecret"] == SECRET_MASK
    assert shown["tokenUrl"] == endpoint.url and shown["clientId"] == CLIENT
    got = await client.get(f"/api/imap-pop-monitors/{r.json()['publicId']}", headers=tenant.auth())
    assert got.status_code == 200 and CLIENT_SECRET not in got.text
    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT config FROM monitors WHERE id = $1", r.json()["id"])
    sealed = (
        json.loads(stored)["oauth2"]["clientSecret"]
        if isinstance(stored, str)
        else stored["oauth2"]["clientSecret"]
    )
    assert sealed.startswith("enc:v1:") and box.open(sealed) == CLIENT_SECRET
    # Another organization sees nothing of it, and cannot change it.
    other = await make_tenant(pool)
    public_id = r.json()["publicId"]
    assert (
        await client.get(f"/api/imap-pop-monitors/{public_id}", headers=other.auth())
    ).status_code == 404
    patch = {
        "imapPopConfig": {
            "user": USER,
            "oauth2": grant_of(endpoint, "client_credentials", clientSecret=SECRET_MASK),
        }
    }
    assert (
        await client.patch(f"/api/imap-pop-monitors/{public_id}", json=patch, headers=other.auth())
    ).status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tokenUrl": "https://login.example.net/token"}, "tokenUrl"),  # not an allowed host
        ({"tokenUrl": "http://127.0.0.1/token"}, "tokenUrl"),  # not https
        ({"clientSecret": None}, "clientSecret"),  # the grant's secret is required
        ({"provider": "microsoft", "tokenUrl": None}, "tenant"),
        ({"provider": "google", "tokenUrl": None}, "grant"),  # google has no client credentials
        ({"mechanism": "PLAIN"}, "mechanism"),
        ({"scopes": ["bad scope"]}, "scopes"),
        ({"grant": "jwt_bearer", "privateKey": "not a key"}, "privateKey"),
    ],
)
async def test_a_bad_grant_is_a_400_naming_its_field(
    client: httpx.AsyncClient,
    endpoint: TokenEndpoint,
    tenant: Tenant,
    change: dict[str, Any],
    field: str,
) -> None:
    grant = grant_of(endpoint, "client_credentials", clientSecret=CLIENT_SECRET)
    grant.update(change)
    r = await create_imap(client, tenant, {k: v for k, v in grant.items() if v is not None})
    assert r.status_code == 400, r.text
    assert r.json()["fields"] == [f"imapPopConfig.oauth2.{field}"]
    assert CLIENT_SECRET not in r.text


async def test_a_custom_endpoint_is_refused_where_the_operator_allows_none(
    http: httpx.AsyncClient, endpoint: TokenEndpoint, tenant: Tenant
) -> None:
    r = await create_imap(
        http, tenant, grant_of(endpoint, "client_credentials", clientSecret=CLIENT_SECRET)
    )
    assert r.status_code == 400
    assert r.json()["fields"] == ["imapPopConfig.oauth2.tokenUrl"]
    assert "OAUTH2_TOKEN_HOSTS" in r.json()["message"]


async def test_a_kept_grant_secret_is_bound_to_its_endpoint_client_and_mailbox(
    client: httpx.AsyncClient, endpoint: TokenEndpoint, tenant: Tenant
) -> None:
    r = await create_imap(
        client, tenant, grant_of(endpoint, "client_credentials", clientSecret=CLIENT_SECRET)
    )
    url = f"/api/imap-pop-monitors/{r.json()['publicId']}"
    config = {
        "protocol": "imap",
        "user": USER,
        "tls": True,
        "tlsOptions": {"servername": "localhost"},
    }
    kept = grant_of(endpoint, "client_credentials", clientSecret=SECRET_MASK)
    for changed in ({"clientId": "other-app"}, {"scopes": ["mail", "other"]}):
        patch = {"imapPopConfig": {**config, "oauth2": {**kept, **changed}}}
        refused = await client.patch(url, json=patch, headers=tenant.auth())
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == "secret_required"
        assert refused.json()["fields"] == ["imapPopConfig.oauth2.clientSecret"]
    moved = await client.patch(
        url,
        json={"hostname": "mail.example.net", "imapPopConfig": {**config, "oauth2": kept}},
        headers=tenant.auth(),
    )
    assert moved.status_code == 400 and moved.json()["code"] == "secret_required"
    resent = {**kept, "clientId": "other-app", "clientSecret": "new-" + CLIENT_SECRET}
    ok = await client.patch(
        url, json={"imapPopConfig": {**config, "oauth2": resent}}, headers=tenant.auth()
    )
    assert ok.status_code == 200, ok.text
    same = await client.patch(
        url,
        json={"imapPopConfig": {**config, "oauth2": {**kept, "clientId": "other-app"}}},
        headers=tenant.auth(),
    )
    assert same.status_code == 200, same.text


@pytest.mark.parametrize("kind", ["client_credentials", "refresh_token", "jwt_bearer"])
async def test_each_grant_gets_a_token_cached_for_every_replica(
    client: httpx.AsyncClient,
    endpoint: TokenEndpoint,
    tenant: Tenant,
    pool: asyncpg.Pool,
    box: SecretBox,
    ca: trustme.CA,
    service_key: RSAKey,
    kind: str,
) -> None:
    secret = {
        "client_credentials": {"clientSecret": CLIENT_SECRET},
        "refresh_token": {
            "clientSecret": CLIENT_SECRET,
            "refreshToken": endpoint.refresh_token_for(USER),
        },
        "jwt_bearer": {"privateKey": service_key.as_pem(private=True).decode()},
    }[kind]
    r = await create_imap(client, tenant, grant_of(endpoint, kind, **secret))
    assert r.status_code == 201, r.text
    monitor = (await watched(pool, r.json()["id"])).monitor
    service = TokenService(pool, box, fetcher(ca), clock=WALL)
    with structlog.testing.capture_logs() as logs:
        token = await service.tokens(monitor, later())
    assert isinstance(token, dict), token
    access = token["oauth2"]
    assert claims(access)["email"] == USER and claims(access)["aud"] == SCOPE
    assert len(endpoint.calls) == 1
    form = endpoint.calls[0]
    assert form["grant_type"] == (
        "urn:ietf:params:oauth:grant-type:jwt-bearer" if kind == "jwt_bearer" else kind
    )
    assert form["scope"] == SCOPE
    # Cached: in memory, and in PostgreSQL for another replica.
    assert (await service.tokens(monitor, later())) == token
    replica = TokenService(pool, box, fetcher(ca), clock=WALL)
    assert (await replica.tokens(monitor, later())) == token
    assert len(endpoint.calls) == 1
    async with pool.acquire() as conn:
        row = cast(
            asyncpg.Record,
            await conn.fetchrow(
                "SELECT access_token FROM oauth2_tokens WHERE monitor_id = $1", monitor.id
            ),
        )
    assert row["access_token"].startswith("enc:v1:")
    said = repr(logs)
    for text in (access.reveal(), CLIENT_SECRET, *map(str, secret.values())):
        assert text not in said


async def test_a_rotated_refresh_token_is_stored_back(
    client: httpx.AsyncClient,
    endpoint: TokenEndpoint,
    tenant: Tenant,
    pool: asyncpg.Pool,
    box: SecretBox,
    ca: trustme.CA,
) -> None:
    first = endpoint.refresh_token_for(USER)
    r = await create_imap(
        client,
        tenant,
        grant_of(endpoint, "refresh_token", clientSecret=CLIENT_SECRET, refreshToken=first),
    )
    monitor = (await watched(pool, r.json()["id"])).monitor
    assert isinstance(
        await TokenService(pool, box, fetcher(ca), clock=WALL).tokens(monitor, later()), dict
    )
    assert first not in endpoint.refresh_tokens  # rotated: the first one is revoked
    async with pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT refresh_token FROM oauth2_tokens WHERE monitor_id = $1", monitor.id
        )
        await conn.execute(
            "UPDATE oauth2_tokens SET expires_at = now() WHERE monitor_id = $1", monitor.id
        )
    assert stored.startswith("enc:v1:") and box.open(stored) in endpoint.refresh_tokens
    # The next token comes with the rotated refresh token (the first would be invalid_grant).
    again = await TokenService(pool, box, fetcher(ca), clock=WALL).tokens(monitor, later())
    assert isinstance(again, dict), again
    assert endpoint.calls[-1]["refresh_token"] == box.open(stored)


async def test_a_revoked_grant_is_oauth2_token_with_one_notice_to_the_owners(
    client: httpx.AsyncClient,
    endpoint: TokenEndpoint,
    tenant: Tenant,
    pool: asyncpg.Pool,
    box: SecretBox,
    ca: trustme.CA,
) -> None:
    r = await create_imap(
        client,
        tenant,
        grant_of(endpoint, "refresh_token", clientSecret=CLIENT_SECRET, refreshToken="revoked-one"),
    )
    monitor = (await watched(pool, r.json()["id"])).monitor
    service = TokenService(pool, box, fetcher(ca), clock=WALL)
    failure = await service.tokens(monitor, later())
    assert isinstance(failure, TokenFailure)
    assert failure.error == "invalid_grant" and "AADSTS70008" in failure.message
    # Asked again only after a wait: no second call, no second notice.
    assert await service.tokens(monitor, later()) == failure
    assert len(endpoint.calls) == 1
    async with pool.acquire() as conn:
        notes = await conn.fetch(
            "SELECT target, subject, body_text FROM notification_outbox"
            " WHERE monitor_id = $1 AND kind = 'oauth2_token'",
            monitor.id,
        )
    assert [n["target"] for n in notes] == [tenant.emails["owner"]]
    assert "invalid_grant" in notes[0]["body_text"] and "revoked-one" not in notes[0]["body_text"]


@pytest.mark.parametrize("broken", ["down", "scope", "private"])
async def test_an_endpoint_that_gives_no_token_is_a_failure_never_a_crash(
    client: httpx.AsyncClient,
    endpoint: TokenEndpoint,
    tenant: Tenant,
    pool: asyncpg.Pool,
    box: SecretBox,
    ca: trustme.CA,
    broken: str,
) -> None:
    scopes = ["other.scope"] if broken == "scope" else [SCOPE]
    r = await create_imap(
        client,
        tenant,
        grant_of(endpoint, "client_credentials", clientSecret=CLIENT_SECRET, scopes=scopes),
    )
    monitor = (await watched(pool, r.json()["id"])).monitor
    endpoint.down = broken == "down"
    service = TokenService(pool, box, fetcher(ca, allow_private=broken != "private"), clock=WALL)
    failure = await service.tokens(monitor, later())
    assert isinstance(failure, TokenFailure)
    expected = {"down": "unreachable", "scope": "invalid_scope", "private": "blocked_endpoint"}
    assert failure.error == expected[broken], failure
    assert len(endpoint.calls) == (0 if broken == "private" else 1)


async def test_token_endpoint_calls_are_bounded_per_organization(
    client: httpx.AsyncClient,
    endpoint: TokenEndpoint,
    tenant: Tenant,
    pool: asyncpg.Pool,
    box: SecretBox,
    ca: trustme.CA,
) -> None:
    grant = grant_of(endpoint, "client_credentials", clientSecret=CLIENT_SECRET)
    first = (await watched(pool, (await create_imap(client, tenant, grant)).json()["id"])).monitor
    second = (await watched(pool, (await create_imap(client, tenant, grant)).json()["id"])).monitor
    service = TokenService(pool, box, fetcher(ca), calls_per_hour=1, clock=WALL)
    assert isinstance(await service.tokens(first, later()), dict)
    failure = await service.tokens(second, later())
    assert isinstance(failure, TokenFailure) and failure.error == "budget"
    assert len(endpoint.calls) == 1


@asynccontextmanager
async def silent_listener() -> AsyncIterator[str]:
    """A loopback TCP server that takes connections and never says a word (no TLS handshake)."""
    held: list[asyncio.StreamWriter] = []

    async def take(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(take, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}/token"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("hang", ["no_answer", "no_handshake"])
async def test_a_hanging_endpoint_gives_its_slot_back_at_the_fetch_timeout(
    client: httpx.AsyncClient,
    endpoint: TokenEndpoint,
    issuer: TokenIssuer,
    tenant: Tenant,
    pool: asyncpg.Pool,
    box: SecretBox,
    ca: trustme.CA,
    hang: str,
) -> None:
    """One slot: an endpoint that accepts and never answers (over HTTP, or not even TLS) holds it
    only until the fetch's timeout, then the next organization's fetch takes it."""
    held = asyncio.Event()
    hanging = TokenEndpoint(issuer, USER, clients={CLIENT: CLIENT_SECRET}, held=held)
    other = await make_tenant(pool)
    timeout_s = 1.0
    async with serve(hanging, ca), silent_listener() as silent:
        try:
            url = hanging.url if hang == "no_answer" else silent
            grant = grant_of(endpoint, "client_credentials", clientSecret=CLIENT_SECRET)
            r = await create_imap(client, tenant, {**grant, "tokenUrl": url})
            stuck = (await watched(pool, r.json()["id"])).monitor
            r = await create_imap(client, other, grant)
            waiting = (await watched(pool, r.json()["id"])).monitor
            service = TokenService(
                pool,
                box,
                TokenFetcher(verify=ca_context(ca), allow_private=True, timeout_s=timeout_s),
                fetches=1,
                clock=WALL,
            )
            hung = asyncio.create_task(service.tokens(stuck, later()))
            await until(
                lambda: (
                    service.slots.holding() == {stuck.organization_id: 1}
                    and (hang == "no_handshake" or hanging.waiting == 1)
                )
            )
            fetched = asyncio.create_task(service.tokens(waiting, later()))
            ended: list[str] = []
            hung.add_done_callback(lambda _: ended.append("hanging"))
            fetched.add_done_callback(lambda _: ended.append("next"))
            await until(lambda: service.slots.waiting().get(waiting.organization_id) == 1)
            # The hanging fetch ends at its own timeout, and only then does the next one run.
            failure = await hung
            assert isinstance(failure, TokenFailure) and failure.error == "unreachable", failure
            assert failure.message == f"no answer within {timeout_s:g} s"
            got = await fetched
            assert isinstance(got, dict) and claims(got["oauth2"])["email"] == USER
            assert ended == ["hanging", "next"]
            assert service.slots.holding() == {} and service.slots.waiting() == {}
            # Nor does the fetch leave its connection open behind it.
            await until(lambda: hanging.waiting == 0)  # the endpoint saw the connection close
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always", ResourceWarning)
                gc.collect()
            port = str(httpx.URL(url).port)
            assert not [w for w in seen if port in str(w.message)], seen
        finally:
            held.set()


async def test_the_job_carries_only_the_access_token_sealed(
    client: httpx.AsyncClient,
    endpoint: TokenEndpoint,
    tenant: Tenant,
    pool: asyncpg.Pool,
    box: SecretBox,
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    r = await create_imap(
        client, tenant, grant_of(endpoint, "client_credentials", clientSecret=CLIENT_SECRET)
    )
    target = await watched(pool, r.json()["id"])
    tokens = await TokenService(pool, box, fetcher(ca), clock=WALL).tokens(target.monitor, later())
    assert isinstance(tokens, dict)
    ring = KeyRing(tmp_path, [CC])
    keys = CountryKeys(str(tmp_path), reload_every_s=0)
    await keys.refresh()
    planner = RoundPlanner(JobIds.from_box(box), box, keys)
    live = frozenset({CC})
    plan = planner.round(target, utcnow(), live, trigger=True, tokens=tokens, oauth2_live=live)
    assert [j.country for j in plan.jobs] == [CC] and not plan.missed
    job = ring.opened(plan.jobs[0])
    config = job.config
    assert isinstance(config, ImapPopConfig)
    assert config.mechanism == "XOAUTH2" and config.access_token == tokens["oauth2"]
    assert not config.password
    assert CLIENT_SECRET.encode() not in encode(plan.jobs[0])  # only the sealed token travels
    # No token: the round is `oauth2_token` there; an agent too old: not sent there.
    failed = planner.round(
        target,
        utcnow(),
        live,
        trigger=True,
        tokens=TokenFailure("oauth2", "invalid_grant", "revoked"),
        oauth2_live=live,
    )
    assert [(m.error_kind, m.status) for m in failed.missed] == [("oauth2_token", "missed")]
    assert "invalid_grant" in (failed.missed[0].message or "") and not failed.jobs
    old = planner.round(
        target, utcnow(), live, trigger=True, tokens=tokens, oauth2_live=frozenset()
    )
    assert not old.jobs and [m.error_kind for m in old.missed] == ["no_agent"]


async def test_a_round_logs_in_to_dovecot_with_a_fetched_token(
    client: httpx.AsyncClient,
    imap_pop: Dovecot,
    ca: trustme.CA,
    tenant: Tenant,
    pool: asyncpg.Pool,
    box: SecretBox,
    ssl_contexts: SslContexts,
    tmp_path: Path,
) -> None:
    """Grant → token endpoint → token service → planner → sealed job → agent → Dovecot."""
    made = TokenEndpoint(imap_pop.issuer, USER, clients={CLIENT: CLIENT_SECRET})
    async with serve(made, ca) as served:
        r = await create_imap(
            client,
            tenant,
            grant_of(served, "client_credentials", clientSecret=CLIENT_SECRET),
            port=imap_pop.ports["imaps"],
        )
        assert r.status_code == 201, r.text
        target = await watched(pool, r.json()["id"])
        tokens = await TokenService(pool, box, fetcher(ca), clock=WALL).tokens(
            target.monitor, later()
        )
    assert isinstance(tokens, dict), tokens
    ring = KeyRing(tmp_path, [CC])
    keys = CountryKeys(str(tmp_path), reload_every_s=0)
    await keys.refresh()
    live = frozenset({CC})
    plan = RoundPlanner(JobIds.from_box(box), box, keys).round(
        target, utcnow(), live, trigger=True, tokens=tokens, oauth2_live=live
    )
    result = await run_check(
        ring.opened(plan.jobs[0]), "agent-oauth2", True, ssl_contexts, clock=WALL
    )
    assert result.status == "up", result.message
    assert result.logins == 1


async def test_smtp_and_both_round_trip_legs_take_an_oauth2_login(
    client: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, box: SecretBox
) -> None:
    send_secret, receive_token = "send-" + uuid.uuid4().hex, "rt-" + uuid.uuid4().hex
    google = {
        "grant": "refresh_token",
        "provider": "google",
        "clientId": "c.apps",
        "clientSecret": send_secret,
        "refreshToken": receive_token,
    }
    microsoft = {
        "grant": "client_credentials",
        "provider": "microsoft",
        "mechanism": "OAUTHBEARER",
        "tenant": "contoso.onmicrosoft.com",
        "clientId": "app",
        "clientSecret": send_secret,
    }
    smtp = await client.post(
        "/api/smtp-monitors",
        headers=tenant.auth(),
        json={
            "customerId": tenant.customer_id,
            "name": "gmail smtp",
            "hostname": "smtp.gmail.com",
            "port": 465,
            "smtpConfig": {"secure": True, "auth": {"user": USER, "oauth2": google}},
        },
    )
    assert smtp.status_code == 201, smtp.text
    assert smtp.json()["smtpConfig"]["auth"]["oauth2"]["refreshToken"] == SECRET_MASK
    rt = await client.post(
        "/api/roundtrip-monitors",
        headers=tenant.auth(),
        json={
            "customerId": tenant.customer_id,
            "name": "m365 round trip",
            "checkInterval": 300,
            "timeoutSeconds": 120,
            "roundtripConfig": {
                "send": {
                    "hostname": "smtp.office365.com",
                    "port": 587,
                    "requireTls": True,
                    "auth": {"user": USER, "oauth2": microsoft},
                },
                "to": USER,
                "receive": {
                    "protocol": "imap",
                    "hostname": "outlook.office365.com",
                    "port": 993,
                    "tls": True,
                    "user": USER,
                    "oauth2": microsoft,
                },
            },
        },
    )
    assert rt.status_code == 201, rt.text
    for response in (smtp, rt):
        assert send_secret not in response.text and receive_token not in response.text
    shown = rt.json()["roundtripConfig"]
    assert shown["send"]["auth"]["oauth2"]["clientSecret"] == SECRET_MASK
    assert shown["receive"]["oauth2"]["tenant"] == "contoso.onmicrosoft.com"
    assert "accessToken" not in shown["receive"] and "mechanism" not in shown["receive"]
    monitor = (await watched(pool, rt.json()["id"])).monitor
    assert set(monitor.grants) == {"send.auth.oauth2", "receive.oauth2"}
    assert box.open(monitor.grants["receive.oauth2"].client_secret.reveal()) == send_secret


async def test_the_device_code_flow_stores_a_refresh_token_on_the_monitor(
    client: httpx.AsyncClient,
    api: str,
    endpoint: TokenEndpoint,
    tenant: Tenant,
    pool: asyncpg.Pool,
    box: SecretBox,
    ca: trustme.CA,
) -> None:
    """`python -m controller oauth2-device`: code shown, sign-in awaited, the refresh token
    stored (sealed) through the API on a monitor that had a password, never printed."""
    r = await client.post(
        "/api/imap-pop-monitors",
        headers=tenant.auth(),
        json={
            "customerId": tenant.customer_id,
            "name": "was a password",
            "hostname": "127.0.0.1",
            "port": 993,
            "imapPopConfig": {"protocol": "imap", "user": USER, "password": "old-pw", "tls": True},
        },
    )
    assert r.status_code == 201, r.text
    public_id = r.json()["publicId"]
    args = argparse.Namespace(
        monitor=public_id,
        login="",
        provider="custom",
        tenant="",
        client_id=CLIENT,
        client_secret_env="MAILPROBE_SECRET_CLIENT",
        scope=[SCOPE],
        mechanism="OAUTHBEARER",
        token_url=endpoint.url,
        device_url=endpoint.url.replace("/token", "/device"),
        api=None,
        insecure_http=False,
    )
    said: list[str] = []

    async def sign_in(_: float) -> None:
        for code in endpoint.devices:
            endpoint.devices[code] = True

    env = {"MAILPROBE_TOKEN": tenant.tokens["admin"], "MAILPROBE_SECRET_CLIENT": CLIENT_SECRET}
    code = await device_cli.run(
        Target(api, None), args, env, say=said.append, verify=ca_context(ca), sleep=sign_in
    )
    assert code == 0, said
    assert "ABCD-EFGH" in said[0]
    issued = next(iter(endpoint.refresh_tokens))
    assert all(issued not in line and CLIENT_SECRET not in line for line in said)
    monitor = (await watched(pool, r.json()["id"])).monitor
    grant = monitor.grants["oauth2"]
    assert grant.grant == "refresh_token" and grant.mechanism == "OAUTHBEARER"
    assert box.open(grant.refresh_token.reveal()) == issued
    assert not monitor.config_as_sent.get("password")
    tokens = await TokenService(pool, box, fetcher(ca), clock=WALL).tokens(monitor, later())
    assert isinstance(tokens, dict), tokens


@pytest.mark.parametrize(
    "start",
    [
        datetime(2026, 12, 31, 23, 30, tzinfo=UTC),  # the token outlives the year
        datetime(2027, 2, 28, 23, 30, tzinfo=UTC),  # and the month
        datetime(2028, 2, 28, 23, 30, tzinfo=UTC),  # a leap February
    ],
    ids=["year-end", "february-end", "leap-february"],
)
async def test_a_token_is_kept_until_its_expiry_by_the_clock_given(
    client: httpx.AsyncClient,
    endpoint: TokenEndpoint,
    tenant: Tenant,
    pool: asyncpg.Pool,
    box: SecretBox,
    ca: trustme.CA,
    start: datetime,
) -> None:
    """The service judges a token's expiry by the clock it is given, across midnight and a
    month's end, without sleeping: a token lives `expires_in` (3600 s) from its fetch, is
    served while it outlives a job's end by a minute (rules.MARGIN), and is fetched anew one
    second past that; its row stores the instants the clock gave."""
    r = await create_imap(
        client, tenant, grant_of(endpoint, "client_credentials", clientSecret=CLIENT_SECRET)
    )
    assert r.status_code == 201, r.text
    monitor = (await watched(pool, r.json()["id"])).monitor
    clock = ManualClock(start)
    service = TokenService(pool, box, fetcher(ca), clock=clock)
    job = timedelta(minutes=5)  # how long after "now" the job may run
    first = await service.tokens(monitor, clock.now() + job)
    assert isinstance(first, dict) and len(endpoint.calls) == 1
    async with pool.acquire() as conn:
        row = cast(
            asyncpg.Record,
            await conn.fetchrow(
                "SELECT expires_at, updated_at FROM oauth2_tokens WHERE monitor_id = $1", monitor.id
            ),
        )
    assert (row["expires_at"], row["updated_at"]) == (start + timedelta(hours=1), start)
    clock.advance(3600 - 300 - 60 - 1)  # the token outlives the job by a minute and a second
    assert await service.tokens(monitor, clock.now() + job) == first
    assert (
        await TokenService(pool, box, fetcher(ca), clock=clock).tokens(monitor, clock.now() + job)
        == first
    )  # another replica, from the stored row
    assert len(endpoint.calls) == 1
    clock.advance(2)  # past the margin, on the other side of midnight
    assert clock.now().date() > start.date()
    again = await service.tokens(monitor, clock.now() + job)
    assert isinstance(again, dict) and again != first and len(endpoint.calls) == 2


async def test_a_jwt_assertion_is_issued_at_the_clock_given(
    client: httpx.AsyncClient,
    endpoint: TokenEndpoint,
    tenant: Tenant,
    pool: asyncpg.Pool,
    box: SecretBox,
    ca: trustme.CA,
    service_key: RSAKey,
) -> None:
    """A JWT bearer grant's assertion (RFC 7523) is issued (`iat`) at the service's clock and
    expires LIFETIME_S after it. The endpoint judges it by its own clock (here the wall): one
    issued a minute ago is taken, one issued at next year's end (its token from the first
    expired by then) is refused as issued in the future."""
    key = {"privateKey": service_key.as_pem(private=True).decode()}
    r = await create_imap(client, tenant, grant_of(endpoint, "jwt_bearer", **key))
    assert r.status_code == 201, r.text
    monitor = (await watched(pool, r.json()["id"])).monitor
    behind = utcnow().replace(microsecond=0) - timedelta(minutes=1)
    ahead = datetime(behind.year + 1, 12, 31, 23, 59, 59, tzinfo=UTC)
    for start, taken in [(behind, True), (ahead, False)]:
        clock = ManualClock(start)
        service = TokenService(pool, box, fetcher(ca), clock=clock)
        token = await service.tokens(monitor, clock.now() + timedelta(minutes=5))
        assert isinstance(token, dict) is taken, token
        said = claims(Secret(endpoint.calls[-1]["assertion"]))
        assert (said["iat"], said["exp"]) == (start.timestamp(), start.timestamp() + 300)
