"""Tokens are revocable (`POST /api/auth/logout`, `POST /api/users/{id}/revoke-tokens`) and users
can be disabled (`PATCH /api/users/{id}` with `{"disabled": true}`): their tokens stop working at
once and their logins are refused, until they are enabled again."""

import asyncio

import asyncpg
import httpx
import pytest

from controller.access import accounts_store as accounts
from controller.access.credentials import new_token
from shared.clock import WALL
from tests.api.helpers import SMTP, assert_error
from tests.conftest import PASSWORD, Tenant, make_tenant

USERS = "/api/users"


async def _user_id(http: httpx.AsyncClient, tenant: Tenant, role: str) -> str:
    r = await http.get("/api/auth/me", headers=tenant.auth(role))
    assert r.status_code == 200, r.text
    public_id: str = r.json()["publicId"]
    return public_id


async def _another_token(pool: asyncpg.Pool, tenant: Tenant, role: str) -> dict[str, str]:
    """A second token of the tenant's `role` user, as another device would hold."""
    token, digest = new_token()
    async with pool.acquire() as conn:
        user_id = await conn.fetchval("SELECT id FROM users WHERE email = $1", tenant.emails[role])
        await accounts.issue_token(conn, user_id, digest, 3600, WALL.now())
    return {"Authorization": f"Bearer {token}"}


async def _works(http: httpx.AsyncClient, headers: dict[str, str]) -> bool:
    r = await http.get(SMTP, headers=headers)
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


async def _login(http: httpx.AsyncClient, email: str) -> httpx.Response:
    return await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})


# logout ---------------------------------------------------------------------------------------


async def test_logout_revokes_the_calling_token_only(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    other_device = await _another_token(pool, tenant, "member")
    r = await http.post("/api/auth/logout", headers=tenant.auth("member"))
    assert r.status_code == 204 and r.content == b""
    body = assert_error(await http.get(SMTP, headers=tenant.auth("member")), 401)
    assert "revoked" in body["message"]
    assert_error(await http.post("/api/auth/logout", headers=tenant.auth("member")), 401)
    assert await _works(http, other_device)


async def test_logout_needs_a_token(http: httpx.AsyncClient) -> None:
    assert_error(await http.post("/api/auth/logout"), 401, code="unauthorized")


# revoke a user's tokens -----------------------------------------------------------------------


async def test_an_admin_revokes_every_token_of_a_user(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    other_device = await _another_token(pool, tenant, "member")
    member = await _user_id(http, tenant, "member")
    r = await http.post(f"{USERS}/{member}/revoke-tokens", headers=tenant.auth("admin"))
    assert r.status_code == 204, r.text
    assert not await _works(http, tenant.auth("member"))
    assert not await _works(http, other_device)
    assert await _works(http, tenant.auth("admin"))
    # Revoking is not disabling: the member logs in again.
    assert (await _login(http, tenant.emails["member"])).status_code == 200


# disable and enable ---------------------------------------------------------------------------


async def test_a_disabled_user_is_locked_out_at_once_and_enabled_again(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    member = await _user_id(http, tenant, "member")
    other_device = await _another_token(pool, tenant, "member")
    r = await http.patch(f"{USERS}/{member}", json={"disabled": True}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert r.json()["disabled"] is True and r.json()["email"] == tenant.emails["member"]
    assert not await _works(http, tenant.auth("member"))
    assert not await _works(http, other_device)
    assert_error(await _login(http, tenant.emails["member"]), 401, code="bad_credentials")
    listing = (await http.get(USERS, headers=tenant.auth())).json()["items"]
    assert {u["email"]: u["disabled"] for u in listing}[tenant.emails["member"]] is True

    r = await http.patch(f"{USERS}/{member}", json={"disabled": False}, headers=tenant.auth())
    assert r.status_code == 200 and r.json()["disabled"] is False
    login = await _login(http, tenant.emails["member"])
    assert login.status_code == 200, login.text
    assert await _works(http, {"Authorization": f"Bearer {login.json()['token']}"})
    # Tokens from before the disabling stay revoked: one may be why the user was disabled.
    assert not await _works(http, tenant.auth("member"))


async def test_a_token_of_a_disabled_user_is_refused_even_if_issued_after(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """A login racing the disabling may still insert a token: the user's state is checked on
    every request, not only when tokens are deleted."""
    readonly = await _user_id(http, tenant, "readonly")
    r = await http.patch(f"{USERS}/{readonly}", json={"disabled": True}, headers=tenant.auth())
    assert r.status_code == 200
    late = await _another_token(pool, tenant, "readonly")
    assert not await _works(http, late)


async def test_owners_may_disable_admins_and_other_owners(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await http.post(
        USERS,
        json={"email": f"o2-{tenant.org_name}@example.com", "password": "x" * 12, "role": "owner"},
        headers=tenant.auth("owner"),
    )
    assert r.status_code == 201
    second_owner = r.json()["publicId"]
    admin = await _user_id(http, tenant, "admin")
    for target in (admin, second_owner):
        r = await http.patch(
            f"{USERS}/{target}", json={"disabled": True}, headers=tenant.auth("owner")
        )
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("role", ["member", "readonly"])
async def test_members_and_readonly_can_neither_disable_nor_revoke(
    http: httpx.AsyncClient, tenant: Tenant, role: str
) -> None:
    target = await _user_id(http, tenant, "member" if role == "readonly" else "readonly")
    headers = tenant.auth(role)
    assert_error(
        await http.patch(f"{USERS}/{target}", json={"disabled": True}, headers=headers), 403
    )
    assert_error(await http.post(f"{USERS}/{target}/revoke-tokens", headers=headers), 403)
    assert await _works(http, tenant.auth("member"))


async def test_supporters_can_neither_disable_nor_revoke(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    t = await make_tenant(pool, supporter=True)
    target = await _user_id(http, t, "member")
    headers = t.auth("supporter")
    assert_error(
        await http.patch(f"{USERS}/{target}", json={"disabled": True}, headers=headers), 403
    )
    assert_error(await http.post(f"{USERS}/{target}/revoke-tokens", headers=headers), 403)


async def test_another_organizations_user_is_404(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    other = await make_tenant(pool)
    target = await _user_id(http, other, "member")
    for headers in (tenant.auth("owner"), tenant.auth("admin")):
        r = await http.patch(f"{USERS}/{target}", json={"disabled": True}, headers=headers)
        assert_error(r, 404, code="not_found")
        assert_error(await http.post(f"{USERS}/{target}/revoke-tokens", headers=headers), 404)
    assert await _works(http, other.auth("member"))


async def test_admins_cannot_act_on_owners(http: httpx.AsyncClient, tenant: Tenant) -> None:
    owner = await _user_id(http, tenant, "owner")
    headers = tenant.auth("admin")
    assert_error(
        await http.patch(f"{USERS}/{owner}", json={"disabled": True}, headers=headers), 403
    )
    assert_error(await http.post(f"{USERS}/{owner}/revoke-tokens", headers=headers), 403)
    assert await _works(http, tenant.auth("owner"))


@pytest.mark.parametrize("role", ["owner", "admin"])
async def test_nobody_disables_themselves(
    http: httpx.AsyncClient, tenant: Tenant, role: str
) -> None:
    me = await _user_id(http, tenant, role)
    r = await http.patch(f"{USERS}/{me}", json={"disabled": True}, headers=tenant.auth(role))
    assert_error(r, 400, fields=["disabled"])
    assert await _works(http, tenant.auth(role))


async def test_revoking_ones_own_tokens_logs_out_everywhere(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    me = await _user_id(http, tenant, "admin")
    r = await http.post(f"{USERS}/{me}/revoke-tokens", headers=tenant.auth("admin"))
    assert r.status_code == 204
    assert not await _works(http, tenant.auth("admin"))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "disabled"),
        ({"disabled": "yes"}, "disabled"),
        ({"disabled": True, "role": "owner"}, "role"),
    ],
)
async def test_update_body_is_validated(
    http: httpx.AsyncClient, tenant: Tenant, body: dict[str, object], field: str
) -> None:
    member = await _user_id(http, tenant, "member")
    r = await http.patch(f"{USERS}/{member}", json=body, headers=tenant.auth())
    assert_error(r, 400, fields=[field])


async def test_a_malformed_user_id_is_400_and_an_unknown_one_404(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await http.patch(f"{USERS}/not-a-uuid", json={"disabled": True}, headers=tenant.auth())
    assert_error(r, 400, fields=["userPublicId"])
    unknown = "00000000-0000-4000-8000-000000000000"
    r = await http.post(f"{USERS}/{unknown}/revoke-tokens", headers=tenant.auth())
    assert_error(r, 404)


async def test_two_owners_disabling_each_other_at_once_leave_one_enabled(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """The organization's users are changed under a lock: while owner A's disabling of owner B
    is uncommitted, B's disabling of A waits for it, then finds B disabled and A the last
    enabled owner (409)."""
    r = await http.post(
        USERS,
        json={"email": f"b-{tenant.org_name}@example.com", "password": "x" * 12, "role": "owner"},
        headers=tenant.auth("owner"),
    )
    owner_b = r.json()["publicId"]
    login = await http.post(
        "/api/auth/login",
        json={"email": f"b-{tenant.org_name}@example.com", "password": "x" * 12},
    )
    b_headers = {"Authorization": f"Bearer {login.json()['token']}"}
    owner_a = await _user_id(http, tenant, "owner")
    async with pool.acquire() as conn, conn.transaction():
        # A's request, held open half-way: B is disabled but not committed yet.
        await accounts.lock_organization(conn, tenant.org_id)
        b_id = await conn.fetchval("SELECT id FROM users WHERE public_id = $1::uuid", owner_b)
        await accounts.set_disabled(conn, b_id, True, WALL.now())
        b_disables_a = asyncio.create_task(
            http.patch(f"{USERS}/{owner_a}", json={"disabled": True}, headers=b_headers)
        )
        await asyncio.sleep(0.3)
        assert not b_disables_a.done()  # waiting for the organization's lock
    assert_error(await b_disables_a, 409, code="last_owner", fields=["disabled"])
    assert await _works(http, tenant.auth("owner"))


@pytest.mark.timeout(180)
async def test_an_account_whose_password_hash_was_blanked_stays_locked(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """An operator may lock an account by blanking its hash in the database. A login verifies
    an unknown e-mail's password against a stand-in hash (the same work either way), and an
    empty hash took the stand-in too: it was of a password written in the source, which then
    logged in as that user. The stand-in is now of a random password and never admits."""
    email = tenant.emails["member"]
    async with pool.acquire() as conn:
        await conn.execute("UPDATE users SET password_hash = '' WHERE email = $1", email)
    for password in ("mailprobe-timing-equaliser", "", PASSWORD):
        # The stand-in hash has the production cost, and password threads run niced: on a busy
        # two-core host one verification can take longer than the client's usual 10 s.
        r = await http.post(
            "/api/auth/login", json={"email": email, "password": password}, timeout=60
        )
        assert r.status_code == 401, (password, r.text)
