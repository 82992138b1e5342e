"""Bearer auth and login, /api/users (admins manage users), /api/customers."""

import hashlib
from typing import Any

import asyncpg
import httpx
import pytest

from controller.access import accounts_store as accounts
from controller.access.credentials import new_token
from shared.clock import WALL
from tests.api.helpers import ISO_MS, SMTP, assert_error, create, minimal_body
from tests.conftest import PASSWORD, Tenant, make_tenant

USER_KEYS = {
    "publicId",
    "organizationId",
    "email",
    "role",
    "isGlobalSupporter",
    "isOperator",
    "createdAt",
    "disabled",
}
CUSTOMER_KEYS = {"id", "publicId", "organizationId", "name", "createdAt", "updatedAt"}
PROTECTED = [
    ("GET", SMTP),
    ("POST", SMTP),
    ("GET", f"{SMTP}/00000000-0000-4000-8000-000000000000"),
    ("PATCH", f"{SMTP}/00000000-0000-4000-8000-000000000000"),
    ("DELETE", f"{SMTP}/00000000-0000-4000-8000-000000000000"),
    ("GET", "/api/imap-pop-monitors"),
    ("POST", "/api/imap-pop-monitors"),
    ("GET", "/api/customers"),
    ("POST", "/api/customers"),
    ("GET", "/api/customers/1"),
    ("GET", "/api/users"),
    ("POST", "/api/users"),
    ("GET", "/api/auth/me"),
]


# authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer  x y",
        "Bearer not-a-token",
        "Bearer mp_" + "A" * 43,
        "Basic dXNlcjpwYXNz",
        "Token abc",
    ],
)
async def test_missing_or_bad_token_is_401(
    http: httpx.AsyncClient, method: str, path: str, header: str | None
) -> None:
    """Every /api route wants `Authorization: Bearer <token>`; 401 in our error shape."""
    headers = {} if header is None else {"Authorization": header}
    kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "PATCH") else {}
    r = await http.request(method, path, headers=headers, **kwargs)
    assert_error(r, 401, code="unauthorized", fields=[])


async def test_expired_token_is_401(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    token, digest = new_token()
    async with pool.acquire() as conn:
        user_id = await conn.fetchval(
            "SELECT id FROM users WHERE email = $1", tenant.emails["admin"]
        )
        await accounts.issue_token(conn, user_id, digest, -1, WALL.now())
    r = await http.get(SMTP, headers={"Authorization": f"Bearer {token}"})
    body = assert_error(r, 401, code="unauthorized")
    assert "expired" in body["message"]


async def test_bearer_scheme_is_case_insensitive(http: httpx.AsyncClient, tenant: Tenant) -> None:
    token = tenant.tokens["admin"]
    for header in (f"bearer {token}", f"BEARER {token}"):
        r = await http.get(SMTP, headers={"Authorization": header})
        assert r.status_code == 200


async def test_tokens_are_stored_only_as_hashes(pool: asyncpg.Pool, tenant: Tenant) -> None:
    token = tenant.tokens["admin"]
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT token_hash FROM api_tokens")
        stored = {bytes(r["token_hash"]) for r in rows}
        text = await conn.fetchval(
            "SELECT string_agg(encode(token_hash, 'escape'), '') FROM api_tokens"
        )
    assert hashlib.sha256(token.encode()).digest() in stored
    assert token not in (text or "")


async def test_public_routes_need_no_token(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).status_code == 200
    assert (await http.get("/ready")).json() == {"status": "ready"}
    assert (await http.get("/schema/openapi.json")).status_code == 200


# login ----------------------------------------------------------------------------------------


async def test_login_gives_usable_token(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post(
        "/api/auth/login", json={"email": tenant.emails["member"], "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"token", "expiresAt"}
    assert ISO_MS.match(body["expiresAt"])
    headers = {"Authorization": f"Bearer {body['token']}"}
    me = await http.get("/api/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["email"] == tenant.emails["member"]
    assert (me.json()["role"], me.json()["organizationId"]) == ("member", tenant.org_id)
    r = await http.post(SMTP, json=minimal_body(tenant), headers=headers)
    assert r.status_code == 201


async def test_login_email_is_case_insensitive(http: httpx.AsyncClient, tenant: Tenant) -> None:
    email = "  " + tenant.emails["admin"].upper() + " "
    r = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"email": "EXISTING", "password": "wrong password!"},
        {"email": "nobody@example.com", "password": PASSWORD},
        {"email": "EXISTING", "password": ""},
    ],
)
async def test_login_wrong_credentials_is_401(
    http: httpx.AsyncClient, tenant: Tenant, body: dict[str, str]
) -> None:
    body = {k: tenant.emails["admin"] if v == "EXISTING" else v for k, v in body.items()}
    r = await http.post("/api/auth/login", json=body)
    assert_error(r, 401, code="bad_credentials")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@example.com"}, "password"),
        ({"password": "x"}, "email"),
        ({"email": 1, "password": "x"}, "email"),
    ],
)
async def test_login_bad_body_is_400(
    http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    assert_error(await http.post("/api/auth/login", json=body), 400, fields=[field])


async def test_me_describes_the_caller(http: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    t = await make_tenant(pool, supporter=True)
    r = await http.get("/api/auth/me", headers=t.auth("supporter"))
    assert r.json()["isGlobalSupporter"] is True and r.json()["role"] == "readonly"
    assert r.json()["isOperator"] is False
    r = await http.get("/api/auth/me", headers=t.auth("operator"))
    assert (r.json()["isOperator"], r.json()["role"]) == (True, "member")


# users ----------------------------------------------------------------------------------------


async def test_admin_creates_member_who_can_log_in(http: httpx.AsyncClient, tenant: Tenant) -> None:
    email = f"new-{tenant.org_name}@example.com"
    r = await http.post(
        "/api/users",
        json={"email": email, "password": "long enough pw", "role": "member"},
        headers=tenant.auth("admin"),
    )
    assert r.status_code == 201, r.text
    user = r.json()
    assert set(user) == USER_KEYS
    assert (user["email"], user["role"], user["organizationId"]) == (email, "member", tenant.org_id)
    assert user["isGlobalSupporter"] is False
    assert ISO_MS.match(user["createdAt"])
    r = await http.post("/api/auth/login", json={"email": email, "password": "long enough pw"})
    assert r.status_code == 200
    listing = await http.get("/api/users", headers=tenant.auth("owner"))
    assert email in {u["email"] for u in listing.json()["items"]}
    assert listing.json()["total"] == 6  # make_tenant's five (tests.conftest) and this one


async def test_role_defaults_to_member(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post(
        "/api/users",
        json={"email": f"d-{tenant.org_name}@example.com", "password": "long enough pw"},
        headers=tenant.auth(),
    )
    assert r.status_code == 201 and r.json()["role"] == "member"


@pytest.mark.parametrize("role", ["member", "readonly"])
async def test_members_and_readonly_cannot_manage_users(
    http: httpx.AsyncClient, tenant: Tenant, role: str
) -> None:
    body = {
        "email": f"x-{role}-{tenant.org_name}@example.com",
        "password": "long enough pw",
        "role": "member",
    }
    assert_error(await http.post("/api/users", json=body, headers=tenant.auth(role)), 403)
    assert_error(await http.get("/api/users", headers=tenant.auth(role)), 403)


async def test_supporter_cannot_create_users(http: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    t = await make_tenant(pool, supporter=True)
    body = {"email": f"s-{t.org_name}@example.com", "password": "long enough pw"}
    assert_error(await http.post("/api/users", json=body, headers=t.auth("supporter")), 403)


async def test_duplicate_email_is_409(http: httpx.AsyncClient, tenant: Tenant) -> None:
    body = {
        "email": tenant.emails["member"].upper(),
        "password": "long enough pw",
        "role": "member",
    }
    assert_error(
        await http.post("/api/users", json=body, headers=tenant.auth()), 409, fields=["email"]
    )


async def test_only_owner_creates_owner(http: httpx.AsyncClient, tenant: Tenant) -> None:
    body = {
        "email": f"o-{tenant.org_name}@example.com",
        "password": "long enough pw",
        "role": "owner",
    }
    assert_error(await http.post("/api/users", json=body, headers=tenant.auth("admin")), 403)
    r = await http.post("/api/users", json=body, headers=tenant.auth("owner"))
    assert r.status_code == 201 and r.json()["role"] == "owner"


async def test_admin_creates_admin_and_readonly(http: httpx.AsyncClient, tenant: Tenant) -> None:
    for role in ("admin", "readonly"):
        body = {
            "email": f"{role}2-{tenant.org_name}@example.com",
            "password": "long enough pw",
            "role": role,
        }
        r = await http.post("/api/users", json=body, headers=tenant.auth("admin"))
        assert r.status_code == 201 and r.json()["role"] == role


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": "long enough pw"}, "email"),
        ({"email": "", "password": "long enough pw"}, "email"),
        ({"email": "ok@example.com", "password": "short"}, "password"),
        ({"email": "ok@example.com", "password": "long enough pw", "role": "superuser"}, "role"),
        (
            {"email": "ok@example.com", "password": "long enough pw", "isGlobalSupporter": True},
            "isGlobalSupporter",
        ),
        ({"password": "long enough pw"}, "email"),
    ],
)
async def test_user_validation(
    http: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    assert_error(
        await http.post("/api/users", json=body, headers=tenant.auth()), 400, fields=[field]
    )


# customers ------------------------------------------------------------------------------------


async def test_customer_create_get_list(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post("/api/customers", json={"name": "  ACME GmbH "}, headers=tenant.auth())
    assert r.status_code == 201, r.text
    customer = r.json()
    assert set(customer) == CUSTOMER_KEYS
    assert (customer["name"], customer["organizationId"]) == ("ACME GmbH", tenant.org_id)
    assert isinstance(customer["id"], int) and len(customer["publicId"]) == 36
    for ident in (customer["id"], customer["publicId"], customer["publicId"].upper()):
        r = await http.get(f"/api/customers/{ident}", headers=tenant.auth("readonly"))
        assert r.status_code == 200 and r.json() == customer
    r = await http.get("/api/customers", headers=tenant.auth("member"))
    assert r.json()["total"] == 2 and r.json()["items"][0] == customer  # newest first
    assert (r.json()["page"], r.json()["perPage"]) == (1, 50)
    r = await http.get("/api/customers", params={"search": "acme"}, headers=tenant.auth())
    assert r.json()["items"] == [customer]
    # usable as a monitor's customer, by id and by UUID
    for ident in (customer["id"], customer["publicId"]):
        monitor = await create(http, tenant, customerId=ident)
        assert monitor["customerId"] == customer["id"]


@pytest.mark.parametrize("ident", ["abc", "0", "-1", "1.5"])
async def test_customer_bad_identifier_is_400(
    http: httpx.AsyncClient, tenant: Tenant, ident: str
) -> None:
    r = await http.get(f"/api/customers/{ident}", headers=tenant.auth())
    assert_error(r, 400, fields=["customerId"], message="Invalid Customer identifier")


async def test_unknown_customer_is_404(http: httpx.AsyncClient, tenant: Tenant) -> None:
    for ident in ("999999999", "00000000-0000-4000-8000-000000000000"):
        assert_error(await http.get(f"/api/customers/{ident}", headers=tenant.auth()), 404)


@pytest.mark.parametrize("role", ["member", "readonly"])
async def test_only_admins_create_customers(
    http: httpx.AsyncClient, tenant: Tenant, role: str
) -> None:
    assert_error(
        await http.post("/api/customers", json={"name": "x"}, headers=tenant.auth(role)), 403
    )
    r = await http.post("/api/customers", json={"name": "by owner"}, headers=tenant.auth("owner"))
    assert r.status_code == 201


async def test_supporter_reads_customers_of_every_org_but_cannot_create(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    t = await make_tenant(pool, supporter=True)
    r = await http.get(f"/api/customers/{tenant.customer_public_id}", headers=t.auth("supporter"))
    assert r.status_code == 200 and r.json()["organizationId"] == tenant.org_id
    assert_error(
        await http.post("/api/customers", json={"name": "x"}, headers=t.auth("supporter")), 403
    )


@pytest.mark.parametrize(
    "body", [{"name": ""}, {"name": "   "}, {"name": 5}, {}, {"name": "x", "extra": 1}]
)
async def test_customer_validation(
    http: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]
) -> None:
    assert_error(await http.post("/api/customers", json=body, headers=tenant.auth()), 400)
