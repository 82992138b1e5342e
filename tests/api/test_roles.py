"""The role matrix on both monitor kinds: owner, admin, member, readonly, global supporter.

readonly: read, PATCH `status` only (any other field → 403), no create/delete (403).
global supporter: reads every organization, never creates, updates or deletes (403).
"""

from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import CONFIG_KEY, PATHS, as_got, assert_error, create, seed_body
from tests.conftest import Tenant, make_tenant

KINDS = ["smtp", "imap"]
WRITERS = ["owner", "admin", "member"]


@pytest.fixture
async def org(pool: asyncpg.Pool) -> Tenant:
    """A tenant that also has a global supporter (a readonly user with the flag) in it."""
    return await make_tenant(pool, supporter=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", WRITERS)
async def test_writers_create_update_delete(
    http: httpx.AsyncClient, org: Tenant, kind: str, role: str
) -> None:
    created = await create(http, org, kind, role=role)
    url = f"{PATHS[kind]}/{created['publicId']}"
    body = {"name": "by " + role, "checkInterval": 120}
    r = await http.patch(url, json=body, headers=org.auth(role))
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["checkInterval"]) == ("by " + role, 120)
    r = await http.delete(url, headers=org.auth(role))
    assert r.status_code == 204


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", ["readonly", "supporter"])
async def test_readonly_and_supporter_cannot_create(
    http: httpx.AsyncClient, org: Tenant, kind: str, role: str
) -> None:
    r = await http.post(PATHS[kind], json=seed_body(kind, org), headers=org.auth(role))
    assert_error(r, 403, code="forbidden")
    assert (await http.get(PATHS[kind], headers=org.auth())).json()["total"] == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", ["readonly", "supporter"])
async def test_readonly_and_supporter_cannot_delete(
    http: httpx.AsyncClient, org: Tenant, kind: str, role: str
) -> None:
    created = await create(http, org, kind)
    url = f"{PATHS[kind]}/{created['publicId']}"
    assert_error(await http.delete(url, headers=org.auth(role)), 403)
    assert (await http.get(url, headers=org.auth())).status_code == 200


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("given", "stored"),
    [("paused", "disabled"), ("maintenance", "maintenance"), ("active", "active")],
)
async def test_readonly_may_patch_status_only(
    http: httpx.AsyncClient, org: Tenant, kind: str, given: str, stored: str
) -> None:
    created = await create(http, org, kind, status="disabled")
    url = f"{PATHS[kind]}/{created['publicId']}"
    r = await http.patch(url, json={"status": given}, headers=org.auth("readonly"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == stored
    assert r.json()["name"] == created["name"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "body",
    [
        {"name": "x"},
        {"status": "active", "name": "x"},
        {"status": "active", "port": 25},
        {"hostname": "a.example.com"},
        {"checkInterval": 120},
        {"allowedCheckCountryCodes": ["de"]},
        {"notificationEmail": "a@example.com"},
        {"customerId": 1},
        {"config": {}},
        {"kindConfig": None},
    ],
    ids=lambda b: "+".join(b),
)
async def test_readonly_patch_of_other_fields_is_403_and_changes_nothing(
    http: httpx.AsyncClient, org: Tenant, kind: str, body: dict[str, Any]
) -> None:
    body = {CONFIG_KEY[kind] if k == "kindConfig" else k: v for k, v in body.items()}
    created = await create(http, org, kind)
    url = f"{PATHS[kind]}/{created['publicId']}"
    r = await http.patch(url, json=body, headers=org.auth("readonly"))
    body_out = assert_error(r, 403, code="forbidden")
    assert "status" in body_out["message"]
    assert (await http.get(url, headers=org.auth())).json() == as_got(created)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("body", [{"status": "disabled"}, {"name": "x"}])
async def test_supporter_may_not_update(
    http: httpx.AsyncClient, org: Tenant, kind: str, body: dict[str, Any]
) -> None:
    created = await create(http, org, kind)
    url = f"{PATHS[kind]}/{created['publicId']}"
    assert_error(await http.patch(url, json=body, headers=org.auth("supporter")), 403)
    assert (await http.get(url, headers=org.auth())).json() == as_got(created)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", [*WRITERS, "readonly", "supporter"])
async def test_every_role_reads(http: httpx.AsyncClient, org: Tenant, kind: str, role: str) -> None:
    created = await create(http, org, kind)
    r = await http.get(f"{PATHS[kind]}/{created['publicId']}", headers=org.auth(role))
    assert r.status_code == 200 and r.json() == as_got(created)
    r = await http.get(PATHS[kind], params={"customerId": org.customer_id}, headers=org.auth(role))
    assert r.status_code == 200 and r.json()["items"] == [created]


@pytest.mark.parametrize("kind", KINDS)
async def test_supporter_reads_other_organizations(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, kind: str
) -> None:
    """A global supporter of another organization reads this one's monitors (one and list)."""
    helper = await make_tenant(pool, supporter=True)
    created = await create(http, tenant, kind)
    url = f"{PATHS[kind]}/{created['publicId']}"
    r = await http.get(url, headers=helper.auth("supporter"))
    assert r.status_code == 200 and r.json() == as_got(created)
    r = await http.get(
        PATHS[kind],
        params={"customerId": tenant.customer_public_id},
        headers=helper.auth("supporter"),
    )
    assert r.json()["items"] == [created] and r.json()["total"] == 1
    # ...but changes nothing there
    assert_error(
        await http.patch(url, json={"status": "disabled"}, headers=helper.auth("supporter")), 403
    )
    assert_error(await http.delete(url, headers=helper.auth("supporter")), 403)
    r = await http.post(PATHS[kind], json=seed_body(kind, tenant), headers=helper.auth("supporter"))
    assert_error(r, 403)
    assert (await http.get(url, headers=tenant.auth())).json() == as_got(created)


async def test_supporter_list_without_filter_spans_organizations(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    one, two = await make_tenant(pool), await make_tenant(pool)
    tag = f"span-{one.org_name}"
    a = await create(http, one, name=tag)
    b = await create(http, two, name=tag)
    helper = await make_tenant(pool, supporter=True)
    r = await http.get(
        "/api/smtp-monitors",
        params={"search": tag},
        headers=helper.auth("supporter"),
    )
    assert {m["publicId"] for m in r.json()["items"]} == {a["publicId"], b["publicId"]}
    assert {m["organizationId"] for m in r.json()["items"]} == {one.org_id, two.org_id}
    # a regular user of `one` sees only its own
    r = await http.get("/api/smtp-monitors", params={"search": tag}, headers=one.auth("readonly"))
    assert [m["publicId"] for m in r.json()["items"]] == [a["publicId"]]
