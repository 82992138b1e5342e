"""Heartbeat monitors in the console (issue 83), over real HTTP on the real app and PostgreSQL:
one made at /api/heartbeat-monitors is in the monitor list with its kind, and its page answers
with the address its mail goes to (the list linked to a 404 before)."""

import httpx

from tests.conftest import Tenant
from tests.console.helpers import Browserish


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
    shown = await client.get(page)
    assert shown.status_code == 200, shown.status_code
    assert "Nightly backup mail" in shown.text
    assert f"Send the mail to <code>{made['localPart']}" in shown.text
    assert "every 1440 min, grace 30 min" in shown.text and ":25" not in shown.text
    assert "Check now" not in shown.text, "no rounds, no console form: no buttons that 404"
    live = await client.get(f"{page}/live")
    assert live.status_code == 200, live.status_code
