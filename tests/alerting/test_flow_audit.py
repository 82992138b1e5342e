"""Audited claims of issue 66 about flow incidents, each reproduced on real PostgreSQL and the
rig's relay and SMS gateway: reminders of a flow incident still open reach its recipients,
whichever of its monitors has recovered."""

from datetime import timedelta

import asyncpg
import httpx

from controller.alerting.alerter import Alerter
from testkit.alerting.wired import wired_alerter
from tests.alerting.conftest import LINKS, Rig
from tests.conftest import make_tenant

HOST = "mail.example.test"
UP3 = {"DE": "up", "FR": "up", "US": "up"}
DOWN3 = {"DE": "refused", "FR": "refused", "US": "refused"}


def grouping(rig: Rig, wait_s: int = 0) -> Alerter:
    rig.alerter = wired_alerter(
        rig.pool,
        rig.js,
        rig.job_ids,
        notify_reminder_minutes=30,
        incident_group_wait_seconds=wait_s,
        links=LINKS,
        clock=rig.clock,
    )
    return rig.alerter


async def statuses(rig: Rig, kind: str) -> list[tuple[str, str, str]]:
    rows = await rig.fetch(
        "SELECT channel, status, coalesce(last_error, '') AS error FROM notification_outbox"
        " WHERE kind = $1 ORDER BY id",
        kind,
    )
    return [(r["channel"], r["status"], r["error"]) for r in rows]


async def test_a_flow_reminder_is_sent_while_its_first_monitor_has_recovered(rig: Rig) -> None:
    """Two monitors of one server page once; the older recovers, the other stays down: the
    flow incident is still open, so its reminder goes out (it is not dropped as the reminder
    of a closed incident)."""
    grouping(rig, wait_s=30)
    first = await rig.monitor(name="Relay one", hostname=HOST, port=587, config={})
    second = await rig.monitor(name="Relay two", hostname=HOST, port=587, config={})
    for n in (0, 1):
        await rig.round(first, n, DOWN3)
        await rig.round(second, n, DOWN3)
        await rig.alerter.burst()
    rig.clock.shift += timedelta(seconds=31)
    await rig.alerter.burst()
    assert await rig.outbox().burst() == 2  # one page: e-mail and SMS, for both monitors
    await rig.rounds(first, 2, [UP3, UP3])
    await rig.rounds(second, 2, [DOWN3, DOWN3])
    (flow,) = await rig.fetch("SELECT * FROM flow_incidents ORDER BY id")
    assert flow["ended_at"] is None
    rig.clock.shift += timedelta(minutes=31)
    await rig.rounds(second, 4, [DOWN3])
    await rig.outbox().burst()
    reminders = await statuses(rig, "reminder")
    print("flow reminders:", reminders)
    assert sorted((c, s) for c, s, _ in reminders) == [("email", "sent"), ("sms", "sent")]
    subjects = [m["Subject"] for m in rig.relay.messages]
    assert len(subjects) == 2 and "Relay one and 1 more" in subjects[1], subjects


async def test_incidents_read_only_for_every_role_and_one_organization_each(
    rig: Rig, api: httpx.AsyncClient, alert_pool: asyncpg.Pool
) -> None:
    """Two organizations' monitors on one shared MX fail together: each organization lists one
    incident of its own monitors, nothing of the other's (names, hosts, counts); no role can
    change an incident through the API; bad paging is a 400 naming the parameter."""
    grouping(rig, wait_s=0)
    other = await make_tenant(alert_pool)
    ours = [await rig.monitor(name=f"Ours {i}", hostname=HOST, port=25) for i in range(3)]
    theirs = await rig.monitor(name="Theirs secret-name", hostname=HOST, port=25, tenant=other)
    for n in (0, 1):
        for m in [*ours, theirs]:
            await rig.round(m, n, DOWN3)
        await rig.alerter.burst()
    for role in ("readonly", "member", "admin", "owner"):
        r = await api.get("/api/incidents", headers=rig.tenant.auth(role))
        assert r.status_code == 200, (role, r.text)
        (incident,) = r.json()["items"]
        assert sorted(m["name"] for m in incident["monitors"]) == ["Ours 0", "Ours 1", "Ours 2"]
        assert "secret-name" not in r.text and str(theirs["public_id"]) not in r.text
        assert r.json()["total"] == 1
    r = await api.get("/api/incidents", headers=other.auth("readonly"))
    (mine,) = r.json()["items"]
    assert [m["name"] for m in mine["monitors"]] == ["Theirs secret-name"]
    assert "Ours" not in r.text
    for role in ("readonly", "member", "admin"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            for path in ("/api/incidents", f"/api/incidents/{incident['id']}"):
                got = await api.request(method, path, headers=rig.tenant.auth(role), json={})
                assert got.status_code in (404, 405), (role, method, path, got.status_code)
    for bad, field in (("page=0", "page"), ("perPage=101", "perPage"), ("page=x", "page")):
        got = await api.get(f"/api/incidents?{bad}", headers=rig.tenant.auth("readonly"))
        assert got.status_code == 400 and field in got.text, (bad, got.status_code, got.text)
    flows = await rig.fetch(
        "SELECT organization_id FROM flow_incidents WHERE organization_id = ANY($1::bigint[])",
        [rig.tenant.org_id, other.org_id],
    )
    assert sorted(f["organization_id"] for f in flows) == sorted([rig.tenant.org_id, other.org_id])


async def test_deleting_the_last_monitor_down_closes_its_incident(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    """A flow incident whose last open outage's monitor is deleted ends: it is not listed
    open (with nothing down) until some other outage of the organization happens to open."""
    grouping(rig, wait_s=0)
    first = await rig.monitor(name="Relay one", hostname=HOST, port=587, config={})
    second = await rig.monitor(name="Relay two", hostname=HOST, port=587, config={})
    for n in (0, 1):
        await rig.round(first, n, DOWN3)
        await rig.round(second, n, DOWN3)
        await rig.alerter.burst()
    await rig.rounds(first, 2, [UP3, UP3])
    r = await api.delete(
        f"/api/smtp-monitors/{second['public_id']}", headers=rig.tenant.auth("admin")
    )
    assert r.status_code == 204, r.text
    r = await api.get("/api/incidents", headers=rig.tenant.auth("readonly"))
    (incident,) = r.json()["items"]
    print("after the delete:", incident["state"], [m["state"] for m in incident["monitors"]])
    assert incident["state"] == "closed" and incident["endedAt"] is not None
    (flow,) = await rig.fetch(
        "SELECT * FROM flow_incidents WHERE organization_id = $1", rig.tenant.org_id
    )
    assert flow["ended_at"] is not None and flow["due_at"] is None


async def test_pausing_the_last_monitor_down_closes_its_incident(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    """Pausing a monitor closes its open incident (silently) at the alerter's next pass, and
    with it the flow incident it was the last open outage of."""
    grouping(rig, wait_s=0)
    first = await rig.monitor(name="Relay one", hostname=HOST, port=587, config={})
    second = await rig.monitor(name="Relay two", hostname=HOST, port=587, config={})
    for n in (0, 1):
        await rig.round(first, n, DOWN3)
        await rig.round(second, n, DOWN3)
        await rig.alerter.burst()
    await rig.rounds(first, 2, [UP3, UP3])
    r = await api.patch(
        f"/api/smtp-monitors/{second['public_id']}",
        headers=rig.tenant.auth("admin"),
        json={"status": "paused"},
    )
    assert r.status_code == 200, r.text
    for _ in range(3):
        rig.clock.shift += timedelta(minutes=2)
        await rig.alerter.burst()
    (incident,) = (await api.get("/api/incidents", headers=rig.tenant.auth())).json()["items"]
    print("after the pause:", incident["state"], [m["state"] for m in incident["monitors"]])
    assert [m["state"] for m in incident["monitors"]] == ["closed", "closed"]
    assert incident["state"] == "closed"
