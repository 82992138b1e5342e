"""What a public status page tells a visitor, a script and a feed reader (issue 27): uptime per
service over 90 days, when it was last updated, refresh, notices written by a person, scheduled
maintenance (never its note), incidents beyond two weeks in correct words, a state that agrees
with its countries, `HEAD` for uptime checkers, a JSON summary and Atom/RSS feeds; and who may
write notices."""

from datetime import timedelta
from typing import Literal
from xml.etree import ElementTree as ET

import asyncpg
import httpx
import msgspec

from controller.alerting import incident_store as incident_db
from controller.jobs.rules import JobIds
from shared.timefmt import iso_ms, utcnow
from testkit.serving import http_client
from tests.api.helpers import create
from tests.conftest import Tenant, make_tenant
from tests.console.helpers import Browserish, store_result
from tests.console.test_status_pages import _publish, _row_id

ATOM = "{http://www.w3.org/2005/Atom}"


class Country(msgspec.Struct, forbid_unknown_fields=True):
    country: str
    state: str


class Day(msgspec.Struct, forbid_unknown_fields=True):
    day: str
    uptimePercent: float | None


class Service(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    hostname: str | None
    kind: str
    state: Literal["up", "degraded", "down", "recovering", "missed", "unknown", "paused"]
    countries: list[Country]
    uptimePercent: float | None
    uptimeSince: str | None
    days: list[Day]


class Update(msgspec.Struct, forbid_unknown_fields=True):
    state: Literal["investigating", "identified", "monitoring", "resolved"]
    body: str
    at: str


class Notice(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    title: str
    impact: str
    createdAt: str
    resolvedAt: str | None
    updates: list[Update]


class Incident(msgspec.Struct, forbid_unknown_fields=True):
    monitor: str
    startedAt: str
    endedAt: str | None
    cause: str
    countries: int


class Maintenance(msgspec.Struct, forbid_unknown_fields=True):
    services: str
    startsAt: str
    endsAt: str
    inProgress: bool
    recurring: bool


class Page(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    slug: str
    url: str


class Status(msgspec.Struct, forbid_unknown_fields=True):
    description: str


class Summary(msgspec.Struct, forbid_unknown_fields=True):
    page: Page
    updatedAt: str
    status: Status
    uptimeDays: int
    services: list[Service]
    notices: list[Notice]
    incidents: list[Incident]
    maintenance: list[Maintenance]


async def _relay_page(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds, name: str
) -> tuple[Tenant, str, dict[str, object], int]:
    org = await make_tenant(pool)
    relay = await create(http, org, "smtp", name="Relay", hostname="relay.acme.test")
    relay_id = await _row_id(pool, relay["publicId"])
    slug = f"{name}-{org.org_id}"
    assert (await _publish(client, org, slug, [relay_id], hostnames=False)).status_code == 303
    return org, slug, relay, relay_id


async def test_head_is_answered_for_uptime_checkers(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    _, slug, _, _ = await _relay_page(client, pool, http, job_ids, "head")
    async with http_client(base_url=str(http.base_url)) as anonymous:
        r = await anonymous.head(f"/status/{slug}")
        assert (r.status_code, r.content) == (200, b"")
        assert r.headers["content-type"].startswith("text/html")
        assert (await anonymous.head(f"/status/{slug}/summary.json")).status_code == 200
        assert (await anonymous.head("/status/no-such-page-here")).status_code == 404
        assert (await anonymous.head("/status/NOT_A_SLUG")).status_code == 404


async def test_uptime_updated_refresh_history_and_plain_words(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    _, slug, relay, relay_id = await _relay_page(client, pool, http, job_ids, "uptime")
    # Added 80 hours ago, checked, 20 hours inside an incident: 75 % of the time up (the public
    # rule, tests/console/test_public_uptime.py), whatever its countries said.
    now = utcnow()
    added = now - timedelta(hours=80)
    await pool.execute("UPDATE monitors SET created_at = $2 WHERE id = $1", relay_id, added)
    for minutes, status in ((9, "up"), (3, "down"), (1, "inconclusive")):
        kind = "expired" if status == "inconclusive" else "tls"
        at = now - timedelta(minutes=minutes)
        await store_result(pool, job_ids, relay, "DE", status, at=at, error_kind=kind)
    async with pool.acquire() as conn:
        old = await incident_db.open_incident(
            conn, relay_id, utcnow() - timedelta(days=30), "tls", "x", ["DE", "FR"]
        )
        await incident_db.close_incident(conn, old.id, utcnow() - timedelta(days=29))
        down = await incident_db.open_incident(
            conn, relay_id, now - timedelta(hours=40), "tls", "x", ["DE"]
        )
        await incident_db.close_incident(conn, down.id, now - timedelta(hours=20))
    page = (await http.get(f"/status/{slug}")).text
    # Added days ago: the uptime covers the days since it was added, not 90 days.
    first = added.date()
    assert f"75.0 % uptime</span> since {first.day} {first.strftime('%b')}<" in page
    assert "over 90 days" not in page
    assert "Last updated" in page and '<meta http-equiv="refresh" content="60">' in page
    assert "TLS broken" in page and "Tls broken" not in page
    assert "seen from 2 countries" in page  # 30 days ago: beyond the old two weeks
    summary = msgspec.json.decode((await http.get(f"/status/{slug}/summary.json")).content)
    assert summary["services"][0]["uptimePercent"] == 75.0
    assert summary["services"][0]["uptimeSince"] == first.isoformat()


async def test_a_monitor_held_down_while_its_countries_are_up_reads_recovering(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    _, slug, relay, relay_id = await _relay_page(client, pool, http, job_ids, "recovering")
    for country in ("DE", "FR"):
        await store_result(pool, job_ids, relay, country, "up")
    await pool.execute(
        "INSERT INTO monitor_alert_state (monitor_id, state) VALUES ($1, 'down')"
        " ON CONFLICT (monitor_id) DO UPDATE SET state = 'down'",
        relay_id,
    )
    page = (await http.get(f"/status/{slug}")).text
    assert 'class="state recovering">Recovering<' in page
    assert 'class="state down"' not in page


async def test_summary_schema_feeds_notices_and_maintenance(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    org, slug, relay, _ = await _relay_page(client, pool, http, job_ids, "feeds")
    await store_result(pool, job_ids, relay, "DE", "up")
    start = utcnow() + timedelta(hours=2)
    r = await http.post(
        "/api/maintenance-windows",
        json={
            "customerId": org.customer_public_id,
            "startsAt": iso_ms(start),
            "endsAt": iso_ms(start + timedelta(hours=1)),
            "note": "patch relay.acme.test, ticket OPS-1234",
        },
        headers=org.auth(),
    )
    assert r.status_code == 201, r.text
    r = await http.post(
        "/api/status-notices",
        json={
            "customerId": org.customer_public_id,
            "title": "Mail delayed",
            "impact": "major",
            "body": "Incoming mail is delayed by up to 20 minutes.\x07 <script>x</script>",
        },
        headers=org.auth("owner"),
    )
    assert r.status_code == 201, r.text
    notice = r.json()
    assert [u["state"] for u in notice["updates"]] == ["investigating"]

    async with http_client(base_url=str(http.base_url)) as anonymous:
        page = (await anonymous.get(f"/status/{slug}")).text
        assert "Mail delayed" in page and "Incoming mail is delayed" in page  # at once
        assert "<script>x" not in page and "&lt;script&gt;x" in page
        assert "Scheduled maintenance" in page and "All services" in page
        for leak in ("OPS-1234", "relay.acme.test"):
            assert leak not in page
        r = await anonymous.get(f"/status/{slug}/summary.json")
        assert r.headers["access-control-allow-origin"] == "*"
        summary = msgspec.json.decode(r.content, type=Summary, strict=True)
        atom = await anonymous.get(f"/status/{slug}/feed.atom")
        rss = await anonymous.get(f"/status/{slug}/feed.rss")
    assert summary.page.slug == slug and summary.page.url.endswith(f"/status/{slug}")
    (service,) = summary.services
    assert (service.name, service.hostname, service.state) == ("Relay", None, "up")
    assert len(service.days) == 90 and service.uptimePercent == 100.0
    assert [n.title for n in summary.notices] == ["Mail delayed"]
    (window,) = summary.maintenance
    assert (window.services, window.inProgress) == ("All services", False)
    assert "OPS-1234" not in r.text

    assert atom.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(atom.content)
    assert feed.tag == f"{ATOM}feed"
    entries = feed.findall(f"{ATOM}entry")
    assert entries[0].findtext(f"{ATOM}title") == "Mail delayed (investigating)"
    assert "delayed by up to 20 minutes" in (entries[0].findtext(f"{ATOM}content") or "")
    assert all(e.findtext(f"{ATOM}id") and e.findtext(f"{ATOM}updated") for e in entries)
    assert rss.headers["content-type"].startswith("application/rss+xml")
    channel = ET.fromstring(rss.content).find("channel")
    assert channel is not None
    assert [i.findtext("title") for i in channel.findall("item")] == [
        "Mail delayed (investigating)"
    ]

    r = await http.post(
        f"/api/status-notices/{notice['id']}/updates",
        json={"state": "resolved", "body": "All delayed mail delivered."},
        headers=org.auth("admin"),
    )
    assert r.status_code == 201, r.text
    page = (await http.get(f"/status/{slug}")).text
    assert "Past notices" in page and "All delayed mail delivered." in page


async def test_who_may_write_notices(
    client: Browserish, pool: asyncpg.Pool, http: httpx.AsyncClient, job_ids: JobIds
) -> None:
    """Owners and admins write notices (they alone publish pages); members, readonly users and
    global supporters do not; another organization's notices are not found."""
    org = await make_tenant(pool, supporter=True)
    slug = f"rights-{org.org_id}"
    await _publish(client, org, slug, [], hostnames=False)
    body = {"customerId": org.customer_public_id, "title": "Outage", "body": "Looking"}
    for role in ("member", "readonly", "supporter"):
        r = await http.post("/api/status-notices", json=body, headers=org.auth(role))
        assert r.status_code == 403, (role, r.text)
    r = await http.post("/api/status-notices", json=body, headers=org.auth("owner"))
    assert r.status_code == 201, r.text
    notice = r.json()["id"]
    update = {"state": "monitoring", "body": "Fix deployed"}
    r = await http.post(
        f"/api/status-notices/{notice}/updates", json=update, headers=org.auth("member")
    )
    assert r.status_code == 403
    r = await http.get(f"/api/status-notices/{notice}", headers=org.auth("readonly"))
    assert r.status_code == 200 and r.json()["title"] == "Outage"

    other = await make_tenant(pool)
    r = await http.post(
        f"/api/status-notices/{notice}/updates", json=update, headers=other.auth("owner")
    )
    assert r.status_code == 404
    assert (
        await http.get(f"/api/status-notices/{notice}", headers=other.auth())
    ).status_code == 404
    r = await http.post("/api/status-notices", json=body, headers=other.auth("owner"))
    assert r.status_code == 404
    r = await http.get(
        "/api/status-notices", params={"customerId": org.customer_public_id}, headers=other.auth()
    )
    assert r.json() == []

    r = await http.post(
        f"/api/status-notices/{notice}/updates",
        json={"state": "fixed", "body": "x"},
        headers=org.auth(),
    )
    assert r.status_code == 400 and "state" in r.text
    for blank in ("", "\u00a0", " \t", "a\x00b"):  # the schema's pattern says so too
        r = await http.post("/api/status-notices", json=body | {"title": blank}, headers=org.auth())
        assert r.status_code == 400 and r.json()["fields"] == ["title"], (blank, r.text)
    r = await http.post(
        f"/api/status-notices/{notice}/updates",
        json=update | {"body": "\u2003"},
        headers=org.auth(),
    )
    assert r.status_code == 400 and r.json()["fields"] == ["body"], r.text
    assert (
        await http.post("/api/status-notices/not-a-uuid/updates", json=update, headers=org.auth())
    ).status_code == 404

    # The console's forms: the same rule.
    client.session = org.tokens["member"]
    token = await client.csrf()
    form = {"title": "From member", "impact": "minor", "state": "investigating", "body": "x"}
    r = await client.post(
        f"/console/status-pages/{org.customer_public_id}/notices", form, token=token
    )
    assert r.status_code == 403
    client.session = org.tokens["admin"]
    token = await client.csrf("/console/status-pages")
    r = await client.post(
        f"/console/status-pages/{org.customer_public_id}/notices",
        form | {"title": "From the console"},
        token=token,
    )
    assert r.status_code == 303, r.text
    r = await client.post(
        f"/console/status-pages/{org.customer_public_id}/notices",
        form | {"impact": "catastrophic"},
        token=token,
    )
    assert r.status_code == 400 and "impact:" in r.text
    admin = await client.get("/console/status-pages")
    assert "From the console" in admin.text and "0 confirmed e-mail subscribers" in admin.text
    assert "From the console" in (await http.get(f"/status/{slug}")).text
