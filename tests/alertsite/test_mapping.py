"""Every AlertSite field's mapping onto the mailprobe monitor, on create and on PATCH."""

from collections.abc import Mapping
from typing import Any

import asyncpg
import httpx
import pytest

from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from tests.alertsite.helpers import MINIMAL, V3, as_error, create, native, stored
from tests.conftest import Tenant

MASK = "********"


def box(settings: ControllerSettings) -> SecretBox:
    return SecretBox(settings.secrets.secrets_key or "")


async def test_smtp_fields_map_onto_the_native_monitor(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, settings: ControllerSettings
) -> None:
    monitor_id = await create(
        http,
        tenant,
        name="  Outbound  ",
        hostname="SMTP.Example.COM",
        interval=5,
        enabled=False,
        timeout=20,
        port=587,
        locations=[{"id": 20, "name": "Atlanta, GA"}, {"id": "de"}, 10, "FR"],
        login="monitor",
        password="s3cret",
        ssl=False,
    )
    m = await native(http, pool, tenant, monitor_id)
    assert m["name"] == "Outbound"
    assert m["hostname"] == "smtp.example.com"
    assert m["checkInterval"] == 300  # minutes → seconds
    assert m["status"] == "disabled"
    assert m["timeoutSeconds"] == 20
    assert m["port"] == 587
    assert m["allowedCheckCountryCodes"] == ["US", "DE", "FR"]  # 20 and 10 are both US
    # ssl false is the default: not spelled out in the stored config
    assert m["smtpConfig"] == {"auth": {"user": "monitor", "pass": MASK}}
    row = await stored(pool, monitor_id)
    assert row["type"] == "smtp"
    assert box(settings).open(row["config"]["auth"]["pass"]) == "s3cret"  # sealed at rest


@pytest.mark.parametrize(
    ("kind", "hostname", "protocol", "port", "tls"),
    [
        ("email-imap", "imap.example.com", "imap", None, None),
        ("email-imap", "imaps://imap.example.com:993", "imap", 993, True),
        ("email-imap", "imap://imap.example.com", "imap", None, False),
        ("email-pop", "pop.example.com", "pop3", None, None),
        ("email-pop", "pop3s://pop.example.com:995", "pop3", 995, True),
        ("email-pop", "pops://pop.example.com", "pop3", None, True),
        ("email-pop", "pop3://pop.example.com:110/", "pop3", 110, False),
    ],
)
async def test_imap_and_pop_monitors(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    settings: ControllerSettings,
    kind: str,
    hostname: str,
    protocol: str,
    port: int | None,
    tls: bool | None,
) -> None:
    monitor_id = await create(
        http, tenant, kind, hostname=hostname, login="box@example.com", password="pw"
    )
    m = await native(http, pool, tenant, monitor_id)
    assert m["hostname"] == hostname.split("://")[-1].split(":")[0].rstrip("/")
    assert m["port"] == port
    expected: dict[str, Any] = {"protocol": protocol, "user": "box@example.com", "password": MASK}
    if tls:  # false is the default: not spelled out
        expected["tls"] = tls
    assert m["imapPopConfig"] == expected
    row = await stored(pool, monitor_id)
    assert row["type"] == protocol
    assert box(settings).open(row["config"]["password"]) == "pw"


@pytest.mark.parametrize(
    ("hostname", "port", "secure"),
    [
        ("smtps://smtp.example.com:465", 465, True),
        ("smtps://smtp.example.com", None, True),
        ("smtp://smtp.example.com:587", 587, None),
        ("smtps://[2001:db8::1]:465", 465, True),
        ("SMTPS://192.0.2.1", None, True),
    ],
)
async def test_ssl_as_alertsite_spells_it_in_the_hostname(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    hostname: str,
    port: int | None,
    secure: bool | None,
) -> None:
    monitor_id = await create(http, tenant, hostname=hostname)
    m = await native(http, pool, tenant, monitor_id)
    assert m["port"] == port
    assert m["smtpConfig"] == ({} if secure is None else {"secure": secure})
    assert "://" not in m["hostname"] and m["hostname"].strip("[]") == m["hostname"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"interval": "15", "timeout": "45", "port": "2525"}, (900, 45, 2525, "active")),
        ({"enabled": "n"}, (900, 30, None, "disabled")),
        ({"enabled": "y", "port": None}, (900, 30, None, "active")),
        ({"enabled": "false", "interval": 1440}, (86400, 30, None, "disabled")),
        ({"interval": 1}, (60, 30, None, "active")),
        ({"locations": []}, (900, 30, None, "active")),
        ({"locations": None}, (900, 30, None, "active")),
    ],
)
async def test_numbers_and_flags_as_numbers_or_strings(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    fields: dict[str, Any],
    expected: tuple[int, int, int | None, str],
) -> None:
    monitor_id = await create(http, tenant, **fields)
    m = await native(http, pool, tenant, monitor_id)
    assert (m["checkInterval"], m["timeoutSeconds"], m["port"], m["status"]) == expected
    assert m["allowedCheckCountryCodes"] is None


async def test_defaults_without_interval_enabled_or_timeout(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    body = {"billing_plancode": "UBM - A/A", "name": "Bare", "hostname": "mx.example.com"}
    r = await http.post(f"{V3}/monitors/email-smtp", json=body, headers=tenant.auth())
    assert r.status_code == 200, r.text
    m = await native(http, pool, tenant, r.json()["id"])
    assert (m["checkInterval"], m["timeoutSeconds"], m["status"]) == (60, 30, "active")


IGNORED: dict[str, Any] = {  # AlertSite's monitor fields mailprobe has no counterpart for
    "billing_plancode": "PLAN-X",
    "access_type": "Edit",
    "alert_note": "call ops",
    "allow_internal_testing": False,
    "blackout_ids": ["103652"],
    "custom_properties": [{"id": 228, "value_id": 550}],
    "dns_bypass": True,
    "fqdn": "smtp.example.net",
    "has_active_performance_alerts": True,
    "has_performance_alerts": True,
    "has_sla": True,
    "home_location": 10,
    "id": "1",
    "ipv4": "74.125.28.108",
    "mode": "Global Verify",
    "monitor_mode": "GlobalVerify",
    "note": "a note",
    "notify_on_error": False,
    "resolve_dns": False,
    "rotate_locations": True,
    "type": "email-pop",
}


async def test_ignored_fields_are_accepted_and_change_nothing(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    plain = await native(http, pool, tenant, await create(http, tenant))
    monitor_id = await create(http, tenant, **IGNORED)
    m = await native(http, pool, tenant, monitor_id)
    assert m["id"] != 1 and (await stored(pool, monitor_id))["type"] == "smtp"
    volatile = {"id", "publicId", "createdAt", "updatedAt"}
    assert {k: v for k, v in m.items() if k not in volatile} == {
        k: v for k, v in plain.items() if k not in volatile
    }
    r = await http.patch(
        f"{V3}/monitors/email-smtp/{monitor_id}", json=IGNORED, headers=tenant.auth()
    )
    assert r.status_code == 200, r.text
    after = await native(http, pool, tenant, monitor_id)
    assert {k: v for k, v in after.items() if k != "updatedAt"} == {
        k: v for k, v in m.items() if k != "updatedAt"
    }


async def test_patch_maps_each_field(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    # No password: moving a monitor that has one needs it sent again (test_secret_binding).
    monitor_id = await create(http, tenant, login="u", ssl=True, port=465)
    url = f"{V3}/monitors/email-smtp/{monitor_id}"
    steps: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"ipv4": "74.125.28.108", "port": 587}, {"port": 587}),  # AlertSite's example
        ({"name": "Renamed"}, {"name": "Renamed"}),
        ({"hostname": "relay.example.com"}, {"hostname": "relay.example.com"}),
        ({"interval": 10, "timeout": 60}, {"checkInterval": 600, "timeoutSeconds": 60}),
        ({"enabled": False}, {"status": "disabled"}),
        ({"enabled": True}, {"status": "active"}),
        ({"locations": [{"id": "jp"}, {"id": 30}]}, {"allowedCheckCountryCodes": ["JP", "US"]}),
        ({"locations": []}, {"allowedCheckCountryCodes": None}),
        ({"port": None}, {"port": None}),
        ({"login": "v"}, {"smtpConfig": {"secure": True, "auth": {"user": "v"}}}),
        ({"ssl": False}, {"smtpConfig": {"secure": False, "auth": {"user": "v"}}}),
        (
            {"hostname": "smtps://relay.example.com:2465"},
            {"port": 2465, "smtpConfig": {"secure": True, "auth": {"user": "v"}}},
        ),
    ]
    for change, expected in steps:
        before = await native(http, pool, tenant, monitor_id)
        r = await http.patch(url, json=change, headers=tenant.auth("member"))
        assert r.status_code == 200, (change, r.text)
        assert r.json() == {"id": monitor_id}
        after = await native(http, pool, tenant, monitor_id)
        assert {k: after[k] for k in expected} == expected, change
        untouched = set(after) - set(expected) - {"updatedAt", "config"}
        assert {k: after[k] for k in untouched} == {k: before[k] for k in untouched}, change


async def test_patch_keeps_or_replaces_secrets(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, settings: ControllerSettings
) -> None:
    smtp = await create(http, tenant, login="u", password="first")
    imap = await create(http, tenant, "email-imap", login="u", password="first")
    change: Mapping[str, object]
    for kind, monitor_id, secret in (
        ("smtp", smtp, ("auth", "pass")),
        ("imap", imap, ("password",)),
    ):

        async def opened(monitor_id: str = monitor_id, secret: tuple[str, ...] = secret) -> str:
            value: Any = (await stored(pool, monitor_id))["config"]
            for key in secret:
                value = value[key]
            assert isinstance(value, str)
            return box(settings).open(value)

        url = f"{V3}/monitors/email-{kind}/{monitor_id}"
        for change in ({"password": MASK}, {"name": "renamed", "password": MASK}):
            assert (await http.patch(url, json=change, headers=tenant.auth())).status_code == 200
            assert await opened() == "first", (kind, change)
        # What the password is bound to changes only with the password sent again.
        for change in ({"login": "w"}, {"ssl": True, "password": MASK}, {"port": 1}):
            r = await http.patch(url, json=change, headers=tenant.auth())
            assert "password must be sent again" in as_error(r, 400), (kind, change)
            assert await opened() == "first", (kind, change)
        r = await http.patch(url, json={"login": "w", "password": "second"}, headers=tenant.auth())
        assert r.is_success
        assert await opened() == "second"
        r = await http.get(f"{V3}/monitors/{monitor_id}", headers=tenant.auth())
        assert r.json()["login"] == "w" and r.json()["password"] == MASK


async def test_enabled_true_keeps_a_monitor_in_maintenance(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    monitor_id = await create(http, tenant)
    public_id = (await native(http, pool, tenant, monitor_id))["publicId"]
    r = await http.patch(
        f"/api/smtp-monitors/{public_id}", json={"status": "maintenance"}, headers=tenant.auth()
    )
    assert r.status_code == 200
    url = f"{V3}/monitors/email-smtp/{monitor_id}"
    assert (await http.patch(url, json={"enabled": True}, headers=tenant.auth())).is_success
    assert (await stored(pool, monitor_id))["status"] == "maintenance"
    got = await http.get(f"{V3}/monitors/{monitor_id}", headers=tenant.auth())
    assert got.json()["enabled"] is True
    assert (await http.patch(url, json={"enabled": False}, headers=tenant.auth())).is_success
    assert (await stored(pool, monitor_id))["status"] == "disabled"


async def test_get_then_patch_round_trips(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """A script may GET a monitor, change a field and PATCH the whole object back."""
    for kind in ("email-smtp", "email-imap", "email-pop"):
        monitor_id = await create(
            http, tenant, kind, login="u", password="p", locations=[{"id": "DE"}], port=1234
        )
        before = await native(http, pool, tenant, monitor_id)
        got = (await http.get(f"{V3}/monitors/{monitor_id}", headers=tenant.auth())).json()
        r = await http.patch(
            f"{V3}/monitors/{kind}/{monitor_id}", json={**got, **MINIMAL}, headers=tenant.auth()
        )
        assert r.status_code == 200, r.text
        after = await native(http, pool, tenant, monitor_id)
        assert {k: v for k, v in after.items() if k != "updatedAt"} == {
            k: v for k, v in before.items() if k != "updatedAt"
        }


async def test_native_90_second_monitor_round_trips(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """GET answers 90 s as `"interval": 1.5`; PATCHing the object back changes nothing."""
    body = {
        "customerId": tenant.customer_id,
        "name": "Native",
        "hostname": "mx.example.com",
        "checkInterval": 90,
        "timeoutSeconds": 45,
        "allowedCheckCountryCodes": ["NL", "US"],
    }
    r = await http.post("/api/smtp-monitors", json=body, headers=tenant.auth())
    assert r.status_code == 201, r.text
    monitor_id = str(r.json()["id"])
    before = await native(http, pool, tenant, monitor_id)
    got = (await http.get(f"{V3}/monitors/{monitor_id}", headers=tenant.auth())).json()
    assert got["interval"] == 1.5
    url = f"{V3}/monitors/email-smtp/{monitor_id}"
    for interval in (1.5, "1.5", " 1.5 "):
        r = await http.patch(url, json={**got, "interval": interval}, headers=tenant.auth())
        assert r.status_code == 200, (interval, r.text)
        after = await native(http, pool, tenant, monitor_id)
        assert {k: v for k, v in after.items() if k != "updatedAt"} == {
            k: v for k, v in before.items() if k != "updatedAt"
        }, interval


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [(2, 120), (2.0, 120), ("2", 120), ("2.0", 120), (1440, 86400), (1.5, None), (0.5, None)],
)
async def test_a_new_interval_is_whole_minutes(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    interval: object,
    seconds: int | None,
) -> None:
    """On a monitor of 15 minutes, any other interval must be whole minutes (1-1440): 1.5 is
    a 400 naming `interval` here, as it restates nothing stored."""
    monitor_id = await create(http, tenant)
    url = f"{V3}/monitors/email-smtp/{monitor_id}"
    r = await http.patch(url, json={"interval": interval}, headers=tenant.auth())
    m = await native(http, pool, tenant, monitor_id)
    if seconds is None:
        assert "interval" in as_error(r, 400)
        assert m["checkInterval"] == 900
    else:
        assert r.status_code == 200, r.text
        assert m["checkInterval"] == seconds


async def test_native_config_keys_survive_a_v3_patch(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """Keys AlertSite has no field for (requireTLS, ignoreTLS, tlsOptions) stay as they were."""
    smtp_config = {
        "requireTLS": True,
        "tlsOptions": {"rejectUnauthorized": False},
        "auth": {"user": "u", "pass": "p"},
    }
    smtp = await http.post(
        "/api/smtp-monitors",
        json={
            "customerId": tenant.customer_id,
            "name": "S",
            "hostname": "mx.example.com",
            "smtpConfig": smtp_config,
        },
        headers=tenant.auth(),
    )
    imap = await http.post(
        "/api/imap-pop-monitors",
        json={
            "customerId": tenant.customer_id,
            "name": "I",
            "hostname": "imap.example.com",
            "imapPopConfig": {"tlsOptions": {"rejectUnauthorized": False}, "user": "u"},
        },
        headers=tenant.auth(),
    )
    assert smtp.status_code == imap.status_code == 201, (smtp.text, imap.text)
    change = {"login": "v", "password": "q", "ssl": True, "port": 2465, "name": "Renamed"}
    for kind, created in (("email-smtp", smtp.json()), ("email-imap", imap.json())):
        r = await http.patch(
            f"{V3}/monitors/{kind}/{created['id']}", json=change, headers=tenant.auth()
        )
        assert r.status_code == 200, r.text
    m = await native(http, pool, tenant, str(smtp.json()["id"]))
    assert m["smtpConfig"] == {
        "requireTls": True,
        "tlsOptions": {"rejectUnauthorized": False},
        "auth": {"user": "v", "pass": MASK},
        "secure": True,
    }
    m = await native(http, pool, tenant, str(imap.json()["id"]))
    assert m["imapPopConfig"] == {
        "protocol": "imap",
        "tlsOptions": {"rejectUnauthorized": False},
        "user": "v",
        "password": MASK,
        "tls": True,
    }


@pytest.mark.parametrize(
    ("location", "country"),
    [
        (10, "US"),
        ({"id": 26}, "US"),
        ("30", "US"),
        ({"id": "15"}, "CA"),
        (4010, "BR"),
        (5010, "GB"),
        (5020, "DE"),
        (5050, "NL"),
        (5160, "LT"),
        (6010, "SG"),
        (6080, "KR"),
        (7050, "NZ"),
        (8010, "ZA"),
        (8020, "BH"),
    ],
)
async def test_alertsite_location_ids_map_to_their_country(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, location: object, country: str
) -> None:
    monitor_id = await create(http, tenant, locations=[location])
    assert (await native(http, pool, tenant, monitor_id))["allowedCheckCountryCodes"] == [country]


@pytest.mark.parametrize("location", [9999, {"id": 10273}, "0", "99999999999999999999"])
async def test_an_unmapped_location_id_is_400_saying_how_to_proceed(
    http: httpx.AsyncClient, tenant: Tenant, location: object
) -> None:
    r = await http.post(
        f"{V3}/monitors/email-smtp",
        json={**MINIMAL, "locations": [location]},
        headers=tenant.auth(),
    )
    message = as_error(r, 400)
    raw = location["id"] if isinstance(location, dict) else location
    assert f"AlertSite location {raw} " in message, message
    assert "ISO 3166-1 alpha-2" in message and "docs/alertsite.md" in message, message
