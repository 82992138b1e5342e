"""Round-trip monitors (issue 14) over HTTP: shape, secrets of both legs (write-only, sealed,
each bound to its own server), validation naming the field, roles, tenancy, type isolation and
the shared sub-resources."""

import copy
from typing import Any

import asyncpg
import httpx
import pytest

from controller.scheduling.job_config import job_config
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.messages import RoundTripConfig, SmtpAuth
from shared.secret import Secret
from tests.api.helpers import COMMON_KEYS, IMAP, MASK, SMTP, assert_error, opened, stored_row
from tests.conftest import Tenant, make_tenant

RT = "/api/roundtrip-monitors"
RT_KEYS = COMMON_KEYS | {"roundtripConfig"}
CONFIG: dict[str, Any] = {
    "send": {
        "hostname": "smtp.example.com",
        "port": 587,
        "requireTls": True,
        "auth": {"user": "probe@example.com", "pass": "send-secret"},
        "from": "probe@example.com",
    },
    "to": "probe@example.net",
    "receive": {
        "protocol": "imap",
        "hostname": "imap.example.net",
        "port": 993,
        "tls": True,
        "user": "probe@example.net",
        "password": "mailbox-secret",
        "folders": ["INBOX", "Junk"],
        "spamFolders": ["Junk"],
    },
    "slowAfterSeconds": 60,
    "spamIsFailure": True,
}


def body(tenant: Tenant, **config_changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    for path, value in config_changes.items():
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
        "name": "Mail arrives",
        "checkInterval": 300,
        "timeoutSeconds": 120,
        "roundtripConfig": config,
    }


async def make(http: httpx.AsyncClient, tenant: Tenant, **changes: Any) -> dict[str, Any]:
    r = await http.post(RT, json=body(tenant, **changes), headers=tenant.auth())
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def test_create_masks_both_secrets_and_seals_them_at_rest(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    created = await make(http, tenant)
    assert set(created) == RT_KEYS
    assert (created["hostname"], created["port"]) == ("smtp.example.com", 587)
    shown = created["roundtripConfig"]
    assert created["config"] == shown
    assert shown["send"]["auth"] == {"user": "probe@example.com", "pass": MASK}
    assert shown["send"]["hostname"] == "smtp.example.com" and shown["send"]["from"]
    assert shown["receive"]["password"] == MASK
    assert shown["receive"]["folders"] == ["INBOX", "Junk"]
    assert (shown["slowAfterSeconds"], shown["spamIsFailure"]) == (60, True)
    row = await stored_row(pool, created["publicId"])
    assert row["type"] == "roundtrip"
    assert "send-secret" not in row["config_text"] and "mailbox-secret" not in row["config_text"]
    box = SecretBox(settings.secrets.secrets_key or "")
    assert opened(box, row["config"]["send"]["auth"]["pass"]) == "send-secret"
    assert opened(box, row["config"]["receive"]["password"]) == "mailbox-secret"
    got = await http.get(f"{RT}/{created['publicId']}", headers=tenant.auth("readonly"))
    assert got.status_code == 200
    assert got.json() == {**created, "latestResults": []}
    listed = await http.get(RT, headers=tenant.auth("readonly"))
    assert [m["publicId"] for m in listed.json()["items"]] == [created["publicId"]]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"send__hostname": ...}, "roundtripConfig.send.hostname"),
        ({"send__hostname": "bad host"}, "roundtripConfig.send.hostname"),
        ({"send__port": 70000}, "roundtripConfig.send.port"),
        ({"send__from": "not-an-address"}, "roundtripConfig.send.from"),
        ({"to": ...}, "roundtripConfig.to"),
        ({"to": "root"}, "roundtripConfig.to"),
        ({"to": "a@example.net,b@example.org"}, "roundtripConfig.to"),
        ({"to": "a@example.net\r\nBcc: victim@example.org"}, "roundtripConfig.to"),
        ({"send__from": "a@example.net\nBcc: victim@example.org"}, "roundtripConfig.send.from"),
        ({"receive__hostname": ...}, "roundtripConfig.receive.hostname"),
        ({"receive__port": 0}, "roundtripConfig.receive.port"),
        ({"receive__protocol": "smtp"}, "roundtripConfig.receive.protocol"),
        ({"receive__password": ...}, "roundtripConfig.receive.password"),
        ({"receive__user": ""}, "roundtripConfig.receive.user"),
        ({"receive__spamFolders": ["Spam"]}, "roundtripConfig.receive.spamFolders"),
        ({"receive__folders": []}, "roundtripConfig.receive.folders"),
        ({"receive__folders": ['IN"BOX']}, "roundtripConfig.receive.folders"),
        ({"receive__folders": ["INBOX\r\nA1 DELETE INBOX"]}, "roundtripConfig.receive.folders"),
        ({"receive__folders": ["Unerwünscht"]}, "roundtripConfig.receive.folders"),
        (
            {"receive__protocol": "pop3", "receive__spamFolders": ...},
            "roundtripConfig.receive.folders",
        ),
        ({"slowAfterSeconds": 0}, "roundtripConfig.slowAfterSeconds"),
        ({"spamIsFailure": "yes"}, "roundtripConfig.spamIsFailure"),
        ({"receive__imapHost": "x"}, "roundtripConfig.receive.imapHost"),
        # Issue 22: a round trip mails only its own mailbox, from its own sender.
        ({"to": "victim@victim.example"}, "roundtripConfig.to"),
        ({"send__from": "ceo@bank.example"}, "roundtripConfig.send.from"),
    ],
)
async def test_invalid_config_is_a_400_naming_the_field(
    http: httpx.AsyncClient, tenant: Tenant, changes: dict[str, Any], field: str
) -> None:
    r = await http.post(RT, json=body(tenant, **changes), headers=tenant.auth())
    assert_error(r, 400, fields=[field])


async def test_missing_config_and_top_level_server_are_400s(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    b = body(tenant)
    del b["roundtripConfig"]
    assert_error(
        await http.post(RT, json=b, headers=tenant.auth()), 400, fields=["roundtripConfig"]
    )
    b = {**body(tenant), "hostname": "smtp.example.com"}
    assert_error(await http.post(RT, json=b, headers=tenant.auth()), 400, fields=["hostname"])


async def test_pop3_mailbox_reads_only_the_inbox(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await make(
        http, tenant, receive__protocol="pop3", receive__folders=..., receive__spamFolders=...
    )
    receive = created["roundtripConfig"]["receive"]
    assert (receive["protocol"], receive["folders"], receive["spamFolders"]) == (
        "pop3",
        ["INBOX"],
        [],
    )


async def test_a_blank_sender_is_none_and_the_monitor_stays_readable(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    """`send.from: ""` was stored as null, which the stored config cannot hold: the create and
    every later list of round trips answered 500 (found by schemathesis)."""
    created = await make(http, tenant, send__from="")
    unsent = await make(http, tenant, send__from=...)
    assert created["roundtripConfig"]["send"] == unsent["roundtripConfig"]["send"]
    r = await http.get(RT, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert created["publicId"] in [m["publicId"] for m in r.json()["items"]]


async def test_a_null_send_user_and_password_are_none_and_the_monitor_stays_readable(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """`send.auth.user`/`pass: null` (no login on the send leg) were stored as null, which the
    typed Monitor could not read: the create, and every later list of the organization's round
    trips, answered 500, and no round of the monitor ran."""
    # Without a send login, the sender is in the recipient's domain (roundtrip_rules).
    created = await make(
        http, tenant, send__auth={"user": None, "pass": None}, send__from="probe@example.net"
    )
    assert created["roundtripConfig"]["send"]["auth"] == {"user": "", "pass": ""}
    r = await http.get(RT, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert created["publicId"] in [m["publicId"] for m in r.json()["items"]]
    row = await stored_row(pool, created["publicId"])
    config = job_config("roundtrip", row["config"], SecretBox(settings.secrets.secrets_key or ""))
    assert isinstance(config, RoundTripConfig) and config.send.auth == SmtpAuth("", Secret(""))


def masked(config: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(config)
    out["send"]["auth"]["pass"] = MASK
    out["receive"]["password"] = MASK
    return out


@pytest.mark.parametrize(
    ("leg", "key", "value", "secret", "moved"),
    [
        ("send", "hostname", "evil.example", "send.auth.pass", "send.hostname"),
        ("send", "port", 2525, "send.auth.pass", "send.port"),
        ("send", "requireTls", False, "send.auth.pass", "send.requireTls"),
        ("receive", "hostname", "evil.example", "receive.password", "receive.hostname"),
        ("receive", "user", "other@example.net", "receive.password", "receive.user"),
        ("receive", "tls", False, "receive.password", "receive.tls"),
        ("receive", "protocol", "pop3", "receive.password", "receive.protocol"),
    ],
)
async def test_each_secret_is_bound_to_its_own_leg(
    http: httpx.AsyncClient,
    tenant: Tenant,
    leg: str,
    key: str,
    value: Any,
    secret: str,
    moved: str,
) -> None:
    """A member moving one leg's server (or its TLS, user, protocol) while sending that leg's
    mask gets a 400 naming that leg's secret; sending that secret again is allowed, and the
    other leg's mask then keeps its secret."""
    created = await make(http, tenant)
    url = f"{RT}/{created['publicId']}"
    config = masked(CONFIG)
    config[leg][key] = value
    if key == "protocol":
        config["receive"]["folders"], config["receive"]["spamFolders"] = ["INBOX"], []
    r = await http.patch(url, json={"roundtripConfig": config}, headers=tenant.auth("member"))
    error = assert_error(r, 400, fields=[f"roundtripConfig.{secret}"], code="secret_required")
    assert f"roundtripConfig.{moved}" in error["message"]
    if leg == "send":
        config["send"]["auth"]["pass"] = "new-send-secret"
    else:
        config["receive"]["password"] = "new-mailbox-secret"
    r = await http.patch(url, json={"roundtripConfig": config}, headers=tenant.auth("member"))
    assert r.status_code == 200, r.text


async def test_moving_both_legs_names_both_secrets(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await make(http, tenant)
    config = masked(CONFIG)
    config["send"]["hostname"] = config["receive"]["hostname"] = "evil.example"
    r = await http.patch(
        f"{RT}/{created['publicId']}", json={"roundtripConfig": config}, headers=tenant.auth()
    )
    fields = ["roundtripConfig.send.auth.pass", "roundtripConfig.receive.password"]
    assert_error(r, 400, fields=fields, code="secret_required")


async def test_unbound_changes_keep_both_secrets_with_masks(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """Folders and timings are not where a secret goes: masks keep both secrets. (The recipient
    used to be changeable here too; it is bound to the send password now, see
    test_the_recipient_and_sender_are_bound_to_the_send_password.)"""
    created = await make(http, tenant)
    config = masked(CONFIG)
    config["receive"]["folders"] = ["INBOX", "Junk", "Archive"]
    config["slowAfterSeconds"] = 30
    r = await http.patch(
        f"{RT}/{created['publicId']}", json={"roundtripConfig": config}, headers=tenant.auth()
    )
    assert r.status_code == 200, r.text
    row = await stored_row(pool, created["publicId"])
    box = SecretBox(settings.secrets.secrets_key or "")
    assert opened(box, row["config"]["send"]["auth"]["pass"]) == "send-secret"
    assert opened(box, row["config"]["receive"]["password"]) == "mailbox-secret"
    assert row["config"]["receive"]["folders"] == ["INBOX", "Junk", "Archive"]


@pytest.mark.parametrize(
    ("change", "moved"),
    [
        ({"to": "someone-else@example.net"}, "roundtripConfig.to"),
        ({"send": {"from": "ceo@example.com"}}, "roundtripConfig.send.from"),
    ],
)
async def test_the_recipient_and_sender_are_bound_to_the_send_password(
    http: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool,
    change: dict[str, Any],
    moved: str,
) -> None:
    """With only the masks, a member cannot make the owner's relay account mail the probe to
    an address (or from a sender) of the member's choosing: 400 naming the send password;
    sending that password again allows it, and the mailbox password's mask still keeps it."""
    created = await make(http, tenant)
    url = f"{RT}/{created['publicId']}"
    config = masked(CONFIG)
    for key, value in change.items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    r = await http.patch(url, json={"roundtripConfig": config}, headers=tenant.auth("member"))
    error = assert_error(r, 400, fields=["roundtripConfig.send.auth.pass"], code="secret_required")
    assert moved in error["message"]
    row = await stored_row(pool, created["publicId"])
    assert row["config"]["to"] == CONFIG["to"]
    assert row["config"]["send"]["from"] == CONFIG["send"]["from"]

    config["send"]["auth"]["pass"] = "new-send-secret"
    r = await http.patch(url, json={"roundtripConfig": config}, headers=tenant.auth("member"))
    assert r.status_code == 200, r.text


async def test_roles_tenancy_and_type_isolation(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    r = await http.post(RT, json=body(tenant), headers=tenant.auth("readonly"))
    assert r.status_code == 403, r.text
    created = await make(http, tenant)
    pid = created["publicId"]
    other = await make_tenant(pool)
    for method in ("get", "delete"):
        r = await getattr(http, method)(f"{RT}/{pid}", headers=other.auth())
        assert r.status_code == 404, (method, r.text)
    r = await http.patch(f"{RT}/{pid}", json={"name": "x"}, headers=other.auth())
    assert r.status_code == 404
    for path in (SMTP, IMAP):
        assert (await http.get(f"{path}/{pid}", headers=tenant.auth())).status_code == 404
    assert (await http.get(f"{RT}/{pid}/results", headers=other.auth())).status_code == 404
    r = await http.delete(f"{RT}/{pid}", headers=tenant.auth("readonly"))
    assert r.status_code == 403
    assert (await http.delete(f"{RT}/{pid}", headers=tenant.auth())).status_code == 204


async def test_shared_sub_resources_answer_for_a_round_trip_monitor(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await make(http, tenant)
    url = f"{RT}/{created['publicId']}"
    for sub in ("results", "uptime", "countries", "incidents", "alert-history", "alert-settings"):
        r = await http.get(f"{url}/{sub}", headers=tenant.auth("readonly"))
        assert r.status_code == 200, (sub, r.text)
    r = await http.put(f"{url}/alert-settings", json={"downAfterRounds": 3}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    r = await http.post(
        "/api/maintenance-windows",
        json={
            "monitorId": created["publicId"],
            "startsAt": "2030-01-01T00:00:00Z",
            "endsAt": "2030-01-01T01:00:00Z",
        },
        headers=tenant.auth(),
    )
    assert r.status_code == 201, r.text


async def test_get_shows_the_config_the_agent_uses_and_patches_back_unchanged(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """GET spells out every default the agent applies; sending it back as it came (masks
    included) is allowed and keeps both secrets."""
    created = await make(http, tenant, send__port=..., receive__port=..., slowAfterSeconds=...)
    shown = created["roundtripConfig"]
    assert shown["send"]["port"] is None and shown["send"]["secure"] is False
    assert shown["send"]["tlsOptions"] == {
        "rejectUnauthorized": True,
        "ca": None,
        "servername": None,
    }
    assert shown["receive"]["port"] is None and shown["receive"]["allowPlaintextAuth"] is False
    assert shown["slowAfterSeconds"] is None
    url = f"{RT}/{created['publicId']}"
    r = await http.patch(url, json={"roundtripConfig": shown}, headers=tenant.auth("member"))
    assert r.status_code == 200, r.text
    assert r.json()["roundtripConfig"] == shown
    row = await stored_row(pool, created["publicId"])
    box = SecretBox(settings.secrets.secrets_key or "")
    assert opened(box, row["config"]["send"]["auth"]["pass"]) == "send-secret"
    assert opened(box, row["config"]["receive"]["password"]) == "mailbox-secret"


@pytest.mark.parametrize(
    "changes",
    [
        {"to": "probe+rt@example.net"},  # plus-addressing of the login
        {"to": "monitoring@EXAMPLE.net"},  # an alias in the login's domain
        {"send__from": "alerts@example.com"},  # in the send login's domain
        # a plain receive login: `to` in the receive server's domain or a parent of it
        {"receive__user": "probe", "receive__hostname": "imap.example.net"},
        {"receive__user": "probe", "to": "probe@imap.example.net"},
        # no send login (an unauthenticated relay): the sender is in `to`'s domain
        {"send__auth": None, "send__from": "probe@example.net"},
        {"send__auth": None, "send__from": ...},
    ],
)
async def test_the_own_mailbox_and_sender_are_accepted(
    http: httpx.AsyncClient, tenant: Tenant, changes: dict[str, Any]
) -> None:
    """What real users configure passes the issue 22 rule: a probe mailbox `probe@example.net`
    read at `imap.example.net`, mailed from the send login's domain."""
    await make(http, tenant, **changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"to": "probe@example.net.evil.example"}, "roundtripConfig.to"),
        ({"receive__user": "probe", "to": "victim@victim.example"}, "roundtripConfig.to"),
        # a name that only ends like the receive server's (`imap.example.net`)
        ({"receive__user": "probe", "to": "victim@ample.net"}, "roundtripConfig.to"),
        # a receive server given as an IP address relates to no domain
        ({"receive__user": "probe", "receive__hostname": "192.0.2.7"}, "roundtripConfig.to"),
        ({"send__from": "probe@example.net"}, "roundtripConfig.send.from"),
        ({"send__auth": None, "send__from": "ceo@bank.example"}, "roundtripConfig.send.from"),
        (
            {"send__auth": {"user": "relay", "pass": "x"}, "send__from": "probe@example.com"},
            "roundtripConfig.send.from",
        ),
    ],
)
async def test_a_stranger_recipient_or_spoofed_sender_is_a_400_naming_it(
    http: httpx.AsyncClient, tenant: Tenant, changes: dict[str, Any], field: str
) -> None:
    """Issue 22: `to` must be the mailbox the receive leg reads, `send.from` an address the send
    leg may use; the old code checked only their syntax and mailed anyone from anyone."""
    r = await http.post(RT, json=body(tenant, **changes), headers=tenant.auth())
    assert_error(r, 400, fields=[field])


async def test_an_update_to_a_stranger_is_a_400_and_changes_nothing(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """The rule holds on PATCH (and so for `apply`, which sends the whole config), with the
    send password sent again: the secret binding alone allowed it."""
    created = await make(http, tenant)
    config = masked(CONFIG)
    config["send"]["auth"]["pass"] = "send-secret"
    config["to"] = "victim@victim.example"
    url = f"{RT}/{created['publicId']}"
    r = await http.patch(url, json={"roundtripConfig": config}, headers=tenant.auth("member"))
    assert_error(r, 400, fields=["roundtripConfig.to"])
    assert (await stored_row(pool, created["publicId"]))["config"]["to"] == CONFIG["to"]


async def test_delivery_shows_an_unconfirmed_mailbox_and_its_cap(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """`GET …/delivery`: a new round trip's mailbox has not shown it receives the probe, so
    its own cap applies (no such resource before issue 22)."""
    created = await make(http, tenant)
    r = await http.get(f"{RT}/{created['publicId']}/delivery", headers=tenant.auth("readonly"))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "monitorId": created["publicId"],
        "state": "unconfirmed",
        "confirmedAt": None,
        "notDeliveredRounds": 0,
        "sentLastHour": 0,
        "allowedPerHour": 3,
    }
    other = await make_tenant(pool)
    r = await http.get(f"{RT}/{created['publicId']}/delivery", headers=other.auth())
    assert r.status_code == 404
