"""Shared pieces of the AlertSite-compatible API tests."""

from typing import Any

import asyncpg
import httpx

from tests.conftest import Tenant

V3 = "/api/v3"
MINIMAL = {  # the seed's SMTP monitor parameters
    "billing_plancode": "UBM - A/A",
    "name": "Email Sample Monitor",
    "hostname": "smtp.mycompany.com",
    "interval": 15,
    "enabled": True,
}
MONITOR_KEYS = {  # what GET answers for a monitor: AlertSite's fields and mailprobe's three
    "id",
    "type",
    "name",
    "hostname",
    "port",
    "enabled",
    "interval",
    "timeout",
    "locations",
    "ssl",
    "login",
    "password",
    "access_type",
    "notify_on_error",
    "billing_plancode",
    "alert_note",
    "note",
    "ipv4",
    "home_location",
    "mode",
    "allow_internal_testing",
    "has_sla",
    "has_performance_alerts",
    "has_active_performance_alerts",
    "rotate_locations",
    "resolve_dns",
    "blackout_ids",
    "custom_properties",
}
# The common fields mailprobe has no counterpart for, as GET answers them.
CONSTANT_FIELDS: dict[str, object] = {
    "billing_plancode": None,
    "alert_note": None,
    "note": None,
    "ipv4": None,
    "home_location": None,
    "mode": None,
    "allow_internal_testing": False,
    "has_sla": False,
    "has_performance_alerts": False,
    "has_active_performance_alerts": False,
    "rotate_locations": False,
    "resolve_dns": True,
    "blackout_ids": [],
    "custom_properties": [],
}


def as_error(r: httpx.Response, status: int, message: str | None = None) -> str:
    """`r` is a `status` error in AlertSite's shape; returns its message."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"errors"}, body
    assert isinstance(body["errors"], list) and len(body["errors"]) == 1, body
    (error,) = body["errors"]
    assert set(error) == {"code", "message"}, body
    assert error["code"] == status, body
    assert isinstance(error["message"], str) and error["message"], body
    if message is not None:
        assert error["message"] == message, body
    text: str = error["message"]
    return text


async def create(
    http: httpx.AsyncClient,
    tenant: Tenant,
    kind: str = "email-smtp",
    role: str = "admin",
    **fields: Any,
) -> str:
    """Create through /api/v3 (the seed's body with `fields` replacing keys); the id."""
    r = await http.post(
        f"{V3}/monitors/{kind}", json={**MINIMAL, **fields}, headers=tenant.auth(role)
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id"} and isinstance(body["id"], str) and body["id"].isdigit(), body
    monitor_id: str = body["id"]
    return monitor_id


async def native(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, monitor_id: str
) -> dict[str, Any]:
    """The monitor as the native API shows it (`/api/smtp-monitors` or `/api/imap-pop-monitors`)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT public_id, type FROM monitors WHERE id = $1", int(monitor_id)
        )
    assert row is not None
    path = "/api/smtp-monitors" if row["type"] == "smtp" else "/api/imap-pop-monitors"
    r = await http.get(f"{path}/{row['public_id']}", headers=tenant.auth())
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def stored(pool: asyncpg.Pool, monitor_id: str) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT m.type, m.config, m.status, m.customer_id, c.name AS customer_name,"
            " c.is_default FROM monitors m JOIN customers c ON c.id = m.customer_id"
            " WHERE m.id = $1",
            int(monitor_id),
        )
    assert row is not None
    return row
