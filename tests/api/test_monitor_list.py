"""GET list of both kinds: {items, total, page, perPage}, pagination, customerId/search/status."""

import json
from typing import Any, cast

import asyncpg
import httpx
import pytest

from controller.monitors.store import searched
from tests.api.helpers import PATHS, SMTP, SMTP_KEYS, assert_error, create
from tests.conftest import Tenant, make_tenant

KINDS = ["smtp", "imap"]


async def listing(
    http: httpx.AsyncClient, tenant: Tenant, kind: str = "smtp", role: str = "admin", **params: Any
) -> dict[str, Any]:
    r = await http.get(PATHS[kind], params=params, headers=tenant.auth(role))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"items", "total", "page", "perPage"}
    return body


@pytest.mark.parametrize("kind", KINDS)
async def test_empty_list_defaults(http: httpx.AsyncClient, tenant: Tenant, kind: str) -> None:
    """Defaults: page 1, perPage 50."""
    assert await listing(http, tenant, kind) == {"items": [], "total": 0, "page": 1, "perPage": 50}


@pytest.mark.parametrize("kind", KINDS)
async def test_pagination_newest_first_with_total(
    http: httpx.AsyncClient, tenant: Tenant, kind: str
) -> None:
    made = [await create(http, tenant, kind, name=f"m{i}") for i in range(5)]
    newest_first = [m["publicId"] for m in reversed(made)]
    page1 = await listing(http, tenant, kind, perPage=2)
    page2 = await listing(http, tenant, kind, perPage=2, page=2)
    page3 = await listing(http, tenant, kind, perPage=2, page=3)
    page4 = await listing(http, tenant, kind, perPage=2, page=4)
    assert (page1["total"], page1["page"], page1["perPage"]) == (5, 1, 2)
    assert page3["page"] == 3 and len(page3["items"]) == 1
    assert page4 == {"items": [], "total": 5, "page": 4, "perPage": 2}
    got = [m["publicId"] for p in (page1, page2, page3) for m in p["items"]]
    assert got == newest_first
    # items are the full monitor representation
    everything = await listing(http, tenant, kind)
    assert everything["items"] == list(reversed(made))


async def test_default_per_page_is_50(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, status,"
            " check_interval, timeout_seconds)"
            " SELECT $1, $2, 'smtp', 'bulk ' || g, 'mx.example.com', 'active', 60, 30"
            " FROM generate_series(1, 205) AS g",
            tenant.org_id,
            tenant.customer_id,
        )
    body = await listing(http, tenant)
    assert (len(body["items"]), body["total"], body["perPage"]) == (50, 205, 50)
    assert set(body["items"][0]) == SMTP_KEYS
    body = await listing(http, tenant, perPage=200)
    assert (len(body["items"]), body["total"], body["perPage"]) == (200, 205, 200)
    body = await listing(http, tenant, perPage=200, page=2)
    assert len(body["items"]) == 5


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"perPage": 201}, "perPage"),
        ({"perPage": 0}, "perPage"),
        ({"perPage": -5}, "perPage"),
        ({"perPage": "ten"}, "perPage"),
        ({"page": 0}, "page"),
        ({"page": -1}, "page"),
        ({"page": "x"}, "page"),
        ({"page": "1.5"}, "page"),
        ({"status": "running"}, "status"),
        ({"customerId": "garbage"}, "customerId"),
        ({"customerId": "-3"}, "customerId"),
        ({"search": "x" * 201}, "search"),
        ({"search": "a\u0000b"}, "search"),
    ],
)
async def test_bad_query_parameters_are_400_naming_them(
    http: httpx.AsyncClient, tenant: Tenant, kind: str, params: dict[str, Any], field: str
) -> None:
    r = await http.get(PATHS[kind], params=params, headers=tenant.auth())
    assert_error(r, 400, fields=[field])


async def test_invalid_customer_filter_message(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.get(SMTP, params={"customerId": "nope"}, headers=tenant.auth())
    assert_error(r, 400, message="Invalid Customer identifier")


async def test_customer_filter_by_number_and_uuid(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post("/api/customers", json={"name": "Other customer"}, headers=tenant.auth())
    second = r.json()
    mine = await create(http, tenant)
    theirs = await create(http, tenant, customerId=second["publicId"])
    for ident in (tenant.customer_id, tenant.customer_public_id):
        body = await listing(http, tenant, customerId=ident)
        assert [m["publicId"] for m in body["items"]] == [mine["publicId"]] and body["total"] == 1
    for ident in (second["id"], second["publicId"]):
        body = await listing(http, tenant, customerId=ident)
        assert [m["publicId"] for m in body["items"]] == [theirs["publicId"]] and body["total"] == 1
    # a customer that does not exist: an empty page
    unknown = "00000000-0000-4000-8000-000000000000"
    assert (await listing(http, tenant, customerId=unknown))["total"] == 0


async def test_customer_filter_of_another_org_is_empty(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    other = await make_tenant(pool)
    await create(http, other)
    await create(http, tenant)
    body = await listing(http, tenant, customerId=other.customer_public_id)
    assert body == {"items": [], "total": 0, "page": 1, "perPage": 50}


async def test_search_in_name_and_hostname_case_insensitive(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    a = await create(http, tenant, name="Outbound Relay", hostname="relay.example.com")
    b = await create(http, tenant, name="Inbound", hostname="mx1.Corp-Mail.example")
    c = await create(http, tenant, name="100% uptime_box", hostname="box.example.net")

    async def ids(search: str) -> list[str]:
        body = await listing(http, tenant, search=search)
        assert body["total"] == len(body["items"])
        return [m["publicId"] for m in body["items"]]

    assert await ids("outbound") == [a["publicId"]]
    assert await ids("CORP-mail") == [b["publicId"]]
    assert await ids("example") == [c["publicId"], b["publicId"], a["publicId"]]
    assert await ids("100%") == [c["publicId"]]  # LIKE wildcards are literal
    assert await ids("%") == [c["publicId"]]
    assert await ids("_") == [c["publicId"]]
    assert await ids("nothing-like-this") == []
    assert len(await ids("")) == 3  # empty search: no filter


async def test_search_follows_renames_and_deletes_whoever_writes(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """The search reads `monitor_search`, which the monitors' own triggers keep: a rename
    through the API or by SQL is found by its new name only, a deleted monitor not at all, and
    a round's update of the due time leaves the search row alone."""
    a = await create(http, tenant, name="Outbound Relay", hostname="relay.example.com")
    b = await create(http, tenant, name="Inbound", hostname="mx1.example.net")

    async def ids(search: str) -> list[str]:
        return [m["publicId"] for m in (await listing(http, tenant, search=search))["items"]]

    r = await http.patch(
        f"{PATHS['smtp']}/{a['publicId']}",
        json={"name": "Submission"},
        headers=tenant.auth("admin"),
    )
    assert r.status_code == 200, r.text
    assert await ids("outbound") == []
    assert await ids("submission") == [a["publicId"]]
    assert await ids("relay.example") == [a["publicId"]]
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET hostname = 'imap.renamed.example' WHERE public_id = $1",
            b["publicId"],
        )
        row_of_a = (
            "SELECT s.xmin::text, s.name, s.hostname FROM monitor_search s"
            " JOIN monitors m ON m.id = s.monitor_id WHERE m.public_id = $1"
        )
        before = await conn.fetchrow(row_of_a, a["publicId"])
        await conn.execute(
            "UPDATE monitors SET next_due_at = now() + interval '1 minute' WHERE public_id = $1",
            a["publicId"],
        )
        kept = await conn.fetchrow(row_of_a, a["publicId"])
    assert kept == before
    kept = cast(asyncpg.Record, kept)  # the row of `a`, read just before
    assert (kept["name"], kept["hostname"]) == ("submission", "relay.example.com")
    assert await ids("renamed") == [b["publicId"]]
    assert await ids("mx1") == []
    r = await http.delete(f"{PATHS['smtp']}/{b['publicId']}", headers=tenant.auth("admin"))
    assert r.status_code in (200, 204), r.text
    assert await ids("example") == [a["publicId"]]
    async with pool.acquire() as conn:
        left = await conn.fetchval(
            "SELECT count(*) FROM monitor_search s WHERE NOT EXISTS"
            " (SELECT 1 FROM monitors m WHERE m.id = s.monitor_id)"
        )
    assert left == 0


async def test_a_search_reads_only_its_own_organizations_rows(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """Another organization's monitors never lengthen a search: the rows of `monitor_search`
    it reads are its own organization's, and it finds only its own monitors."""
    other = await make_tenant(pool)
    for n in range(5):
        await create(http, other, name=f"Relay {n}", hostname=f"relay{n}.example.com")
    mine = await create(http, tenant, name="Relay mine", hostname="relay.example.org")
    body = await listing(http, tenant, search="relay")
    assert [m["publicId"] for m in body["items"]] == [mine["publicId"]]
    async with pool.acquire() as conn:
        plan = await conn.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM monitors WHERE organization_id = $2"
            f" AND {searched('$1', organization='$2')}",
            "%relay%",
            tenant.org_id,
        )

    def scans(node: dict[str, Any]) -> list[dict[str, Any]]:
        found = [node] if node.get("Relation Name") == "monitor_search" else []
        return found + [s for child in node.get("Plans", []) for s in scans(child)]

    (scan,) = scans(json.loads(plan)[0]["Plan"])
    assert scan["Actual Rows"] == 1, scan

    # An operator's SQL moving a monitor to this organization moves its search row too.
    moved = await create(http, other, name="Relay moved", hostname="moved.example.com")
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET organization_id = $2, customer_id = $3 WHERE public_id = $1",
            moved["publicId"],
            tenant.org_id,
            tenant.customer_id,
        )
    body = await listing(http, tenant, search="relay")
    assert {m["publicId"] for m in body["items"]} == {mine["publicId"], moved["publicId"]}


async def test_monitors_carry_no_index_a_round_need_not_write(pool: asyncpg.Pool) -> None:
    """Every round moves `monitors.next_due_at` (indexed, so never a HOT update: each index of
    the table takes an entry): search's trigram indexes live on `monitor_search` instead."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT c.relname, a.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = $1::regclass",
            "monitors",
        )
        search = await conn.fetch(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = $1::regclass"
            " AND a.amname = 'gin'",
            "monitor_search",
        )
    assert [r["relname"] for r in rows if r["amname"] != "btree"] == []
    assert sorted(r["relname"] for r in search) == [
        "monitor_search_hostname_trgm",
        "monitor_search_name_trgm",
    ]


async def test_status_filter_normalises_like_the_field(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    active = await create(http, tenant, status="active")
    paused = await create(http, tenant, status="paused")
    maint = await create(http, tenant, status="maintenance")

    async def ids(status: str) -> list[str]:
        return [m["publicId"] for m in (await listing(http, tenant, status=status))["items"]]

    assert await ids("active") == [active["publicId"]]
    assert await ids("disabled") == [paused["publicId"]]
    assert await ids("paused") == [paused["publicId"]]
    assert await ids("inactive") == [paused["publicId"]]
    assert await ids("maintenance") == [maint["publicId"]]


async def test_filters_combine(http: httpx.AsyncClient, tenant: Tenant) -> None:
    hit = await create(http, tenant, name="alpha", status="maintenance")
    await create(http, tenant, name="alpha", status="active")
    await create(http, tenant, name="beta", status="maintenance")
    body = await listing(
        http, tenant, search="alp", status="maintenance", customerId=tenant.customer_public_id
    )
    assert [m["publicId"] for m in body["items"]] == [hit["publicId"]]
    assert body["total"] == 1


async def test_list_masks_secrets(http: httpx.AsyncClient, tenant: Tenant) -> None:
    await create(http, tenant)
    await create(http, tenant, "imap")
    smtp = await listing(http, tenant, "smtp")
    imap = await listing(http, tenant, "imap")
    assert smtp["items"][0]["smtpConfig"]["auth"]["pass"] == "********"
    assert imap["items"][0]["imapPopConfig"]["password"] == "********"
