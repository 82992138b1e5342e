"""Shared pieces of the API tests: the seeds' bodies, the response key sets, assertions."""

import copy
import re
from typing import Any

import asyncpg
import httpx
import jsonschema_rs

from controller.secrets.box import SecretBox
from tests.conftest import Tenant

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MASK = "********"

# The keys of the seeds' responses (000/002 for SMTP, 003 for IMAP/POP), plus our two extras
# (docs/api.md); the other extra fields are shown only when set.
COMMON_KEYS = {
    "id",
    "organizationId",
    "customerId",
    "name",
    "hostname",
    "port",
    "status",
    "checkInterval",
    "timeoutSeconds",
    "notificationEmail",
    "notificationPhoneNumber",
    "lastCheckedAt",
    "createdAt",
    "updatedAt",
    "config",
    "publicId",
    "allowedCheckCountryCodes",
}
SMTP_KEYS = COMMON_KEYS | {"smtpConfig"}
IMAP_KEYS = COMMON_KEYS | {"imapPopConfig"}
# GET one (only) adds the latest result per country.
SMTP_GET_KEYS = SMTP_KEYS | {"latestResults"}
ERROR_KEYS = {"statusCode", "code", "message", "fields"}

SMTP = "/api/smtp-monitors"
IMAP = "/api/imap-pop-monitors"
PATHS = {"smtp": SMTP, "imap": IMAP}
CONFIG_KEY = {"smtp": "smtpConfig", "imap": "imapPopConfig"}

# Seed 000: the request body of POST /api/smtp-monitors (customerId set per tenant).
SEED_000 = {
    "customerId": "11111111-1111-4111-8111-111111111111",
    "name": "Outbound SMTP",
    "hostname": "smtp.example.com",
    "port": 587,
    "status": "active",
    "checkInterval": 60,
    "timeoutSeconds": 30,
    "smtpConfig": {
        "secure": False,
        "ignoreTls": False,
        "requireTls": False,
        "auth": {"user": "username", "pass": "password"},
    },
}
# Seed 002: the request body of PATCH /api/smtp-monitors/:smtpMonitorPublicId.
SEED_002_PATCH = {
    "name": "Outbound SMTP (Primary)",
    "hostname": "smtp.example.com",
    "port": 587,
    "status": "paused",
    "checkInterval": 60,
    "timeoutSeconds": 30,
    "allowedCheckCountryCodes": ["de", "us"],
    "smtpConfig": {
        "secure": False,
        "requireTls": True,
        "auth": {"user": "username", "pass": "password"},
    },
}
# Seed 003: the request body of POST /api/imap-pop-monitors.
SEED_003 = {
    "customerId": "11111111-1111-4111-8111-111111111111",
    "name": "Mailbox Access",
    "hostname": "mail.example.com",
    "port": 993,
    "status": "active",
    "checkInterval": 30,
    "timeoutSeconds": 30,
    "imapPopConfig": {
        "protocol": "imap",
        "user": "monitor@example.com",
        "password": "password",
        "tls": True,
        "tlsOptions": {"rejectUnauthorized": True},
    },
}


def seed_body(kind: str, tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    """The seed's create body for `kind` with the tenant's customer and `overrides` applied."""
    body = copy.deepcopy(SEED_000 if kind == "smtp" else SEED_003)
    body["customerId"] = tenant.customer_public_id
    body.update(overrides)
    return body


def minimal_body(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    """Only the required fields (customerId, name, hostname)."""
    return {
        "customerId": tenant.customer_id,
        "name": "Probe",
        "hostname": "mx.example.com",
        **overrides,
    }


async def create(
    http: httpx.AsyncClient, tenant: Tenant, kind: str = "smtp", role: str = "admin", **fields: Any
) -> dict[str, Any]:
    """Create a monitor from the seed body (with `fields` replacing keys); assert 201."""
    r = await http.post(
        PATHS[kind], json=seed_body(kind, tenant, **fields), headers=tenant.auth(role)
    )
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def as_got(created: dict[str, Any]) -> dict[str, Any]:
    """What GET one answers for a monitor no round has run for yet: the same keys and values as
    create, list and PATCH, plus `latestResults` (empty)."""
    return {**created, "latestResults": []}


def assert_error(
    r: httpx.Response,
    status: int,
    *,
    fields: list[str] | None = None,
    code: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """`r` is a `status` error in our one shape, naming exactly `fields` (when given)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body: dict[str, Any] = r.json()
    assert set(body) == ERROR_KEYS, body
    assert body["statusCode"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["fields"], list)
    if fields is not None:
        assert body["fields"] == fields, body
    if code is not None:
        assert body["code"] == code, body
    if message is not None:
        assert body["message"] == message, body
    return body


async def stored_row(pool: asyncpg.Pool, public_id: str) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT type, config, config::text AS config_text, port, status, hostname,"
            " allowed_country_codes FROM monitors WHERE public_id = $1::uuid",
            public_id,
        )
    assert row is not None
    return row


def opened(box: SecretBox, sealed: object) -> str:
    assert isinstance(sealed, str) and sealed.startswith("enc:v1:"), sealed
    return box.open(sealed)


def operation_of(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The OpenAPI operation `spec` states for a request of `method` to `path` (a real path)."""
    for template, item in spec["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            operation: dict[str, Any] = item[method.lower()]
            return operation
    raise AssertionError(f"{path} is not in /schema")


def assert_documented(spec: dict[str, Any], r: httpx.Response) -> None:
    """`r` is an answer `spec` states: its status for its operation, and its body's schema."""
    responses = operation_of(spec, r.request.method, r.request.url.path)["responses"]
    assert str(r.status_code) in responses, (r.request.url.path, r.status_code, sorted(responses))
    content = responses[str(r.status_code)].get("content")
    if r.content:
        assert content, (r.request.url.path, r.status_code, "no body documented")
        schema = {"components": spec["components"], **content["application/json"]["schema"]}
        jsonschema_rs.Draft202012Validator(schema).validate(r.json())
