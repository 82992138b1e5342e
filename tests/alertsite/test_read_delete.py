"""GET /monitors, GET /monitors/{id}, DELETE /monitors/{id}; the monitors are ordinary ones."""

import asyncpg
import httpx

from tests.alertsite.helpers import CONSTANT_FIELDS, MONITOR_KEYS, V3, as_error, create, native
from tests.api.test_roundtrip_monitors import body as roundtrip_body
from tests.conftest import Tenant, make_tenant


async def test_get_monitor_in_alertsite_shape(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    monitor_id = await create(
        http,
        tenant,
        "email-pop",
        hostname="pop3s://pop.example.com:995",
        interval=30,
        timeout=45,
        enabled=False,
        locations=[{"id": 20}, {"id": "de"}],
        login="box",
        password="secret",
    )
    r = await http.get(f"{V3}/monitors/{monitor_id}", headers=tenant.auth("readonly"))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": monitor_id,
        "type": "email-pop",
        "name": "Email Sample Monitor",
        "hostname": "pop.example.com",
        "port": 995,
        "enabled": False,
        "interval": 30,
        "timeout": 45,
        "locations": [{"id": "US", "name": "United States"}, {"id": "DE", "name": "Germany"}],
        "ssl": True,
        "login": "box",
        "password": "********",  # secrets are write-only
        "access_type": "View",  # the caller is a readonly user
        "notify_on_error": False,  # disabled: never checked, never notifies
        **CONSTANT_FIELDS,
    }
    r = await http.get(f"{V3}/monitors/{monitor_id}", headers=tenant.auth("member"))
    assert r.json()["access_type"] == "Edit"


async def test_locations_read_back_as_alertsite_ids_where_a_country_has_one(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    """NL has one AlertSite location (5050), so it reads back as that id; US (20, 26, ...) and
    DE (5020, 5120) have several, so they read back as ISO codes. Both forms are accepted."""
    monitor_id = await create(
        http, tenant, locations=[{"id": 5050}, {"id": 20}, {"id": "5120"}, "jp"]
    )
    r = await http.get(f"{V3}/monitors/{monitor_id}", headers=tenant.auth())
    assert r.json()["locations"] == [
        {"id": "5050", "name": "Netherlands"},
        {"id": "US", "name": "United States"},
        {"id": "DE", "name": "Germany"},
        {"id": "6050", "name": "Japan"},
    ]


async def test_monitors_made_by_the_native_api_show_too(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = {
        "customerId": tenant.customer_id,
        "name": "Native",
        "hostname": "mx.example.com",
        "checkInterval": 90,
        "status": "maintenance",
    }
    r = await http.post("/api/smtp-monitors", json=body, headers=tenant.auth())
    assert r.status_code == 201
    got = await http.get(f"{V3}/monitors/{r.json()['id']}", headers=tenant.auth())
    assert got.status_code == 200
    assert got.json()["interval"] == 1.5 and got.json()["enabled"] is True
    assert got.json()["login"] is None and got.json()["password"] is None
    assert got.json()["locations"] == [] and got.json()["ssl"] is False
    assert got.json()["notify_on_error"] is False  # maintenance: checked, never notifies
    assert {k: got.json()[k] for k in CONSTANT_FIELDS} == CONSTANT_FIELDS


async def test_select_returns_only_the_named_fields(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    monitor_id = await create(http, tenant)
    url = f"{V3}/monitors/{monitor_id}"
    r = await http.get(url, params={"select": "name,interval,bogus"}, headers=tenant.auth())
    assert r.json() == {"name": "Email Sample Monitor", "interval": 15}
    assert (await http.get(url, params={"select": ""}, headers=tenant.auth())).json() == {}
    listed = await http.get(f"{V3}/monitors", params={"select": "id"}, headers=tenant.auth())
    assert listed.json()["results"] == [{"id": monitor_id}]


async def test_list_is_the_callers_organizations_email_monitors(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tenant, other = await make_tenant(pool), await make_tenant(pool)
    smtp = await create(http, tenant)
    imap = await create(http, tenant, "email-imap")
    pop = await create(http, tenant, "email-pop")
    await create(http, other)
    r = await http.get(f"{V3}/monitors", headers=tenant.auth("readonly"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"metadata", "results"}
    # AlertSite documents no default limit; ours is 100 (test_fair_use), and says so.
    assert body["metadata"] == {"limit": 100, "offset": None, "total": 3}
    assert [m["id"] for m in body["results"]] == [pop, imap, smtp]  # newest first
    assert all(set(m) == MONITOR_KEYS for m in body["results"])
    assert [m["type"] for m in body["results"]] == ["email-pop", "email-imap", "email-smtp"]

    async def ids(**params: str) -> list[str]:
        r = await http.get(f"{V3}/monitors", params=params, headers=tenant.auth())
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["results"]]

    assert await ids(type="email-smtp") == [smtp]
    assert await ids(type="email-smtp, email-pop") == [pop, smtp]
    assert await ids(type="website,dejaclick") == []
    assert await ids(limit="2") == [pop, imap]
    assert await ids(limit="2", offset="2") == [smtp]
    assert await ids(offset="1") == [imap, smtp]
    r = await http.get(
        f"{V3}/monitors", params={"limit": "2", "offset": "2"}, headers=tenant.auth()
    )
    assert r.json()["metadata"] == {"limit": 2, "offset": 2, "total": 3}
    assert await ids(show_scripts="true", show_script_children="true") == [pop, imap, smtp]


async def test_v3_monitors_are_listed_by_the_native_api(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A v3 monitor is an ordinary monitor: listed by the native API with the mapped fields."""
    tenant = await make_tenant(pool)
    smtp = await create(
        http,
        tenant,
        name="Relay",
        hostname="smtps://relay.example.com:2465",
        interval=5,
        timeout=40,
        enabled=False,
        locations=[{"id": 5050}, {"id": "fr"}],
        login="probe",
        password="secret",
    )
    imap = await create(http, tenant, "email-imap")
    pop = await create(http, tenant, "email-pop")
    smtp_list = (await http.get("/api/smtp-monitors", headers=tenant.auth())).json()
    assert [m["id"] for m in smtp_list["items"]] == [int(smtp)]
    (listed,) = smtp_list["items"]
    assert {k: listed[k] for k in MAPPED_NATIVE} == {
        "name": "Relay",
        "hostname": "relay.example.com",
        "port": 2465,
        "checkInterval": 300,
        "timeoutSeconds": 40,
        "status": "disabled",
        "allowedCheckCountryCodes": ["NL", "FR"],
        "smtpConfig": {"secure": True, "auth": {"user": "probe", "pass": "********"}},
    }
    imap_list = (await http.get("/api/imap-pop-monitors", headers=tenant.auth())).json()
    assert [m["id"] for m in imap_list["items"]] == [int(pop), int(imap)]


MAPPED_NATIVE = (
    "name",
    "hostname",
    "port",
    "checkInterval",
    "timeoutSeconds",
    "status",
    "allowedCheckCountryCodes",
    "smtpConfig",
)


async def test_delete_is_204_and_the_monitor_is_gone(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    monitor_id = await create(http, tenant, "email-imap")
    public_id = (await native(http, pool, tenant, monitor_id))["publicId"]
    r = await http.delete(f"{V3}/monitors/{monitor_id}", headers=tenant.auth("member"))
    assert r.status_code == 204 and r.content == b""
    as_error(await http.get(f"{V3}/monitors/{monitor_id}", headers=tenant.auth()), 404)
    as_error(await http.delete(f"{V3}/monitors/{monitor_id}", headers=tenant.auth()), 404)
    gone = await http.get(f"/api/imap-pop-monitors/{public_id}", headers=tenant.auth())
    assert gone.status_code == 404


async def test_global_supporters_read_everywhere(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    owner, watcher = await make_tenant(pool), await make_tenant(pool, supporter=True)
    monitor_id = await create(http, owner)
    r = await http.get(f"{V3}/monitors/{monitor_id}", headers=watcher.auth("supporter"))
    assert r.status_code == 200
    r = await http.delete(f"{V3}/monitors/{monitor_id}", headers=watcher.auth("supporter"))
    as_error(r, 403)
    r = await http.patch(
        f"{V3}/monitors/email-smtp/{monitor_id}",
        json={"enabled": False},
        headers=watcher.auth("supporter"),
    )
    as_error(r, 403)


async def test_a_round_trip_monitor_is_not_served_here(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """This layer serves AlertSite's POP, IMAP and SMTP monitors (docs/alertsite.md): a
    round-trip monitor made natively is not listed, not matched by `email-round-trip`, and its
    id answers 404, as an unknown id does."""
    smtp = await create(http, tenant)
    r = await http.post(
        "/api/roundtrip-monitors", json=roundtrip_body(tenant), headers=tenant.auth()
    )
    assert r.status_code == 201, r.text
    async with pool.acquire() as conn:
        rt_id = await conn.fetchval(
            "SELECT id FROM monitors WHERE public_id = $1::uuid", r.json()["publicId"]
        )
    listed = await http.get(f"{V3}/monitors", headers=tenant.auth())
    assert [m["id"] for m in listed.json()["results"]] == [smtp]
    typed = await http.get(f"{V3}/monitors?type=email-round-trip", headers=tenant.auth())
    assert typed.status_code == 200 and typed.json()["results"] == []
    one = await http.get(f"{V3}/monitors/{rt_id}", headers=tenant.auth())
    made_up = await http.get(f"{V3}/monitors/{rt_id + 10**9}", headers=tenant.auth())
    assert one.status_code == made_up.status_code == 404
    assert one.json() == made_up.json()
