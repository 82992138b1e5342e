"""AlertSite's `POST /api/v3/access-tokens` follows the same throttle, password pool and token
store as `POST /api/auth/login`: 429 with Retry-After in AlertSite's error shape, counts shared
with the native login, disabled users refused, tokens revocable."""

import asyncpg
import httpx

from controller.access.credentials import token_digest
from controller.settings import ControllerSettings
from tests.alertsite.helpers import V3, as_error
from tests.api.login_helpers import client_from, new_address, retry_after, serving
from tests.conftest import PASSWORD, Tenant

AUTH_FAILED = "invalid_request - User authentication failed."
WRONG = "not the password"


async def _token(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post(f"{V3}/access-tokens", json={"username": username, "password": password})


async def test_guessing_through_access_tokens_meets_429_in_alertsites_shape(
    settings: ControllerSettings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    async with serving(settings, pool) as url, client_from(url, new_address()) as http:
        answers = [await _token(http, tenant.emails["admin"], WRONG) for _ in range(30)]
    for r in answers[:5]:
        as_error(r, 400, AUTH_FAILED)
    for r in answers[5:]:
        assert "Too many login attempts" in as_error(r, 429)
        retry_after(r)


async def test_failures_count_across_both_login_endpoints(
    settings: ControllerSettings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    email = tenant.emails["member"]
    async with (
        serving(settings, pool, login_account_failures=4) as url,
        client_from(url, new_address()) as http,
    ):
        for _ in range(2):
            r = await http.post("/api/auth/login", json={"email": email, "password": WRONG})
            assert r.status_code == 401
            as_error(await _token(http, email, WRONG), 400, AUTH_FAILED)
        as_error(await _token(http, email, PASSWORD), 429)
        r = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 429


async def test_a_disabled_user_gets_no_access_token_and_their_tokens_stop(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await _token(http, tenant.emails["member"], PASSWORD)
    assert r.status_code == 200, r.text
    alertsite = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await http.get(f"{V3}/monitors", headers=alertsite)).status_code == 200
    me = (await http.get("/api/auth/me", headers=tenant.auth("member"))).json()["publicId"]
    r = await http.patch(f"/api/users/{me}", json={"disabled": True}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    as_error(await http.get(f"{V3}/monitors", headers=alertsite), 401)
    as_error(await _token(http, tenant.emails["member"], PASSWORD), 400, AUTH_FAILED)


async def test_logout_revokes_an_alertsite_token(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    r = await _token(http, tenant.emails["readonly"], PASSWORD)
    token = r.json()["access_token"]
    alertsite = {"Authorization": f"Bearer {token}"}
    assert (await http.post("/api/auth/logout", headers=alertsite)).status_code == 204
    as_error(await http.get(f"{V3}/monitors", headers=alertsite), 401)
    async with pool.acquire() as conn:
        left = await conn.fetchval(
            "SELECT count(*) FROM api_tokens WHERE token_hash = $1", token_digest(token)
        )
    assert left == 0
