"""`dependsOn`: what a monitor declares it depends on (monitors of the organization, host
names), so its outages join theirs in one incident. Normalised, shown only when set, cleared
with null or []; a 400 naming the field for a host that is no host, too many entries, the
monitor itself, or a monitor id of another organization (never telling it exists)."""

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import PATHS, assert_error, minimal_body
from tests.conftest import Tenant, make_tenant


async def created(http: httpx.AsyncClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    r = await http.post(PATHS["smtp"], json=minimal_body(tenant, **body), headers=tenant.auth())
    assert r.status_code == 201, r.text
    found: dict[str, Any] = r.json()
    return found


async def test_depends_on_is_set_normalised_shown_and_cleared(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    imap = await created(http, tenant, name="IMAP")
    assert "dependsOn" not in imap  # the seeds' shape when nothing is declared
    trip_id = imap["publicId"].upper()
    m = await created(
        http, tenant, dependsOn=[trip_id, "Mail.Bücher.Example.", "mail.xn--bcher-kva.example"]
    )
    assert m["dependsOn"] == [imap["publicId"], "mail.xn--bcher-kva.example"]
    url = f"{PATHS['smtp']}/{m['publicId']}"
    assert (await http.get(url, headers=tenant.auth())).json()["dependsOn"] == m["dependsOn"]
    r = await http.patch(url, json={"dependsOn": []}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert "dependsOn" not in r.json()


@pytest.mark.parametrize(
    "declared",
    [
        ["https://mail.example.com"],
        ["mail example.com"],
        ["a" * 254],
        [f"host{n}.example.com" for n in range(21)],
        [str(uuid.uuid4())],  # no such monitor
        "mail.example.com",  # not a list
        [7],
    ],
)
async def test_what_is_no_dependency_is_400_naming_depends_on(
    http: httpx.AsyncClient, tenant: Tenant, declared: Any
) -> None:
    r = await http.post(
        PATHS["smtp"], json=minimal_body(tenant, dependsOn=declared), headers=tenant.auth()
    )
    assert_error(r, 400)
    assert any("dependsOn" in f for f in r.json()["fields"]), r.json()


async def test_a_monitor_cannot_depend_on_itself(http: httpx.AsyncClient, tenant: Tenant) -> None:
    m = await created(http, tenant)
    url = f"{PATHS['smtp']}/{m['publicId']}"
    r = await http.patch(url, json={"dependsOn": [m["publicId"]]}, headers=tenant.auth())
    assert_error(r, 400, fields=["dependsOn"])


async def test_another_organizations_monitor_reads_as_no_monitor(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    other = await make_tenant(pool)
    theirs = await created(http, other)
    r = await http.post(
        PATHS["smtp"],
        json=minimal_body(tenant, dependsOn=[theirs["publicId"]]),
        headers=tenant.auth(),
    )
    assert_error(r, 400, fields=["dependsOn"])
    missing = await http.post(
        PATHS["smtp"],
        json=minimal_body(tenant, dependsOn=[str(uuid.uuid4())]),
        headers=tenant.auth(),
    )
    # The same words whether the monitor is another organization's or does not exist.
    assert (
        r.json()["message"].split(" has the id")[0]
        == missing.json()["message"].split(" has the id")[0]
    )


async def test_readonly_users_cannot_declare_dependencies(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    m = await created(http, tenant)
    url = f"{PATHS['smtp']}/{m['publicId']}"
    r = await http.patch(
        url, json={"dependsOn": ["mx.example.com"]}, headers=tenant.auth("readonly")
    )
    assert r.status_code == 403
