"""A monitor with an OAuth2 login (set through the native API) read and written through the
AlertSite API: AlertSite has no field for a grant, so GET shows none of it (`password` null,
never a secret), a PATCH of any field, or of the whole object GET answered, keeps the grant and
its sealed secrets, and what AlertSite's fields cannot say is a 400 naming the field, never a
grant lost or turned into a password login."""

from typing import Any

import asyncpg
import httpx
import pytest

from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from tests.alertsite.helpers import V3, as_error, stored
from tests.api.helpers import opened
from tests.conftest import Tenant

SECRET = "Grant-Secret-4711"
USER = "probe@contoso.com"
GRANT = {
    "grant": "client_credentials",
    "provider": "microsoft",
    "tenant": "contoso.onmicrosoft.com",
    "clientId": "app",
    "clientSecret": SECRET,
}


async def _native(http: httpx.AsyncClient, tenant: Tenant, kind: str) -> str:
    """A monitor with an OAuth2 login made through the native API; its AlertSite id."""
    if kind == "email-smtp":
        path = "/api/smtp-monitors"
        config: dict[str, Any] = {
            "smtpConfig": {"secure": True, "auth": {"user": USER, "oauth2": GRANT}}
        }
    else:
        path = "/api/imap-pop-monitors"
        protocol = "imap" if kind == "email-imap" else "pop3"
        config = {
            "imapPopConfig": {"protocol": protocol, "tls": True, "user": USER, "oauth2": GRANT}
        }
    r = await http.post(
        path,
        headers=tenant.auth(),
        json={
            "customerId": tenant.customer_id,
            "name": "Mailbox",
            "hostname": "outlook.office365.com",
            **config,
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _grant(row: asyncpg.Record) -> dict[str, Any]:
    config = row["config"]
    grant: dict[str, Any] = (config.get("auth") or {}).get("oauth2") or config.get("oauth2")
    assert grant is not None, config
    return grant


@pytest.mark.parametrize("kind", ["email-smtp", "email-imap", "email-pop"])
async def test_an_oauth2_login_is_neither_shown_nor_lost_through_alertsite(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    settings: ControllerSettings,
    kind: str,
) -> None:
    monitor_id = await _native(http, tenant, kind)
    box = SecretBox(settings.secrets.secrets_key or "")
    before = _grant(await stored(pool, monitor_id))

    r = await http.get(f"{V3}/monitors/{monitor_id}", headers=tenant.auth())
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["login"] == USER and got["password"] is None and got["ssl"] is True
    assert SECRET not in r.text and "oauth2" not in r.text and "clientSecret" not in r.text
    listed = await http.get(f"{V3}/monitors", headers=tenant.auth())
    assert SECRET not in listed.text and "clientSecret" not in listed.text

    url = f"{V3}/monitors/{kind}/{monitor_id}"
    for change in (got, {"name": "Renamed", "enabled": False}, {"ssl": True, "login": USER}):
        r = await http.patch(url, json=change, headers=tenant.auth())
        assert r.status_code == 200, (change, r.text)
        after = await stored(pool, monitor_id)
        assert _grant(after) == before, change
        assert opened(box, _grant(after)["clientSecret"]) == SECRET
        assert not (after["config"].get("auth") or after["config"]).get("password")
    assert (await stored(pool, monitor_id))["status"] == "disabled"

    # A password beside the grant, a grant moved to another mailbox or server: AlertSite's
    # fields cannot send the grant's secrets again, so these are refused, the grant kept.
    for change, field in (
        ({"password": "a-password"}, "password"),
        ({"login": "other@contoso.com"}, "login"),
        ({"hostname": "imap.example.net"}, "hostname"),
    ):
        r = await http.patch(url, json=change, headers=tenant.auth())
        message = as_error(r, 400)
        assert "OAuth2" in message and field in message, (change, message)
        assert _grant(await stored(pool, monitor_id)) == before
