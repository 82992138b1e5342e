"""Heartbeat monitors in the console (issue 83), over real HTTP on the real app and PostgreSQL:
one made at /api/heartbeat-monitors is in the monitor list and its kind filter, and its page answers
with the address its mail goes to (the list linked to a 404 before)."""

import httpx

from controller.monitors.kinds import SMTP
from tests.conftest import Tenant
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
    assert "every 1440 min, grace 30 min" in shown.text and ":25" not in shown.text
    assert "Check now" not in shown.text, "no rounds, no console form: no buttons that 404"
    live = await client.get(f"{page}/live")
    assert live.status_code == 200, live.status_code
