"""Round trips over Microsoft Graph through the API (issue 82): a leg's `api: graph` and the
mailbox's `cleanup` are taken, checked naming the field, stored, shown and put into the job."""

import copy
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from controller.scheduling.job_config import job_config
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.messages import RoundTripConfig
from tests.api.helpers import MASK, assert_error, stored_row
from tests.conftest import Tenant

RT = "/api/roundtrip-monitors"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRANT: dict[str, Any] = {
    "provider": "microsoft",
    "tenant": "contoso.onmicrosoft.com",
    "grant": "client_credentials",
    "clientId": "probe-app",
    "clientSecret": "app-secret",
}
CONFIG: dict[str, Any] = {
    "send": {
        "api": "graph",
        "hostname": "graph.microsoft.com",
        "port": 443,
        "auth": {"user": "sender@contoso.com", "oauth2": GRANT},
        "from": "sender@contoso.com",
    },
    "to": "probe@contoso.com",
    "receive": {
        "api": "graph",
        "hostname": "graph.microsoft.com",
        "user": "probe@contoso.com",
        "oauth2": GRANT,
        "folders": ["inbox"],
        "cleanup": "delete",
    },
}


def body(tenant: Tenant, **changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = config
        for p in parents:
            node = node[p]
        if value is ...:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return {
        "customerId": tenant.customer_public_id,
        "name": "Mail over Graph",
        "checkInterval": 300,
        "timeoutSeconds": 120,
        "roundtripConfig": config,
    }


async def test_a_graph_round_trip_is_stored_shown_and_put_into_the_job(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    r = await http.post(RT, json=body(tenant), headers=tenant.auth())
    assert r.status_code == 201, r.text
    shown = r.json()["roundtripConfig"]
    assert shown["send"]["api"] == shown["receive"]["api"] == "graph"
    assert shown["receive"]["cleanup"] == "delete"
    # The Graph scope is the grant's, said once it is stored; the secret stays write-only.
    for grant in (shown["send"]["auth"]["oauth2"], shown["receive"]["oauth2"]):
        assert grant["scopes"] == [GRAPH_SCOPE]
        assert grant["clientSecret"] == MASK
    got = await http.get(f"{RT}/{r.json()['publicId']}", headers=tenant.auth("readonly"))
    assert got.json()["roundtripConfig"] == shown
    # The job carries the legs' APIs as the agent reads them.
    row = await stored_row(pool, r.json()["publicId"])
    box = SecretBox(settings.secrets.secrets_key or "")
    config = job_config("roundtrip", row["config"], box)
    assert isinstance(config, RoundTripConfig)
    assert (config.send.api, config.receive.api, config.receive.cleanup) == (
        "graph",
        "graph",
        "delete",
    )
    # Sent back as shown, it is the same monitor.
    url = f"{RT}/{r.json()['publicId']}"
    again = await http.patch(url, json={"roundtripConfig": shown}, headers=tenant.auth())
    assert again.status_code == 200, again.text
    assert again.json()["roundtripConfig"] == shown


async def test_an_api_is_stored_lower_case(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post(
        RT, json=body(tenant, send__api=" Graph", receive__api="GRAPH "), headers=tenant.auth()
    )
    assert r.status_code == 201, r.text
    shown = r.json()["roundtripConfig"]
    assert (shown["send"]["api"], shown["receive"]["api"]) == ("graph", "graph")


async def test_an_smtp_and_imap_round_trip_shows_no_api(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    b = body(tenant, send__api=..., receive__api=..., receive__cleanup=...)
    b["roundtripConfig"]["send"]["auth"] = {"user": "sender@contoso.com", "pass": "pw"}
    b["roundtripConfig"]["receive"].pop("oauth2")
    b["roundtripConfig"]["receive"]["password"] = "pw"
    b["roundtripConfig"]["receive"]["folders"] = ["INBOX"]
    r = await http.post(RT, json=b, headers=tenant.auth())
    assert r.status_code == 201, r.text
    shown = r.json()["roundtripConfig"]
    assert (shown["send"]["api"], shown["receive"]["api"], shown["receive"]["cleanup"]) == (
        "",
        "",
        "",
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"send__api": "exchange"}, "roundtripConfig.send.api"),
        ({"receive__api": "imap"}, "roundtripConfig.receive.api"),
        # A Graph leg logs in with an app's client credentials only, never a password.
        ({"send__auth": {"user": "sender@contoso.com"}}, "roundtripConfig.send.auth.oauth2"),
        (
            {"send__auth": {"user": "sender@contoso.com", "pass": "pw", "oauth2": GRANT}},
            "roundtripConfig.send.auth.pass",
        ),
        ({"receive__oauth2": ...}, "roundtripConfig.receive.oauth2"),
        ({"receive__password": "pw"}, "roundtripConfig.receive.password"),
        (
            {"receive__oauth2": {**GRANT, "grant": "refresh_token", "refreshToken": "r"}},
            "roundtripConfig.receive.oauth2.grant",
        ),
        (
            {"receive__oauth2": {**GRANT, "scopes": ["https://outlook.office365.com/.default"]}},
            "roundtripConfig.receive.oauth2.scopes",
        ),
        ({"receive__protocol": "pop3"}, "roundtripConfig.receive.protocol"),
        ({"receive__cleanup": "purge"}, "roundtripConfig.receive.cleanup"),
        # `cleanup` is an API's: IMAP and POP3 mailboxes are cleaned as they always were.
        (
            {"receive__api": ..., "receive__oauth2": ..., "receive__password": "pw"},
            "roundtripConfig.receive.cleanup",
        ),
    ],
)
async def test_a_wrong_graph_leg_is_a_400_naming_the_field(
    http: httpx.AsyncClient, tenant: Tenant, changes: dict[str, Any], field: str
) -> None:
    r = await http.post(RT, json=body(tenant, **changes), headers=tenant.auth())
    assert_error(r, 400, fields=[field])


GOOGLE: dict[str, Any] = {
    "provider": "google",
    "grant": "refresh_token",
    "clientId": "probe-client",
    "clientSecret": "client-secret",
    "refreshToken": "refresh-secret",
}
GMAIL_SCOPE = "https://www.googleapis.com/auth/gmail.modify"


def gmail_body(tenant: Tenant, **receive: Any) -> dict[str, Any]:
    b = body(tenant)
    b["roundtripConfig"]["send"] = {
        "api": "gmail",
        "hostname": "gmail.googleapis.com",
        "auth": {"user": "sender@example.com", "oauth2": GOOGLE},
        "from": "sender@example.com",
    }
    b["roundtripConfig"]["to"] = "probe@example.com"
    b["roundtripConfig"]["receive"] = {
        "api": "gmail",
        "hostname": "gmail.googleapis.com",
        "user": "probe@example.com",
        "oauth2": GOOGLE,
        **receive,
    }
    return b


# A service account's key, as the JSON key file's `private_key` holds it.
SERVICE_ACCOUNT_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    .decode()
)


@pytest.mark.parametrize("login", ["refresh_token", "jwt_bearer"])
async def test_a_gmail_round_trip_asks_for_the_gmail_scope(
    http: httpx.AsyncClient, tenant: Tenant, login: str
) -> None:
    b = gmail_body(tenant)
    if login == "jwt_bearer":
        # A service account with domain-wide delegation, acting as the probe mailbox.
        b["roundtripConfig"]["receive"]["oauth2"] = {
            "provider": "google",
            "grant": "jwt_bearer",
            "clientId": "probe@project.iam.gserviceaccount.com",
            "privateKey": SERVICE_ACCOUNT_KEY,
            "subject": "probe@example.com",
        }
    r = await http.post(RT, json=b, headers=tenant.auth())
    assert r.status_code == 201, r.text
    shown = r.json()["roundtripConfig"]
    assert shown["send"]["api"] == shown["receive"]["api"] == "gmail"
    for grant in (shown["send"]["auth"]["oauth2"], shown["receive"]["oauth2"]):
        assert grant["scopes"] == [GMAIL_SCOPE]


@pytest.mark.parametrize(
    ("receive", "field"),
    [
        ({"cleanup": "delete"}, "roundtripConfig.receive.cleanup"),
        (
            {"oauth2": {**GOOGLE, "scopes": ["https://mail.google.com/"]}},
            "roundtripConfig.receive.oauth2.scopes",
        ),
        ({"oauth2": {**GRANT}}, "roundtripConfig.receive.oauth2.grant"),
    ],
)
async def test_a_wrong_gmail_leg_is_a_400_naming_the_field(
    http: httpx.AsyncClient, tenant: Tenant, receive: dict[str, Any], field: str
) -> None:
    r = await http.post(RT, json=gmail_body(tenant, **receive), headers=tenant.auth())
    assert_error(r, 400, fields=[field])
