"""Heartbeat monitors in the console (issue 83), over real HTTP on the real app and PostgreSQL:
one made at /api/heartbeat-monitors is in the monitor list and its kind filter, and its page answers
with the address its mail goes to (the list linked to a 404 before)."""

import asyncpg
import httpx

from controller.monitors.kinds import SMTP
from tests.conftest import Tenant, make_tenant
from tests.console.helpers import Browserish
from tests.console.test_kind_surfaces import create_body


async def test_a_heartbeat_monitor_is_listed_and_its_page_shows_where_to_send(
    client: Browserish, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = {
        "customerId": tenant.customer_id,
        "name": "Nightly backup mail",
        "heartbeatConfig": {"everyMinutes": 1440, "graceMinutes": 30},
    }
    r = await http.post("/api/heartbeat-monitors", json=body, headers=tenant.auth())
    assert r.status_code == 201, r.text
    made = r.json()
    client.session = tenant.tokens["member"]
    page = f"/console/monitors/{made['publicId']}"
    listed = await client.get("/console/")
    assert (
        listed.status_code == 200 and page in listed.text and "Nightly backup mail" in listed.text
    )
    smtp = await http.post(
        "/api/smtp-monitors", json=create_body(SMTP, "smtp", tenant), headers=tenant.auth()
    )
    assert smtp.status_code == 201, smtp.text
    other = f"/console/monitors/{smtp.json()['publicId']}"
    everything = await client.get("/console/")
    assert page in everything.text and other in everything.text
    only = await client.get("/console/?kind=heartbeat")
    assert "<option selected>heartbeat</option>" in only.text, "the kind filter offers heartbeat"
    assert page in only.text and other not in only.text
    shown = await client.get(page)
    assert shown.status_code == 200, shown.status_code
    assert "Nightly backup mail" in shown.text
    assert f"Send the mail to <code>{made['localPart']}" in shown.text
    assert "every 1440 min, grace 30 min" in shown.text
    # no port beside its address (console.hosts.host shows one in a span of its own; a time
    # shown as of 03:25 is not one)
    assert '<span class="port">' not in shown.text
    assert "Check now" not in shown.text, "no rounds: no check-now"
    live = await client.get(f"{page}/live")
    assert live.status_code == 200, live.status_code


async def test_the_heartbeat_form_as_each_role_and_another_organization(
    client: Browserish, http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """A readonly user gets neither form (403); another organization's admin gets a 404 for the
    edit form and cannot save it; the member's refused save names the field, over real HTTP."""
    body = {"customerId": tenant.customer_id, "name": "Invoices", "heartbeatConfig": {}}
    r = await http.post("/api/heartbeat-monitors", json=body, headers=tenant.auth())
    assert r.status_code == 201, r.text
    made = r.json()
    edit = f"/console/monitors/{made['publicId']}/edit"
    client.session = tenant.tokens["readonly"]
    token = await client.csrf()
    assert (await client.get("/console/new/heartbeat")).status_code == 403
    assert (await client.get(edit)).status_code == 403
    refused = await client.post(edit, {"name": "x"}, token=token)
    assert refused.status_code == 403
    stranger = await make_tenant(pool)
    client.session = stranger.tokens["admin"]
    token = await client.csrf()
    assert (await client.get(edit)).status_code == 404
    assert (await client.post(edit, {"name": "taken"}, token=token)).status_code == 404
    client.session = tenant.tokens["member"]
    token = await client.csrf()
    shown = await client.get(edit)
    assert shown.status_code == 200 and 'name="heartbeatConfig.everyMinutes"' in shown.text
    bad = {
        "customerId": tenant.customer_public_id,
        "name": "Invoices",
        "heartbeatConfig.everyMinutes": "99999999",
    }
    saved = await client.post(edit, bad, token=token)
    assert saved.status_code == 400, saved.status_code
    assert 'id="err-heartbeatConfig-everyMinutes"' in saved.text
    kept = await http.get(f"/api/heartbeat-monitors/{made['publicId']}", headers=tenant.auth())
    assert kept.json()["heartbeatConfig"]["everyMinutes"] == 60
    assert kept.json()["localPart"] == made["localPart"]


async def test_a_heartbeat_is_paused_resumed_and_deleted_from_its_page(
    client: Browserish, http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """Its page's Pause, Resume and Delete, as the API's PATCH of `status` and DELETE: paused,
    its address refuses mail (it leaves the receivers' book) and its judge looks no more."""
    body = {"customerId": tenant.customer_id, "name": "Invoices", "heartbeatConfig": {}}
    r = await http.post("/api/heartbeat-monitors", json=body, headers=tenant.auth())
    assert r.status_code == 201, r.text
    made = r.json()
    page = f"/console/monitors/{made['publicId']}"
    client.session = tenant.tokens["member"]
    shown = (await client.get(page)).text
    assert "/pause" in shown and "/delete" in shown and "/trigger" not in shown
    token = await client.csrf(page)
    r = await client.post(f"{page}/pause", token=token)
    assert (r.status_code, r.headers["location"]) == (303, f"{page}?notice=paused")
    status = "SELECT status FROM monitors WHERE public_id = $1::uuid"
    assert await pool.fetchval(status, made["publicId"]) == "disabled"
    api = await http.get(f"/api/heartbeat-monitors/{made['publicId']}", headers=tenant.auth())
    assert api.json()["status"] == "disabled"
    assert "Resume" in (await client.get(page)).text
    await client.post(f"{page}/resume", token=token)
    assert await pool.fetchval(status, made["publicId"]) == "active"
    r = await client.post(f"{page}/delete", token=token)
    assert (r.status_code, r.headers["location"]) == (303, "/console/?notice=deleted")
    assert await pool.fetchval(status, made["publicId"]) is None
