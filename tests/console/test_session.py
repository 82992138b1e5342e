"""Console sessions over real HTTP: login sets a Secure/HttpOnly/SameSite cookie scoped to the
console, every POST needs the CSRF token, logout revokes the session, no session → login."""

import asyncpg

from controller.settings import ControllerSettings
from tests.api.helpers import create
from tests.api.login_helpers import client_from, new_address, retry_after, serving
from tests.conftest import PASSWORD, Tenant
from tests.console.helpers import Browserish


async def test_console_without_a_session_redirects_to_the_login_form(client: Browserish) -> None:
    r = await client.get("/")
    assert (r.status_code, r.headers["location"]) == (302, "/console/")
    r = await client.get("/console/")
    assert (r.status_code, r.headers["location"]) == (303, "/console/login")
    r = await client.get("/console/monitors.part")
    assert r.status_code == 401  # the live update never follows a redirect into the login page
    client.session = "mp_not-a-token"
    r = await client.get("/console/agents")
    assert r.status_code == 303
    assert "Max-Age=0" in r.headers["set-cookie"]  # a dead session cookie is dropped


async def test_login_sets_a_secure_httponly_samesite_cookie_for_the_console_only(
    client: Browserish, tenant: Tenant
) -> None:
    token = await client.csrf("/console/login")
    r = await client.post(
        "/console/login", {"email": tenant.emails["member"], "password": PASSWORD}, token=token
    )
    assert (r.status_code, r.headers["location"]) == (303, "/console/")
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("mp_session="))
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path"} <= attributes
    assert "Path=/console" in cookie and "SameSite=lax" in cookie
    client.session = client.cookies.pop("mp_session")
    r = await client.get("/console/")
    assert r.status_code == 200 and tenant.emails["member"] in r.text


async def test_wrong_password_is_a_401_form_with_no_session(
    client: Browserish, tenant: Tenant
) -> None:
    token = await client.csrf("/console/login")
    r = await client.post(
        "/console/login", {"email": tenant.emails["member"], "password": "nope"}, token=token
    )
    assert r.status_code == 401 and "Wrong e-mail or password" in r.text
    assert "mp_session" not in client.cookies


async def test_a_post_without_the_csrf_token_is_refused(
    client: Browserish, tenant: Tenant, http: object, pool: asyncpg.Pool
) -> None:
    """A cross-site form (the session cookie sent, no token) cannot pause a monitor; a login
    form posted without the token cannot log anyone in either."""
    monitor = await create(http, tenant, "smtp")  # type: ignore[arg-type]
    client.session = tenant.tokens["owner"]
    await client.csrf()  # the CSRF cookie is there; only the form field is missing
    r = await client.post(f"/console/monitors/{monitor['publicId']}/pause")
    assert r.status_code == 403
    r = await client.post(f"/console/monitors/{monitor['publicId']}/pause", token="0" * 128)
    assert r.status_code == 403
    status = await pool.fetchval(
        "SELECT status FROM monitors WHERE public_id = $1::uuid", monitor["publicId"]
    )
    assert status == "active"
    login = await client.post(
        "/console/login", {"email": tenant.emails["owner"], "password": PASSWORD}
    )
    assert login.status_code == 403


async def test_logout_revokes_the_session(client: Browserish, tenant: Tenant) -> None:
    client.session = tenant.tokens["admin"]
    token = await client.csrf()
    r = await client.post("/console/logout", token=token)
    assert (r.status_code, r.headers["location"]) == (303, "/console/login")
    r = await client.get("/console/")
    assert r.status_code == 303  # the token behind the cookie is gone, not only the cookie


async def test_the_console_login_is_throttled_like_the_api_login(
    settings: ControllerSettings, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """Wrong passwords from one address: past LOGIN_ADDRESS_PER_MINUTE the form answers 429
    with Retry-After, even for the right password (the same throttle as `/api/auth/login`)."""
    async with (
        serving(settings, pool, login_address_per_minute=3) as url,
        client_from(url, new_address()) as http,
    ):
        client = Browserish(http)
        token = await client.csrf("/console/login")
        email = tenant.emails["member"]
        for _ in range(3):
            r = await client.post("/console/login", {"email": email, "password": "x"}, token=token)
            assert r.status_code == 401
        r = await client.post("/console/login", {"email": email, "password": PASSWORD}, token=token)
        assert r.status_code == 429 and "Too many login attempts" in r.text
        assert retry_after(r) >= 1
        assert "mp_session" not in client.cookies
