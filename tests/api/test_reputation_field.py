"""`reputation` on SMTP monitors (issue 58): the outbound addresses and domains a user lists for
the blocklists. Public addresses only (a private one is a 400 naming it), domains as DNS names,
bounded per monitor and per organization (ORG_MAX_BLOCKLIST_NAMES, each name counted once over
the organization's monitors); shown only when set, so the seeds' bodies get the seeds' shape."""

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from controller.settings import ControllerSettings
from controller.web.app import create_app
from testkit.serving import http_client, serve_app
from tests.api.helpers import IMAP, SMTP, SMTP_KEYS, assert_error, minimal_body, seed_body
from tests.conftest import Tenant, make_tenant


async def test_listed_addresses_are_normalised_shown_and_cleared(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    listed = {"ips": ["81.2.69.160", "2a00:1450:4001:0829::200e", "81.2.69.160"]}
    body = seed_body("smtp", tenant, reputation={**listed, "domains": ["Bücher.Example."]})
    r = await http.post(SMTP, json=body, headers=tenant.auth())
    assert r.status_code == 201, r.text
    assert set(r.json()) == SMTP_KEYS | {"reputation"}
    assert r.json()["reputation"] == {
        "ips": ["81.2.69.160", "2a00:1450:4001:829::200e"],
        "domains": ["xn--bcher-kva.example"],
    }
    url = f"{SMTP}/{r.json()['publicId']}"
    got = (await http.get(url, headers=tenant.auth())).json()
    assert got["reputation"] == r.json()["reputation"]
    r = await http.patch(url, json={"reputation": {"domains": []}}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert "reputation" not in r.json()  # nothing listed: the seeds' shape again
    r = await http.patch(url, json={"reputation": {"ips": ["81.2.69.161"]}}, headers=tenant.auth())
    assert r.json()["reputation"] == {"ips": ["81.2.69.161"], "domains": []}
    r = await http.patch(url, json={"reputation": None}, headers=tenant.auth())
    assert "reputation" not in r.json()


async def test_the_seed_body_keeps_the_seed_shape(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post(SMTP, json=seed_body("smtp", tenant), headers=tenant.auth())
    assert set(r.json()) == SMTP_KEYS


@pytest.mark.parametrize(
    ("listed", "field"),
    [
        ({"ips": ["10.1.2.3"]}, "reputation.ips[0]"),
        ({"ips": ["81.2.69.160", "127.0.0.2"]}, "reputation.ips[1]"),
        ({"ips": ["192.0.2.7"]}, "reputation.ips[0]"),  # documentation range
        ({"ips": ["fd00::1"]}, "reputation.ips[0]"),
        ({"ips": ["::ffff:10.0.0.1"]}, "reputation.ips[0]"),
        ({"ips": ["mx.example.com"]}, "reputation.ips[0]"),
        ({"ips": ["81.2.69.0/24"]}, "reputation.ips[0]"),
        ({"domains": ["81.2.69.160"]}, "reputation.domains[0]"),
        ({"domains": ["localhost"]}, "reputation.domains[0]"),
        ({"domains": ["https://x.example"]}, "reputation.domains[0]"),
        ({"domains": [""]}, "reputation.domains[0]"),
        ({"ips": [f"81.2.69.{i}" for i in range(9)]}, "reputation.ips"),
        ({"domains": [f"d{i}.example" for i in range(5)]}, "reputation.domains"),
        ({"ips": "81.2.69.160"}, "reputation.ips"),
        ({"hosts": []}, "reputation.hosts"),
    ],
)
async def test_what_is_no_public_address_or_domain_is_a_400_naming_it(
    http: httpx.AsyncClient, tenant: Tenant, listed: dict[str, Any], field: str
) -> None:
    r = await http.post(SMTP, json=minimal_body(tenant, reputation=listed), headers=tenant.auth())
    assert_error(r, 400, fields=[field])


async def test_only_smtp_monitors_take_it_and_readonly_users_cannot_set_it(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    listed = {"ips": ["81.2.69.160"]}
    r = await http.post(IMAP, json=minimal_body(tenant, reputation=listed), headers=tenant.auth())
    assert_error(r, 400, fields=["reputation"])
    r = await http.post(SMTP, json=minimal_body(tenant), headers=tenant.auth())
    url = f"{SMTP}/{r.json()['publicId']}"
    r = await http.patch(url, json={"reputation": listed}, headers=tenant.auth("readonly"))
    assert r.status_code == 403


@pytest.fixture(scope="module")
async def limited(settings: ControllerSettings, pool: asyncpg.Pool) -> AsyncIterator[str]:
    """The API with ORG_MAX_BLOCKLIST_NAMES at 3."""
    low = settings.replace(org_max_blocklist_names=3)
    async with serve_app(create_app(low, pool)) as url:
        yield url


async def test_an_organization_lists_at_most_its_limit_of_names_counted_once(
    limited: str, pool: asyncpg.Pool
) -> None:
    org = await make_tenant(pool)
    async with http_client(base_url=limited, timeout=10) as api:

        async def post(**listed: list[str]) -> httpx.Response:
            body = minimal_body(org, reputation=listed)
            return await api.post(SMTP, json=body, headers=org.auth())

        first = await post(ips=["81.2.69.160", "81.2.69.161"], domains=["mail.example"])
        assert first.status_code == 201, first.text
        # The same names on another monitor count once.
        assert (await post(ips=["81.2.69.161"], domains=["mail.example"])).status_code == 201
        error = assert_error(await post(ips=["81.2.69.162"]), 403, code="blocklist_name_limit")
        assert "limit of 3 (ORG_MAX_BLOCKLIST_NAMES" in error["message"]
        assert error["fields"] == ["reputation"]
        # Shrinking makes room; another organization has its own count.
        url = f"{SMTP}/{first.json()['publicId']}"
        r = await api.patch(url, json={"reputation": {"ips": []}}, headers=org.auth())
        assert r.status_code == 200, r.text
        assert (await post(ips=["81.2.69.162"])).status_code == 201
        other = await make_tenant(pool)
        body = minimal_body(other, reputation={"ips": ["81.2.69.163", "81.2.69.164"]})
        assert (await api.post(SMTP, json=body, headers=other.auth())).status_code == 201
