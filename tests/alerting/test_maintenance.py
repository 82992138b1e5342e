"""Maintenance: status `maintenance` and open maintenance windows keep state and incidents but
notify nobody; a down monitor is notified once the maintenance is over."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx

from controller.notify.maintenance import weekly_open
from tests.alerting.conftest import DOWN, UP, Rig


async def test_status_maintenance_records_but_never_notifies(rig: Rig) -> None:
    m = await rig.monitor(status="maintenance")
    await rig.rounds(m, 0, [DOWN, DOWN, DOWN])
    (incident,) = await rig.incidents(m)
    assert incident["notified"] is False
    assert (await rig.state(m))["state"] == "down"
    assert await rig.outbox_rows(m) == []
    assert [e.state for e in await rig.events(m)] == ["degraded", "down"]  # events still flow

    async with rig.pool.acquire() as conn:
        await conn.execute("UPDATE monitors SET status = 'active' WHERE id = $1", m["id"])
    await rig.rounds(m, 3, [DOWN])  # still down after the maintenance: now people hear of it
    assert [r["kind"] for r in await rig.outbox_rows(m)] == ["down", "down"]


async def test_recovery_in_maintenance_of_an_unnotified_incident_is_silent(rig: Rig) -> None:
    m = await rig.monitor(status="maintenance")
    await rig.rounds(m, 0, [DOWN, DOWN, UP, UP])
    (incident,) = await rig.incidents(m)
    assert incident["ended_at"] is not None
    assert await rig.outbox_rows(m) == []


async def test_a_window_for_the_customer_suppresses_until_deleted(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    m = await rig.monitor()
    now = rig.clock()
    r = await api.post(
        "/api/maintenance-windows",
        headers=rig.tenant.auth("member"),
        json={
            "customerId": rig.tenant.customer_public_id,
            "startsAt": (now - timedelta(minutes=5)).isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
            "note": "relay upgrade",
        },
    )
    assert r.status_code == 201, r.text
    window = r.json()
    assert window["kind"] == "once" and window["active"] is True
    assert window["customerId"] == rig.tenant.customer_id and window["monitorId"] is None
    await rig.rounds(m, 0, [DOWN, DOWN])
    assert len(await rig.incidents(m)) == 1
    assert await rig.outbox_rows(m) == []

    r = await api.delete(f"/api/maintenance-windows/{window['id']}", headers=rig.tenant.auth())
    assert r.status_code == 204
    await rig.rounds(m, 2, [DOWN])
    assert len(await rig.outbox_rows(m)) == 2


async def test_a_weekly_window_for_the_monitor_suppresses(rig: Rig, api: httpx.AsyncClient) -> None:
    m = await rig.monitor()
    start = rig.clock().astimezone(ZoneInfo("America/New_York")) - timedelta(minutes=10)
    r = await api.post(
        "/api/maintenance-windows",
        headers=rig.tenant.auth(),
        json={
            "monitorId": str(m["public_id"]),
            "weekday": start.isoweekday(),
            "startTime": start.strftime("%H:%M"),
            "durationMinutes": 60,
            "timezone": "America/New_York",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["active"] is True
    assert r.json()["monitorId"] == str(m["public_id"])
    await rig.rounds(m, 0, [DOWN, DOWN])
    assert len(await rig.incidents(m)) == 1
    assert await rig.outbox_rows(m) == []


def test_weekly_window_spans_midnight_and_keeps_wall_clock_across_dst() -> None:
    # Sunday 23:00 Berlin for 3 hours: open Monday 01:30 local, closed Monday 02:30.
    sunday_late = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)  # 23:30 CET, a Sunday
    assert weekly_open(7, time(23, 0), 180, "Europe/Berlin", sunday_late)
    assert weekly_open(7, time(23, 0), 180, "Europe/Berlin", sunday_late + timedelta(hours=2))
    assert not weekly_open(7, time(23, 0), 180, "Europe/Berlin", sunday_late + timedelta(hours=3))
    assert not weekly_open(1, time(23, 0), 180, "Europe/Berlin", sunday_late)
    # 02:00 local on Mondays, before and after the change to summer time (29 March 2026)
    assert weekly_open(1, time(2, 0), 30, "Europe/Berlin", datetime(2026, 3, 23, 1, 10, tzinfo=UTC))
    assert weekly_open(1, time(2, 0), 30, "Europe/Berlin", datetime(2026, 3, 30, 0, 10, tzinfo=UTC))


async def test_a_recovery_in_maintenance_of_a_notified_incident_goes_out_after_it(
    rig: Rig,
) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, DOWN])  # notified as down
    async with rig.pool.acquire() as conn:
        await conn.execute("UPDATE monitors SET status = 'maintenance' WHERE id = $1", m["id"])
    await rig.rounds(m, 2, [UP, UP])
    (incident,) = await rig.incidents(m)
    assert incident["ended_at"] == rig.at(2)
    assert incident["recovery_held"] is True
    assert [r["kind"] for r in await rig.outbox_rows(m)] == ["down", "down"]

    async with rig.pool.acquire() as conn:  # the status change queues the monitor by itself
        await conn.execute("UPDATE monitors SET status = 'active' WHERE id = $1", m["id"])
    await rig.alerter.burst()
    kinds = [r["kind"] for r in await rig.outbox_rows(m)]
    assert kinds == ["down", "down", "recovered", "recovered"]
    (incident,) = await rig.incidents(m)
    assert incident["recovery_held"] is False
    await rig.alerter.burst()
    assert len(await rig.outbox_rows(m)) == 4  # once


async def test_an_unnotified_incident_closing_in_maintenance_holds_no_recovery(rig: Rig) -> None:
    m = await rig.monitor(status="maintenance")
    await rig.rounds(m, 0, [DOWN, DOWN, UP, UP])
    (incident,) = await rig.incidents(m)
    assert incident["recovery_held"] is False
    async with rig.pool.acquire() as conn:
        await conn.execute("UPDATE monitors SET status = 'active' WHERE id = $1", m["id"])
    await rig.alerter.burst()
    assert await rig.outbox_rows(m) == []


async def test_windows_of_another_customer_or_already_ended_do_not_suppress(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    m = await rig.monitor()
    r = await api.post("/api/customers", json={"name": "Other"}, headers=rig.tenant.auth())
    assert r.status_code == 201, r.text
    now = rig.clock()
    windows = [
        {  # open now, but for the other customer
            "customerId": r.json()["publicId"],
            "startsAt": (now - timedelta(minutes=5)).isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        },
        {  # the monitor's own customer, ended a minute ago
            "customerId": rig.tenant.customer_public_id,
            "startsAt": (now - timedelta(hours=2)).isoformat(),
            "endsAt": (now - timedelta(minutes=1)).isoformat(),
        },
        {  # the monitor's own, not started yet
            "monitorId": str(m["public_id"]),
            "startsAt": (now + timedelta(minutes=1)).isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        },
    ]
    for body in windows:
        r = await api.post("/api/maintenance-windows", headers=rig.tenant.auth(), json=body)
        assert r.status_code == 201, r.text
        assert r.json()["active"] is (body is windows[0])
    await rig.rounds(m, 0, [DOWN, DOWN])
    assert len(await rig.outbox_rows(m)) == 2
