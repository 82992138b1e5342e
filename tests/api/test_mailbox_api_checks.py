"""IMAP/POP3 monitors that watch a mailbox over Microsoft Graph or the Gmail API (issue 82): the
monitor's `imapPopConfig.api` is taken, checked naming the field, stored, shown, put into the
job with the features it needs, and goes through apply and export."""

import copy
from typing import Any

import asyncpg
import httpx
import pytest

from controller.monitors import mailbox_apis
from controller.scheduling.job_config import job_config
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.messages import FEATURE_API_MAILBOX, FEATURE_GRAPH, ImapPopConfig
from tests.api.helpers import IMAP, MASK, assert_error, stored_row
from tests.conftest import Tenant

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GMAIL_READ = "https://www.googleapis.com/auth/gmail.readonly"
GRANT: dict[str, Any] = {
    "provider": "microsoft",
    "tenant": "contoso.onmicrosoft.com",
    "grant": "client_credentials",
    "clientId": "probe-app",
    "clientSecret": "app-secret",
}
GOOGLE: dict[str, Any] = {
    "provider": "google",
    "grant": "refresh_token",
    "clientId": "probe-client",
    "clientSecret": "client-secret",
    "refreshToken": "refresh-secret",
}


def body(tenant: Tenant, **config: Any) -> dict[str, Any]:
    imap: dict[str, Any] = {"api": "graph", "user": "probe@contoso.com", "oauth2": GRANT}
    for key, value in config.items():
        if value is ...:
            imap.pop(key, None)
        else:
            imap[key] = value
    return {
        "customerId": tenant.customer_public_id,
        "name": "Inbox over Graph",
        "checkInterval": 300,
        "imapPopConfig": copy.deepcopy(imap),
    }


async def test_a_graph_mailbox_check_is_stored_shown_and_put_into_the_job(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    r = await http.post(IMAP, json=body(tenant), headers=tenant.auth())
    assert r.status_code == 201, r.text
    made = r.json()
    # No host given: Graph's public one; the port is HTTPS's when the agent runs it.
    assert made["hostname"] == "graph.microsoft.com"
    shown = made["imapPopConfig"]
    assert shown["api"] == "graph"
    assert shown["oauth2"]["scopes"] == [GRAPH_SCOPE]
    assert shown["oauth2"]["clientSecret"] == MASK
    got = await http.get(f"{IMAP}/{made['publicId']}", headers=tenant.auth("readonly"))
    assert got.json()["imapPopConfig"] == shown
    row = await stored_row(pool, made["publicId"])
    config = job_config("imap", row["config"], SecretBox(settings.secrets.secrets_key or ""))
    assert isinstance(config, ImapPopConfig) and config.api == "graph"
    assert mailbox_apis.features(config) == [FEATURE_GRAPH, FEATURE_API_MAILBOX]
    again = await http.patch(
        f"{IMAP}/{made['publicId']}", json={"imapPopConfig": shown}, headers=tenant.auth()
    )
    assert again.status_code == 200, again.text
    assert again.json()["imapPopConfig"] == shown


async def test_a_gmail_mailbox_check_asks_only_to_read(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    b = body(tenant, api="GMail ", oauth2=GOOGLE, user="probe@example.com")
    r = await http.post(IMAP, json=b, headers=tenant.auth())
    assert r.status_code == 201, r.text
    assert r.json()["hostname"] == "gmail.googleapis.com"
    shown = r.json()["imapPopConfig"]
    assert (shown["api"], shown["oauth2"]["scopes"]) == ("gmail", [GMAIL_READ])


async def test_a_mailbox_check_keeps_the_host_it_is_given(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    b = {**body(tenant), "hostname": "graph.microsoft.us", "port": 8443}
    r = await http.post(IMAP, json=b, headers=tenant.auth())
    assert r.status_code == 201, r.text
    assert (r.json()["hostname"], r.json()["port"]) == ("graph.microsoft.us", 8443)


async def test_an_imap_check_without_api_still_needs_its_host(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    b = body(tenant, api=..., oauth2=..., password="pw")
    r = await http.post(IMAP, json=b, headers=tenant.auth())
    assert_error(r, 400, fields=["hostname"])


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"api": "exchange"}, "imapPopConfig.api"),
        ({"protocol": "pop3"}, "imapPopConfig.protocol"),
        ({"oauth2": ...}, "imapPopConfig.oauth2"),
        ({"password": "pw"}, "imapPopConfig.password"),
        ({"user": ...}, "imapPopConfig.user"),
        (
            {"oauth2": {**GRANT, "grant": "refresh_token", "refreshToken": "r"}},
            "imapPopConfig.oauth2.grant",
        ),
        (
            {"oauth2": {**GRANT, "scopes": ["https://outlook.office365.com/.default"]}},
            "imapPopConfig.oauth2.scopes",
        ),
        (
            {"api": "gmail", "oauth2": {**GOOGLE, "scopes": [mailbox_apis.GMAIL_SCOPE]}},
            "imapPopConfig.oauth2.scopes",
        ),
    ],
)
async def test_a_wrong_mailbox_check_is_a_400_naming_the_field(
    http: httpx.AsyncClient, tenant: Tenant, changes: dict[str, Any], field: str
) -> None:
    r = await http.post(IMAP, json=body(tenant, **changes), headers=tenant.auth())
    assert_error(r, 400, fields=[field])
