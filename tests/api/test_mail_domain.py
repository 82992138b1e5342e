"""`mailDomain`: the domain whose mail DNS the agents check. Stored as a normalised domain,
never derived from the hostname, cleared with null or "", a 400 naming it when not a domain;
readonly users cannot set it."""

from typing import Any

import httpx
import pytest

from tests.api.helpers import PATHS, assert_error, minimal_body
from tests.conftest import Tenant


@pytest.mark.parametrize("kind", ["smtp", "imap"])
async def test_mail_domain_is_set_normalised_and_cleared(
    http: httpx.AsyncClient, tenant: Tenant, kind: str
) -> None:
    r = await http.post(PATHS[kind], json=minimal_body(tenant), headers=tenant.auth())
    assert r.status_code == 201, r.text
    assert "mailDomain" not in r.json()  # none: not derived from mx.example.com, not shown
    url = f"{PATHS[kind]}/{r.json()['publicId']}"
    r = await http.patch(url, json={"mailDomain": "Bücher.Example."}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert r.json()["mailDomain"] == "xn--bcher-kva.example"
    assert (await http.get(url, headers=tenant.auth())).json()["mailDomain"] == (
        "xn--bcher-kva.example"
    )
    r = await http.patch(url, json={"mailDomain": ""}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert "mailDomain" not in r.json()  # cleared: left out, as the seeds' answers have none


@pytest.mark.parametrize(
    "domain", ["192.0.2.1", "[2001:db8::1]", "localhost", "a b.example", "https://x.example", 7]
)
async def test_a_mail_domain_that_is_not_a_domain_is_400_naming_it(
    http: httpx.AsyncClient, tenant: Tenant, domain: Any
) -> None:
    r = await http.post(
        PATHS["smtp"], json=minimal_body(tenant, mailDomain=domain), headers=tenant.auth()
    )
    assert_error(r, 400, fields=["mailDomain"])


async def test_readonly_users_cannot_set_the_mail_domain(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await http.post(PATHS["smtp"], json=minimal_body(tenant), headers=tenant.auth())
    url = f"{PATHS['smtp']}/{r.json()['publicId']}"
    r = await http.patch(url, json={"mailDomain": "example.com"}, headers=tenant.auth("readonly"))
    assert r.status_code == 403
