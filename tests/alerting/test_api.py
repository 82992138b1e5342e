"""The alerting API: incidents, delivery history, thresholds and maintenance windows, with the
monitor endpoints' roles and tenancy."""

import uuid

import httpx
import pytest

from tests.alerting.conftest import DOWN, UP, Rig
from tests.conftest import make_tenant


async def test_incidents_and_alert_history_of_a_monitor(rig: Rig, api: httpx.AsyncClient) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, DOWN, UP, UP])
    await rig.rounds(m, 4, [DOWN, DOWN])
    await rig.outbox().burst()
    base = f"/api/smtp-monitors/{m['public_id']}"
    r = await api.get(f"{base}/incidents", headers=rig.tenant.auth("readonly"))
    assert r.status_code == 200, r.text
    page = r.json()
    assert (page["total"], page["page"], page["perPage"]) == (2, 1, 50)
    open_, closed = page["items"]
    assert open_["state"] == "open" and open_["endedAt"] is None
    assert open_["durationSeconds"] is None
    assert closed["state"] == "closed" and closed["durationSeconds"] == 120
    assert closed["causeKind"] == "auth" and closed["countries"] == ["DE", "FR"]
    assert set(closed) == {
        "id",
        "monitorId",
        "state",
        "startedAt",
        "endedAt",
        "durationSeconds",
        "causeKind",
        "cause",
        "countries",
        "notified",
        "delivery",
        "endReason",
    }
    assert closed["endReason"] is None  # it recovered
    assert (closed["notified"], closed["delivery"]) == (True, "sent")

    r = await api.get(f"{base}/alert-history?perPage=2", headers=rig.tenant.auth())
    assert r.status_code == 200
    history = r.json()
    assert history["total"] == 6  # down, recovered, down; e-mail and SMS each
    assert len(history["items"]) == 2
    item = history["items"][0]
    assert item["status"] == "sent" and item["kind"] == "down" and item["error"] is None
    assert item["channel"] in ("email", "sms") and item["incidentId"] == open_["id"]


async def test_another_organization_sees_404_and_the_wrong_type_too(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    m = await rig.monitor()
    other = await make_tenant(rig.pool)
    for path in ("incidents", "alert-history", "alert-settings"):
        r = await api.get(f"/api/smtp-monitors/{m['public_id']}/{path}", headers=other.auth())
        assert r.status_code == 404
        r = await api.get(
            f"/api/imap-pop-monitors/{m['public_id']}/{path}", headers=rig.tenant.auth()
        )
        assert r.status_code == 404
    r = await api.get("/api/smtp-monitors/not-a-uuid/incidents", headers=rig.tenant.auth())
    assert r.status_code == 400


async def test_monitor_thresholds_override_the_organization_defaults(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    m = await rig.monitor()
    url = f"/api/smtp-monitors/{m['public_id']}/alert-settings"
    r = await api.get(url, headers=rig.tenant.auth("readonly"))
    assert r.json() == {
        "monitorId": str(m["public_id"]),
        "failureThreshold": None,
        "downAfterRounds": None,
        "recoverAfterRounds": None,
        "certExpiryDays": None,
        "confirmFailures": None,
        "findingEmailSeverities": None,
        "findingSmsSeverities": None,
        "findingChannelSeverities": None,
        "effective": {
            "failureThreshold": 0.5,
            "downAfterRounds": 2,
            "recoverAfterRounds": 2,
            "certExpiryDays": [21, 7],
            "confirmFailures": True,
            "findingEmailSeverities": ["critical", "warning"],
            "findingSmsSeverities": [],
            "findingChannelSeverities": ["critical", "warning"],
        },
    }
    r = await api.put("/api/alert-settings", headers=rig.tenant.auth(), json={"downAfterRounds": 3})
    assert r.json() == {
        "failureThreshold": 0.5,
        "downAfterRounds": 3,
        "recoverAfterRounds": 2,
        "certExpiryDays": [21, 7],
        "confirmFailures": True,
        "findingEmailSeverities": ["critical", "warning"],
        "findingSmsSeverities": [],
        "findingChannelSeverities": ["critical", "warning"],
    }
    r = await api.put(url, headers=rig.tenant.auth("member"), json={"downAfterRounds": 1})
    assert r.status_code == 200, r.text
    assert r.json()["downAfterRounds"] == 1
    assert r.json()["effective"] == {
        "failureThreshold": 0.5,
        "downAfterRounds": 1,
        "recoverAfterRounds": 2,
        "certExpiryDays": [21, 7],
        "confirmFailures": True,
        "findingEmailSeverities": ["critical", "warning"],
        "findingSmsSeverities": [],
        "findingChannelSeverities": ["critical", "warning"],
    }
    await rig.rounds(m, 0, [DOWN])
    assert len(await rig.incidents(m)) == 1  # one round was enough

    r = await api.put(url, headers=rig.tenant.auth("member"), json={})
    assert r.json()["effective"]["downAfterRounds"] == 3  # back to the organization's


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"failureThreshold": 1}, "failureThreshold"),
        ({"failureThreshold": -0.1}, "failureThreshold"),
        ({"downAfterRounds": 0}, "downAfterRounds"),
        ({"recoverAfterRounds": "2"}, "recoverAfterRounds"),
        ({"confirmFailures": "yes"}, "confirmFailures"),
        ({"rounds": 2}, "rounds"),
    ],
)
async def test_bad_thresholds_are_400_naming_the_field(
    rig: Rig, api: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    m = await rig.monitor()
    r = await api.put(
        f"/api/smtp-monitors/{m['public_id']}/alert-settings", headers=rig.tenant.auth(), json=body
    )
    assert r.status_code == 400, r.text
    assert r.json()["fields"] == [field]


async def test_only_writers_set_monitor_thresholds_and_only_admins_the_defaults(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    m = await rig.monitor()
    supporter = await make_tenant(rig.pool, supporter=True)
    url = f"/api/smtp-monitors/{m['public_id']}/alert-settings"
    r = await api.put(url, headers=rig.tenant.auth("readonly"), json={"downAfterRounds": 1})
    assert r.status_code == 403
    r = await api.get(url, headers=supporter.auth("supporter"))
    assert r.status_code == 200
    r = await api.put(url, headers=supporter.auth("supporter"), json={"downAfterRounds": 1})
    assert r.status_code == 403
    for role in ("member", "readonly"):
        r = await api.put(
            "/api/alert-settings", headers=rig.tenant.auth(role), json={"downAfterRounds": 1}
        )
        assert r.status_code == 403
    r = await api.get("/api/alert-settings", headers=rig.tenant.auth("readonly"))
    assert r.status_code == 200


async def test_maintenance_windows_roles_tenancy_and_listing(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    m = await rig.monitor()
    other = await make_tenant(rig.pool, supporter=True)
    body = {
        "monitorId": str(m["public_id"]),
        "weekday": 7,
        "startTime": "02:00",
        "durationMinutes": 120,
        "timezone": "Europe/Berlin",
    }
    for auth in (rig.tenant.auth("readonly"), other.auth("supporter")):
        assert (
            await api.post("/api/maintenance-windows", headers=auth, json=body)
        ).status_code == 403
    r = await api.post("/api/maintenance-windows", headers=other.auth(), json=body)
    assert r.status_code == 404  # another organization's monitor
    r = await api.post("/api/maintenance-windows", headers=rig.tenant.auth("member"), json=body)
    assert r.status_code == 201, r.text
    window = r.json()
    assert (window["kind"], window["weekday"], window["startTime"]) == ("weekly", 7, "02:00")
    assert window["startsAt"] is None and window["organizationId"] == rig.tenant.org_id

    r = await api.get(
        f"/api/maintenance-windows?monitorId={m['public_id']}", headers=rig.tenant.auth("readonly")
    )
    assert [w["id"] for w in r.json()["items"]] == [window["id"]]
    r = await api.get("/api/maintenance-windows", headers=other.auth())
    assert r.json()["total"] == 0
    r = await api.get(f"/api/maintenance-windows/{window['id']}", headers=other.auth())
    assert r.status_code == 404
    r = await api.get(f"/api/maintenance-windows/{window['id']}", headers=other.auth("supporter"))
    assert r.status_code == 200
    r = await api.delete(f"/api/maintenance-windows/{window['id']}", headers=other.auth())
    assert r.status_code == 404
    r = await api.delete(
        f"/api/maintenance-windows/{window['id']}", headers=rig.tenant.auth("readonly")
    )
    assert r.status_code == 403
    r = await api.delete(f"/api/maintenance-windows/{window['id']}", headers=rig.tenant.auth())
    assert r.status_code == 204
    r = await api.get(f"/api/maintenance-windows/{window['id']}", headers=rig.tenant.auth())
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T01:00:00Z"}, 400, "monitorId"),
        ({"customerId": "x", "startsAt": "2026-01-01T00:00:00Z"}, 400, "customerId"),
        (
            {"customerId": 1, "startsAt": "2026-01-01T02:00:00Z", "endsAt": "2026-01-01T01:00:00Z"},
            404,
            "customerId",
        ),
        (
            {"monitorId": "MONITOR", "weekday": 8, "startTime": "02:00", "durationMinutes": 5},
            400,
            "weekday",
        ),
        (
            {"monitorId": "MONITOR", "weekday": 1, "startTime": "2am", "durationMinutes": 5},
            400,
            "startTime",
        ),
        ({"monitorId": "MONITOR", "weekday": 1, "startTime": "02:00"}, 400, "durationMinutes"),
        (
            {
                "monitorId": "MONITOR",
                "weekday": 1,
                "startTime": "02:00",
                "durationMinutes": 5,
                "timezone": "Mars/Base",
            },
            400,
            "timezone",
        ),
        (
            {
                "monitorId": "MONITOR",
                "startsAt": "2026-01-01T02:00:00Z",
                "endsAt": "2026-01-01T01:00:00Z",
            },
            400,
            "endsAt",
        ),
        (
            {"monitorId": "MONITOR", "startsAt": "yesterday", "endsAt": "2026-01-01T01:00:00Z"},
            400,
            "startsAt",
        ),
        (
            {"monitorId": "MONITOR", "weekday": 1, "startsAt": "2026-01-01T00:00:00Z"},
            400,
            "startsAt",
        ),
        (
            {
                "monitorId": str(uuid.uuid4()),
                "weekday": 1,
                "startTime": "02:00",
                "durationMinutes": 5,
            },
            404,
            "monitorId",
        ),
        (
            {
                "monitorId": "MONITOR",
                "weekday": 1,
                "startTime": "02:00",
                "durationMinutes": 5,
                "x": 1,
            },
            400,
            "x",
        ),
    ],
)
async def test_bad_maintenance_windows_are_refused_naming_the_field(
    rig: Rig, api: httpx.AsyncClient, body: dict[str, object], code: int, field: str
) -> None:
    m = await rig.monitor()
    if body.get("monitorId") == "MONITOR":
        body = {**body, "monitorId": str(m["public_id"])}
    if body.get("customerId") == 1:
        other = await make_tenant(rig.pool)
        body = {**body, "customerId": other.customer_id}
    r = await api.post("/api/maintenance-windows", headers=rig.tenant.auth(), json=body)
    assert r.status_code == code, r.text
    assert field in r.json()["fields"]


@pytest.mark.parametrize("name", ["Relay\r\nBcc: x@evil.test", "Relay\nB", "Tab\there", "L\u2028S"])
async def test_a_monitor_name_with_control_characters_is_400_naming_it(
    rig: Rig, api: httpx.AsyncClient, name: str
) -> None:
    """A name goes into e-mail subjects: the native and the AlertSite API refuse line breaks."""
    body = {
        "customerId": rig.tenant.customer_public_id,
        "name": name,
        "hostname": "smtp.example.com",
    }
    r = await api.post("/api/smtp-monitors", json=body, headers=rig.tenant.auth())
    assert r.status_code == 400, r.text
    assert r.json()["fields"] == ["name"]
    assert "control characters" in r.json()["message"]

    m = await rig.monitor()
    r = await api.patch(
        f"/api/imap-pop-monitors/{m['public_id']}", json={"name": name}, headers=rig.tenant.auth()
    )
    assert r.status_code == 404  # an SMTP monitor: the IMAP/POP path does not have it
    r = await api.patch(
        f"/api/smtp-monitors/{m['public_id']}", json={"name": name}, headers=rig.tenant.auth()
    )
    assert (r.status_code, r.json()["fields"]) == (400, ["name"])

    alertsite = {"billing_plancode": "UBM - A/A", "name": name, "hostname": "smtp.example.com"}
    r = await api.post("/api/v3/monitors/email-smtp", json=alertsite, headers=rig.tenant.auth())
    assert r.status_code == 400, r.text
    (error,) = r.json()["errors"]  # AlertSite's shape, naming the field in its message
    assert error["message"].startswith("name must not contain control characters")


async def test_an_integral_float_is_an_integer(rig: Rig, api: httpx.AsyncClient) -> None:
    """JSON has one kind of number and JSON Schema's `integer` admits 74.0: the strict body check
    used to refuse it (the fuzzer's `downAfterRounds: 74.0` was a 400); 2.5 still is one."""
    r = await api.put(
        "/api/alert-settings", headers=rig.tenant.auth(), json={"downAfterRounds": 74.0}
    )
    assert r.status_code == 200, r.text
    assert r.json()["downAfterRounds"] == 74
    r = await api.put(
        "/api/alert-settings", headers=rig.tenant.auth(), json={"downAfterRounds": 2.5}
    )
    assert r.status_code == 400 and r.json()["fields"] == ["downAfterRounds"]
