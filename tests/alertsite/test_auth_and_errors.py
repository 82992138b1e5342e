"""Access tokens, and every error in AlertSite's shape `{"errors": [{"code", "message"}]}`."""

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from controller.access.credentials import token_digest
from tests.alertsite.helpers import MINIMAL, V3, as_error, create, stored
from tests.conftest import PASSWORD, Tenant, make_tenant

AUTH_FAILED = "invalid_request - User authentication failed."


async def login(http: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    r = await http.post(f"{V3}/access-tokens", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token"}, body
    token: str = body["access_token"]
    return token


async def test_access_token_is_a_bearer_token_for_v3_and_the_native_api(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    token = await login(http, tenant.emails["member"].upper())  # e-mails match case-insensitively
    auth = {"Authorization": f"Bearer {token}"}
    assert (await http.get(f"{V3}/monitors", headers=auth)).status_code == 200
    me = await http.get("/api/auth/me", headers=auth)
    assert me.status_code == 200 and me.json()["email"] == tenant.emails["member"]
    async with pool.acquire() as conn:
        expires_at = await conn.fetchval(
            "SELECT expires_at FROM api_tokens WHERE token_hash = $1", token_digest(token)
        )
    # AlertSite's tokens live one hour.
    assert abs(expires_at - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=1)


@pytest.mark.parametrize("who", ["wrong password", "unknown user"])
async def test_bad_credentials_are_alertsites_400(
    http: httpx.AsyncClient, tenant: Tenant, who: str
) -> None:
    username = tenant.emails["admin"] if who == "wrong password" else "nobody@example.com"
    r = await http.post(
        f"{V3}/access-tokens", json={"username": username, "password": "not the password"}
    )
    as_error(r, 400, AUTH_FAILED)


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b'{"username": "a@example.com"}', "password"),
        (b'{"password": "x"}', "username"),
        (b'{"username": 1, "password": "x"}', "username"),
        (b'{"username": "a@example.com", "password": "x", "extra": 1}', "extra"),
        (b"{bad", None),
        (b"[]", None),
    ],
)
async def test_malformed_token_requests_are_400(
    http: httpx.AsyncClient, content: bytes, named: str | None
) -> None:
    r = await http.post(
        f"{V3}/access-tokens", content=content, headers={"content-type": "application/json"}
    )
    message = as_error(r, 400)
    if named is not None:
        assert named in message


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/monitors"),
        ("GET", "/monitors/1"),
        ("DELETE", "/monitors/1"),
        ("POST", "/monitors/email-smtp"),
        ("POST", "/monitors/email-imap"),
        ("POST", "/monitors/email-pop"),
        ("PATCH", "/monitors/email-smtp/1"),
        ("PATCH", "/monitors/email-imap/1"),
        ("PATCH", "/monitors/email-pop/1"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer", "Bearer mp_not-a-token", "Basic abc"])
async def test_missing_or_bad_token_is_401_in_alertsite_shape(
    http: httpx.AsyncClient, method: str, path: str, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = await http.request(method, f"{V3}{path}", json=MINIMAL, headers=headers)
    as_error(r, 401)


async def test_the_native_api_keeps_its_own_error_shape(http: httpx.AsyncClient) -> None:
    r = await http.get("/api/smtp-monitors")
    assert r.status_code == 401
    assert set(r.json()) == {"statusCode", "code", "message", "fields"}


@pytest.mark.parametrize("missing", ["billing_plancode", "name", "hostname"])
@pytest.mark.parametrize("kind", ["email-smtp", "email-imap", "email-pop"])
async def test_missing_required_field_is_400_naming_it(
    http: httpx.AsyncClient, tenant: Tenant, kind: str, missing: str
) -> None:
    body = {k: v for k, v in MINIMAL.items() if k != missing}
    r = await http.post(f"{V3}/monitors/{kind}", json=body, headers=tenant.auth())
    assert missing in as_error(r, 400)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("billing_plancode", None),
        ("name", ""),
        ("name", 5),
        ("hostname", "http://smtp.example.com/"),
        ("hostname", "imaps://smtp.example.com"),
        ("hostname", "smtp.example.com:25"),
        ("hostname", "smtps://smtp.example.com:99999"),
        ("interval", 0),
        ("interval", 1441),
        ("interval", "fifteen"),
        ("interval", 1.5),
        ("interval", "1e3"),
        ("interval", "9" * 5000),
        ("interval", 10**30),
        ("timeout", "9" * 5000),
        ("port", "9" * 5000),
        ("interval", True),
        ("interval", "\u00b2"),
        ("timeout", 0),
        ("timeout", 301),
        ("timeout", "-5"),
        ("enabled", "maybe"),
        ("enabled", 1),
        ("port", 0),
        ("port", 65536),
        ("port", "smtp"),
        ("locations", [{"id": 9999}]),
        ("locations", [{"id": "XX"}]),
        ("locations", [{"name": "Atlanta, GA"}]),
        ("locations", "US"),
        ("locations", [{"id": "\u00b2"}]),
        ("port", "\u00b2"),
        ("ssl", "perhaps"),
        ("login", 5),
        ("password", ["x"]),
        ("name", "nul\x00byte"),
        ("frequency", 5),
    ],
)
async def test_bad_field_is_400_naming_it(
    http: httpx.AsyncClient, tenant: Tenant, field: str, value: object
) -> None:
    r = await http.post(
        f"{V3}/monitors/email-smtp", json={**MINIMAL, field: value}, headers=tenant.auth()
    )
    message = as_error(r, 400)
    expected = "hostname" if field == "hostname" else field
    assert expected in message, message


async def test_timeout_longer_than_the_interval_is_400(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await http.post(
        f"{V3}/monitors/email-smtp",
        json={**MINIMAL, "interval": 1, "timeout": 120},
        headers=tenant.auth(),
    )
    assert "timeout" in as_error(r, 400)
    monitor_id = await create(http, tenant, interval=5, timeout=120)
    r = await http.patch(
        f"{V3}/monitors/email-smtp/{monitor_id}", json={"interval": 1}, headers=tenant.auth()
    )
    assert "timeout" in as_error(r, 400)


async def test_conflicting_port_or_ssl_in_hostname_is_400(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    for extra, named in (({"port": 25}, "port"), ({"ssl": False}, "ssl")):
        r = await http.post(
            f"{V3}/monitors/email-smtp",
            json={**MINIMAL, "hostname": "smtps://smtp.example.com:465", **extra},
            headers=tenant.auth(),
        )
        message = as_error(r, 400)
        assert message.startswith(named) and "hostname" in message, message


@pytest.mark.parametrize(
    "hostname",
    [
        "smtps://[::1]x",
        "smtps://[::1]:465x",
        "smtps://[::1]465",
        "smtps://[::1",
        "smtps://[mx.example.com]:465",
        "smtps://2001:db8::1",
        "smtps://user@mx.example.com",
        "smtps://user:pw@mx.example.com:465",
        "smtps://mx.example.com/path",
        "smtps://mx.example.com:465/path",
        "smtps://mx.example.com?x=1",
        "smtps://mx.example.com#top",
        "smtps://mx.example.com:",
        "smtps://mx.example.com:0",
        "smtps://mx.example.com:+465",
        "smtps://mx.example.com: 465",
        "smtps://",
        "smtps://:465",
    ],
)
async def test_hostname_url_is_parsed_strictly(
    http: httpx.AsyncClient, tenant: Tenant, hostname: str
) -> None:
    """After `]` only nothing or `:port`; no path, query, fragment or user-info: a 400 naming
    hostname rather than a silently shortened host."""
    r = await http.post(
        f"{V3}/monitors/email-smtp", json={**MINIMAL, "hostname": hostname}, headers=tenant.auth()
    )
    assert "hostname" in as_error(r, 400)


async def test_number_messages_say_what_is_expected(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    for field, value, expected in (
        ("port", 0, "port must be a whole number from 1 to 65535"),
        ("timeout", 0, "timeout must be a whole number of seconds from 1 to 300"),
        ("interval", 0, "interval must be a whole number of minutes from 1 to 1440"),
    ):
        r = await http.post(
            f"{V3}/monitors/email-smtp", json={**MINIMAL, field: value}, headers=tenant.auth()
        )
        as_error(r, 400, expected)


@pytest.mark.parametrize(
    "bad",
    [
        {"interval": 0},
        {"locations": [9999]},
        {"name": "   "},
        {"hostname": "not a host"},
        {"hostname": "smtps://[::1]x"},
        {"interval": 1, "timeout": 120},
        {"password": "********"},
    ],
)
async def test_a_refused_create_leaves_no_default_customer(
    http: httpx.AsyncClient, pool: asyncpg.Pool, bad: dict[str, object]
) -> None:
    tenant = await make_tenant(pool)
    r = await http.post(f"{V3}/monitors/email-smtp", json={**MINIMAL, **bad}, headers=tenant.auth())
    as_error(r, 400)
    async with pool.acquire() as conn:
        n = await conn.fetchval(
            "SELECT count(*) FROM customers WHERE organization_id = $1 AND is_default",
            tenant.org_id,
        )
    assert n == 0
    await create(http, tenant)


async def test_an_expired_token_is_401(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """AlertSite: "An attempt to use an expired token will result in the 401 Unauthorized"."""
    token = await login(http, tenant.emails["admin"])
    auth = {"Authorization": f"Bearer {token}"}
    assert (await http.get(f"{V3}/monitors", headers=auth)).status_code == 200
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
            token_digest(token),
        )
    as_error(await http.get(f"{V3}/monitors", headers=auth), 401)
    r = await http.post(f"{V3}/monitors/email-smtp", json=MINIMAL, headers=auth)
    as_error(r, 401)


@pytest.mark.parametrize(
    "content", [b"{bad", b"", b"null", b"[]", b'"x"', b"[" * 5000 + b"]" * 5000]
)
async def test_malformed_bodies_are_400_in_alertsite_shape(
    http: httpx.AsyncClient, tenant: Tenant, content: bytes
) -> None:
    headers = {**tenant.auth(), "content-type": "application/json"}
    as_error(await http.post(f"{V3}/monitors/email-smtp", content=content, headers=headers), 400)
    monitor_id = await create(http, tenant)
    r = await http.patch(f"{V3}/monitors/email-smtp/{monitor_id}", content=content, headers=headers)
    as_error(r, 400)


@pytest.mark.parametrize("role", ["readonly", "supporter"])
@pytest.mark.parametrize("kind", ["email-smtp", "email-imap", "email-pop"])
async def test_readonly_and_global_supporters_may_not_create(
    http: httpx.AsyncClient, pool: asyncpg.Pool, kind: str, role: str
) -> None:
    tenant = await make_tenant(pool, supporter=True)
    r = await http.post(f"{V3}/monitors/{kind}", json=MINIMAL, headers=tenant.auth(role))
    assert as_error(r, 403).startswith("Forbidden")


async def test_readonly_may_only_enable_or_disable(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    monitor_id = await create(http, tenant)
    url = f"{V3}/monitors/email-smtp/{monitor_id}"
    for change in (
        {"name": "x"},
        {"interval": 5},
        {"password": "p"},
        {"enabled": False, "port": 1},
    ):
        as_error(await http.patch(url, json=change, headers=tenant.auth("readonly")), 403)
    r = await http.patch(url, json={"enabled": False}, headers=tenant.auth("readonly"))
    assert r.status_code == 200 and r.json() == {"id": monitor_id}
    assert (await stored(pool, monitor_id))["status"] == "disabled"
    as_error(await http.delete(f"{V3}/monitors/{monitor_id}", headers=tenant.auth("readonly")), 403)


async def test_another_organizations_monitor_is_record_not_found(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    other = await make_tenant(pool)
    smtp = await create(http, other)
    imap = await create(http, other, "email-imap")
    for method, path, body in (
        ("GET", f"/monitors/{smtp}", None),
        ("DELETE", f"/monitors/{smtp}", None),
        ("PATCH", f"/monitors/email-smtp/{smtp}", {"name": "mine now"}),
        ("PATCH", f"/monitors/email-imap/{imap}", {"name": "mine now"}),
    ):
        for role in ("admin", "readonly"):  # 404 before 403
            r = await http.request(method, f"{V3}{path}", json=body, headers=tenant.auth(role))
            as_error(r, 404, "Record not found")
    r = await http.get(f"{V3}/monitors/{smtp}", headers=other.auth())
    assert r.status_code == 200 and r.json()["name"] == "Email Sample Monitor"


@pytest.mark.parametrize(
    "raw", ["999999999999", "0", "abc", "12a", "99999999999999999999999", "\u00b9"]
)
async def test_unknown_or_malformed_ids_are_record_not_found(
    http: httpx.AsyncClient, tenant: Tenant, raw: str
) -> None:
    for method, path, body in (
        ("GET", f"/monitors/{raw}", None),
        ("DELETE", f"/monitors/{raw}", None),
        ("PATCH", f"/monitors/email-smtp/{raw}", {"port": 25}),
    ):
        r = await http.request(method, f"{V3}{path}", json=body, headers=tenant.auth())
        as_error(r, 404, "Record not found")


async def test_patch_through_another_type_is_record_not_found(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    smtp = await create(http, tenant)
    pop = await create(http, tenant, "email-pop")
    for path in (
        f"email-imap/{smtp}",
        f"email-pop/{smtp}",
        f"email-imap/{pop}",
        f"email-smtp/{pop}",
    ):
        r = await http.patch(f"{V3}/monitors/{path}", json={"port": 1}, headers=tenant.auth())
        as_error(r, 404, "Record not found")


async def test_unknown_v3_route_is_404_in_alertsite_shape(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    as_error(await http.get(f"{V3}/recipients", headers=tenant.auth()), 404)
    # Other AlertSite monitor types are not offered: the path is taken by GET/DELETE /monitors/{id}.
    r = await http.post(f"{V3}/monitors/website", json=MINIMAL, headers=tenant.auth())
    as_error(r, 405)


async def test_list_rejects_unknown_types(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.get(
        f"{V3}/monitors", params={"type": "email-smtp,gopher"}, headers=tenant.auth()
    )
    assert "gopher" in as_error(r, 400)
    r = await http.get(f"{V3}/monitors", params={"limit": "0"}, headers=tenant.auth())
    as_error(r, 400)


async def test_default_customer_is_created_once_under_concurrency(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tenant = await make_tenant(pool)
    ids = await asyncio.gather(*(create(http, tenant, name=f"m{i}") for i in range(12)))
    customers = {(await stored(pool, i))["customer_id"] for i in ids}
    assert len(customers) == 1
    async with pool.acquire() as conn:
        n = await conn.fetchval(
            "SELECT count(*) FROM customers WHERE organization_id = $1 AND is_default",
            tenant.org_id,
        )
    assert n == 1


async def test_a_nul_only_matters_in_a_field_mailprobe_stores(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    """AlertSite's ignored fields are never stored, so a NUL there is accepted (it was a 400 the
    document could not state: those fields take any JSON); in a stored field it is a 400."""
    await create(http, tenant, note="a\u0000b", custom_properties=[{"k": "\u0000"}])
    r = await http.post(
        f"{V3}/monitors/email-smtp", json={**MINIMAL, "name": "a\u0000b"}, headers=tenant.auth()
    )
    assert "name" in as_error(r, 400)
