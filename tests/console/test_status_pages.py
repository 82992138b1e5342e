"""Public status pages: opt-in by owners and admins, readable without a login, showing only the
chosen monitors and nothing that names where or how they are checked unless chosen."""

import asyncio
import re
from datetime import timedelta

import asyncpg
import httpx

from controller.alerting import incident_store as incident_db
from controller.jobs.rules import JobIds
from shared.timefmt import utcnow
from testkit.serving import http_client
from tests.api.helpers import create
from tests.conftest import Tenant, make_tenant
from tests.console.helpers import Browserish, store_result

# The monitor's port as a page would show it (":2525", "port 2525"), not inside "acme-2525".
PORT_SHOWN = re.compile(r"(?<![\w-])2525(?!\w)")


async def _publish(
    client: Browserish,
    tenant: Tenant,
    slug: str,
    monitor_ids: list[int],
    hostnames: bool,
    title: str = "Acme mail status",
) -> httpx.Response:
    client.session = tenant.tokens["admin"]
    token = await client.csrf("/console/status-pages")
    form: dict[str, str | list[str]] = {
        "slug": slug,
        "title": title,
        "monitor": [str(i) for i in monitor_ids],
        "_csrf_token": token,
    }
    if hostnames:
        form["hostnames"] = "on"
    return await client.http.post(
        f"/console/status-pages/{tenant.customer_public_id}", data=form, headers=client.headers()
    )


async def _row_id(pool: asyncpg.Pool, public_id: str) -> int:
    found: int = await pool.fetchval(
        "SELECT id FROM monitors WHERE public_id = $1::uuid", public_id
    )
    return found


async def test_a_status_page_shows_only_what_was_published(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    org = await make_tenant(pool)
    shown = await create(
        http, org, "smtp", name="Outbound relay", hostname="relay.acme.test", port=2525
    )
    await create(http, org, "smtp", name="Internal backup", hostname="backup.acme.test")
    other = await make_tenant(pool)
    await create(http, other, "smtp", name="Other customer relay")
    await store_result(
        pool,
        job_ids,
        shown,
        "DE",
        "down",
        error_kind="refused",
        message="connect to relay.acme.test:2525 refused",
    )
    shown_id = await _row_id(pool, shown["publicId"])
    async with pool.acquire() as conn:
        await incident_db.open_incident(
            conn,
            shown_id,
            utcnow() - timedelta(minutes=5),
            "refused",
            "relay.acme.test:2525 refused the connection",
            ["DE"],
        )
    slug = f"acme-{org.org_id}"
    r = await _publish(client, org, slug, [shown_id], hostnames=False)
    assert (r.status_code, r.headers["location"]) == (303, "/console/status-pages?saved=1")

    async with http_client(base_url=str(http.base_url)) as anonymous:
        r = await anonymous.get(f"/status/{slug}")
    assert r.status_code == 200
    page = r.text
    assert "Acme mail status" in page and "Outbound relay" in page
    # the incident in the console's and the API's words
    assert "Unreachable" in page and "<b>Open</b>" in page
    for leak in ("relay.acme.test", "Internal backup", "Other customer relay", "refused the"):
        assert leak not in page, leak
    assert not PORT_SHOWN.search(page)  # (the slug holds the organization's id, any digits)
    assert page.count('class="bar ') == 90

    await _publish(client, org, slug, [shown_id], hostnames=True)
    async with http_client(base_url=str(http.base_url)) as anonymous:
        page = (await anonymous.get(f"/status/{slug}")).text
    assert "relay.acme.test" in page and not PORT_SHOWN.search(page)


async def test_a_heartbeat_monitors_address_is_never_published(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    """Its address is what lets mail count as its heartbeat: a page that shows hostnames shows
    the monitor but not the address (anyone could keep a late monitor up with it)."""
    org = await make_tenant(pool)
    r = await http.post(
        "/api/heartbeat-monitors",
        json={"customerId": org.customer_id, "name": "Nightly backup mail"},
        headers=org.auth(),
    )
    assert r.status_code == 201, r.text
    local = r.json()["localPart"]
    slug = f"hb-{org.org_id}"
    monitor_id = await _row_id(pool, r.json()["publicId"])
    assert (await _publish(client, org, slug, [monitor_id], hostnames=True)).status_code == 303
    async with http_client(base_url=str(http.base_url)) as anonymous:
        page = (await anonymous.get(f"/status/{slug}")).text
        summary = (await anonymous.get(f"/status/{slug}/summary.json")).text
    assert "Nightly backup mail" in page
    assert local not in page and local not in summary


async def test_only_owners_and_admins_publish_and_unknown_slugs_are_404(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient
) -> None:
    client.session = tenant.tokens["member"]
    assert (await client.get("/console/status-pages")).status_code == 403
    token = await client.csrf()
    r = await client.post(
        f"/console/status-pages/{tenant.customer_public_id}",
        {"slug": f"member-{tenant.org_id}", "title": "x"},
        token=token,
    )
    assert r.status_code == 403
    assert (await http.get(f"/status/member-{tenant.org_id}")).status_code == 404
    assert (await http.get("/status/NOT_A_SLUG")).status_code == 404


async def test_a_slug_taken_by_another_organization_is_refused(
    client: Browserish, pool: asyncpg.Pool
) -> None:
    first, second = await make_tenant(pool), await make_tenant(pool)
    slug = f"shared-{first.org_id}"
    assert (await _publish(client, first, slug, [], hostnames=False)).status_code == 303
    r = await _publish(client, second, slug, [], hostnames=False)
    assert r.status_code == 409 and "is taken" in r.text


async def test_monitors_of_another_customer_cannot_be_put_on_a_page(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    victim = await make_tenant(pool)
    theirs = await create(http, victim, "smtp", name="Victim relay")
    attacker = await make_tenant(pool)
    slug = f"grab-{attacker.org_id}"
    await _publish(client, attacker, slug, [await _row_id(pool, theirs["publicId"])], False)
    assert "Victim relay" not in (await http.get(f"/status/{slug}")).text


async def test_a_monitor_moved_to_another_customer_leaves_the_page(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    """Only admins choose what a page publishes, but a member may move a monitor to another
    customer: it used to stay on the first customer's public page."""
    org = await make_tenant(pool)
    moved = await create(http, org, "smtp", name="Second customer relay")
    slug = f"moved-{org.org_id}"
    await _publish(client, org, slug, [await _row_id(pool, moved["publicId"])], False)
    assert "Second customer relay" in (await http.get(f"/status/{slug}")).text
    r = await http.post("/api/customers", json={"name": "Second"}, headers=org.auth())
    assert r.status_code == 201, r.text
    r = await http.patch(
        f"/api/smtp-monitors/{moved['publicId']}",
        json={"customerId": r.json()["publicId"]},
        headers=org.auth("member"),
    )
    assert r.status_code == 200, r.text
    assert "Second customer relay" not in (await http.get(f"/status/{slug}")).text


async def test_visitors_share_a_page_built_at_most_once_per_ttl(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    """A page sums 90 days of results, and anyone may ask without an account: each visit used
    to run that again, so a few anonymous clients could keep PostgreSQL busy for everyone.
    Now twenty visitors at once, and one after a new result, get the page built once; what is
    published (here: the hostnames) still shows at once."""
    org = await make_tenant(pool)
    relay = await create(http, org, "smtp", name="Cached relay", hostname="cached.acme.test")
    await store_result(pool, job_ids, relay, "DE", "up", ago=timedelta(minutes=2))
    slug = f"cached-{org.org_id}"
    await _publish(client, org, slug, [await _row_id(pool, relay["publicId"])], False)
    async with http_client(base_url=str(http.base_url)) as anonymous:
        pages = await asyncio.gather(*(anonymous.get(f"/status/{slug}") for _ in range(20)))
        assert {r.status_code for r in pages} == {200}
        assert len({r.text for r in pages}) == 1
        assert "All services are operating normally." in pages[0].text
        await store_result(pool, job_ids, relay, "DE", "down", error_kind="refused")
        assert (await anonymous.get(f"/status/{slug}")).text == pages[0].text
        await _publish(client, org, slug, [await _row_id(pool, relay["publicId"])], True)
        assert "cached.acme.test" in (await anonymous.get(f"/status/{slug}")).text
