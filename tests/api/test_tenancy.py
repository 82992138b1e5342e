"""Tenant isolation: another organization's monitor is a 404 for every role, never a 403."""

from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import PATHS, as_got, assert_error, create
from tests.conftest import Tenant, make_tenant

KINDS = ["smtp", "imap"]
ROLES = ["owner", "admin", "member", "readonly"]
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("GET", {}),
    ("PATCH", {"json": {"status": "disabled"}}),
    ("PATCH", {"json": {"name": "taken over"}}),
    ("PATCH", {"json": {}}),
    ("DELETE", {}),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", ROLES)
async def test_other_orgs_monitor_is_404_never_403(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, kind: str, role: str
) -> None:
    """Every role of another organization gets 404 for GET, PATCH (any body) and DELETE."""
    created = await create(http, tenant, kind)
    url = f"{PATHS[kind]}/{created['publicId']}"
    stranger = await make_tenant(pool)
    for method, kwargs in REQUESTS:
        r = await http.request(method, url, headers=stranger.auth(role), **kwargs)
        assert_error(r, 404, code="not_found")
    # untouched
    r = await http.get(url, headers=tenant.auth())
    assert r.status_code == 200 and r.json() == as_got(created)


@pytest.mark.parametrize("kind", KINDS)
async def test_404_for_other_org_equals_404_for_unknown(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, kind: str
) -> None:
    """Nothing tells a foreign monitor from a missing one."""
    created = await create(http, tenant, kind)
    stranger = await make_tenant(pool)
    foreign = await http.get(f"{PATHS[kind]}/{created['publicId']}", headers=stranger.auth())
    missing = await http.get(
        f"{PATHS[kind]}/00000000-0000-4000-8000-000000000000", headers=stranger.auth()
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


@pytest.mark.parametrize("kind", KINDS)
async def test_lists_are_scoped_to_the_organization(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, kind: str
) -> None:
    mine = await create(http, tenant, kind)
    stranger = await make_tenant(pool)
    theirs = await create(http, stranger, kind)
    for who, expected in ((tenant, mine), (stranger, theirs)):
        for role in ROLES:
            r = await http.get(PATHS[kind], headers=who.auth(role))
            assert r.status_code == 200
            assert r.json()["items"] == [expected]
            assert r.json()["total"] == 1
    # searching or filtering by the other's customer does not leak it
    r = await http.get(
        PATHS[kind],
        params={"search": mine["name"], "customerId": tenant.customer_id},
        headers=stranger.auth(),
    )
    assert r.json()["total"] == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_create_and_move_into_other_orgs_customer_is_404(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, kind: str
) -> None:
    stranger = await make_tenant(pool)
    body = {"customerId": stranger.customer_id, "name": "x", "hostname": "a.example.com"}
    r = await http.post(PATHS[kind], json=body, headers=tenant.auth())
    assert_error(r, 404, fields=["customerId"], message="Customer not found")
    created = await create(http, tenant, kind)
    r = await http.patch(
        f"{PATHS[kind]}/{created['publicId']}",
        json={"customerId": stranger.customer_public_id},
        headers=tenant.auth(),
    )
    assert_error(r, 404, fields=["customerId"])
    assert (
        await http.get(f"{PATHS[kind]}/{created['publicId']}", headers=tenant.auth())
    ).json() == as_got(created)


async def test_customers_are_scoped(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    stranger = await make_tenant(pool)
    for ident in (tenant.customer_id, tenant.customer_public_id):
        r = await http.get(f"/api/customers/{ident}", headers=stranger.auth())
        assert_error(r, 404)
    r = await http.get("/api/customers", headers=stranger.auth())
    assert [c["id"] for c in r.json()["items"]] == [stranger.customer_id]


async def test_users_are_scoped(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    stranger = await make_tenant(pool)
    r = await http.get("/api/users", headers=stranger.auth())
    assert {u["email"] for u in r.json()["items"]} == set(stranger.emails.values())
    assert {u["organizationId"] for u in r.json()["items"]} == {stranger.org_id}
