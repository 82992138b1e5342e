"""Every paged list of the API answers newest first, as docs/api.md says of lists ("they answer
`{"items", "total", "page", "perPage"}`, newest first"), and pages through without a repeat or a
gap: a consumer who learnt the order on one list meets it on the next."""

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Tenant, make_tenant

Make = Callable[[httpx.AsyncClient, Tenant, int], Awaitable[str]]


async def _created(r: httpx.Response, key: str = "publicId") -> str:
    assert r.status_code == 201, r.text
    return str(r.json()[key])


async def smtp_monitor(http: httpx.AsyncClient, tenant: Tenant, n: int) -> str:
    body = {"customerId": tenant.customer_id, "name": f"m{n}", "hostname": "mx.example.com"}
    return await _created(await http.post("/api/smtp-monitors", json=body, headers=tenant.auth()))


async def customer(http: httpx.AsyncClient, tenant: Tenant, n: int) -> str:
    r = await http.post("/api/customers", json={"name": f"c{n}"}, headers=tenant.auth())
    return await _created(r)


async def user(http: httpx.AsyncClient, tenant: Tenant, n: int) -> str:
    body = {"email": f"u{n}-{tenant.org_name}@example.com", "password": "long enough pw"}
    return await _created(await http.post("/api/users", json=body, headers=tenant.auth()))


async def channel(http: httpx.AsyncClient, tenant: Tenant, n: int) -> str:
    body = {"name": f"ch{n}", "kind": "slack", "url": f"https://hooks.slack.com/services/T/B/{n}"}
    r = await http.post("/api/notification-channels", json=body, headers=tenant.auth())
    return await _created(r, "id")


async def maintenance_window(http: httpx.AsyncClient, tenant: Tenant, n: int) -> str:
    body = {
        "customerId": tenant.customer_public_id,
        "startsAt": f"2030-01-0{n + 1}T00:00:00Z",
        "endsAt": f"2030-01-0{n + 1}T01:00:00Z",
    }
    r = await http.post("/api/maintenance-windows", json=body, headers=tenant.auth())
    return await _created(r, "id")


LISTS: list[tuple[str, Make, str]] = [
    ("/api/smtp-monitors", smtp_monitor, "publicId"),
    ("/api/customers", customer, "publicId"),
    ("/api/users", user, "publicId"),
    ("/api/notification-channels", channel, "id"),
    ("/api/maintenance-windows", maintenance_window, "id"),
]


@pytest.mark.parametrize(("path", "make", "key"), LISTS, ids=[p for p, _, _ in LISTS])
async def test_a_list_is_newest_first_and_pages_through(
    http: httpx.AsyncClient, pool: asyncpg.Pool, path: str, make: Make, key: str
) -> None:
    tenant = await make_tenant(pool)
    made = [await make(http, tenant, n) for n in range(3)]

    async def page(**params: Any) -> dict[str, Any]:
        r = await http.get(path, params=params, headers=tenant.auth())
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    whole = await page()
    listed = [str(item[key]) for item in whole["items"]]
    ours = [i for i in listed if i in made]  # users and customers made with the tenant too
    assert ours == made[::-1], (path, listed, made)
    one_by_one = []
    for n in range(1, whole["total"] + 2):
        got = await page(page=n, perPage=1)
        assert got["total"] == whole["total"] and got["perPage"] == 1 and got["page"] == n
        one_by_one += [str(item[key]) for item in got["items"]]
    assert one_by_one == listed  # the last page past the end is empty, nothing repeated
