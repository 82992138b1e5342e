"""Garbage in: one JSON error shape for every 4xx, and never a 500."""

import json
from typing import Any

import httpx
import pytest

from tests.api.helpers import IMAP, PATHS, SMTP, as_got, assert_error, create, minimal_body
from tests.conftest import Tenant

KINDS = ["smtp", "imap"]
MAX_BODY = 64 * 1024


def raw(tenant: Tenant, content: bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {"content": content, "headers": {**tenant.auth(), "content-type": content_type}}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "content",
    [
        b"{bad",
        b'{"name": "x",}',
        b"{'name': 'x'}",
        b"",
        b"   ",
        b"null",
        b"[]",
        b'[{"name": "x"}]',
        b'"a string"',
        b"42",
        b"true",
        b"1e999",
        b"\xff\xfe{\x00}",
        b'{"name": "\xff\xfe"}',  # not UTF-8 inside a string (msgspec: UnicodeDecodeError)
        b'{"name": "\\ud800"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
    ],
    ids=lambda c: repr(c[:16]),
)
async def test_malformed_bodies_are_400_in_our_shape(
    http: httpx.AsyncClient, tenant: Tenant, kind: str, content: bytes
) -> None:
    """Broken JSON, a non-object body, absurd nesting: 400, not 500, on create and update."""
    r = await http.post(PATHS[kind], **raw(tenant, content))
    assert_error(r, 400)
    created = await create(http, tenant, kind)
    r = await http.patch(f"{PATHS[kind]}/{created['publicId']}", **raw(tenant, content))
    assert_error(r, 400)


@pytest.mark.parametrize(
    "content", [b"{bad", b"{", b'{"name": "x"', b"[", b"nul", b'"abc'], ids=repr
)
async def test_malformed_json_has_code_invalid_json(
    http: httpx.AsyncClient, tenant: Tenant, content: bytes
) -> None:
    """Broken JSON, cut short or not, is one error: `invalid_json`, "Invalid request body: JSON
    is malformed: ..." (the seeds' 400 "invalid request body"), AlertSite's layer the same text."""
    for path in (SMTP, "/api/customers"):
        body = assert_error(await http.post(path, **raw(tenant, content)), 400, code="invalid_json")
        assert body["message"].startswith("Invalid request body: JSON is malformed"), body
    r = await http.post("/api/v3/monitors/email-smtp", **raw(tenant, content))
    assert r.status_code == 400, r.text
    (error,) = r.json()["errors"]
    assert error["message"].startswith("Invalid request body: JSON is malformed"), error


async def test_array_body_is_invalid_body(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post(SMTP, json=[minimal_body(tenant)], headers=tenant.auth())
    body = assert_error(r, 400, code="invalid_body", fields=[])
    assert "object" in body["message"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customerId", {"id": 1}),
        ("name", ["x"]),
        ("name", 12),
        ("hostname", {"host": "a"}),
        ("port", "twenty-five"),
        ("status", ["active"]),
        ("checkInterval", "sixty"),
        ("timeoutSeconds", {}),
        ("allowedCheckCountryCodes", "DE,US"),
        ("notificationEmail", False),
        ("notificationPhoneNumber", 4915112345678),
        ("config", 5),
    ],
)
async def test_wrong_types_are_400_naming_the_field(
    http: httpx.AsyncClient, tenant: Tenant, kind: str, field: str, value: object
) -> None:
    r = await http.post(
        PATHS[kind], json=minimal_body(tenant, **{field: value}), headers=tenant.auth()
    )
    assert_error(r, 400, fields=[field])
    created = await create(http, tenant, kind)
    r = await http.patch(
        f"{PATHS[kind]}/{created['publicId']}", json={field: value}, headers=tenant.auth()
    )
    assert_error(r, 400, fields=[field])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_body_over_64_kib_is_413(
    http: httpx.AsyncClient, tenant: Tenant, kind: str, method: str
) -> None:
    created = await create(http, tenant, kind)
    url = PATHS[kind] if method == "POST" else f"{PATHS[kind]}/{created['publicId']}"
    body = minimal_body(tenant, name="x" * (MAX_BODY + 1))
    r = await http.request(method, url, json=body, headers=tenant.auth())
    assert_error(r, 413, code="body_too_large")

    # also when the client does not announce the length (chunked)
    async def chunks() -> Any:
        data = json.dumps(body).encode()
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    r = await http.request(
        method, url, content=chunks(), headers={**tenant.auth(), "content-type": "application/json"}
    )
    assert_error(r, 413)
    assert (
        await http.get(f"{PATHS[kind]}/{created['publicId']}", headers=tenant.auth())
    ).json() == as_got(created)


async def test_body_just_under_limit_is_judged_on_content(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    """A big but allowed body reaches validation (here: name too long → 400, not 413)."""
    body = minimal_body(tenant, name="x" * (MAX_BODY - 200))
    r = await http.post(SMTP, json=body, headers=tenant.auth())
    assert_error(r, 400, fields=["name"])


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_non_json_bodies_are_4xx_not_500(
    http: httpx.AsyncClient, tenant: Tenant, content_type: str
) -> None:
    r = await http.post(SMTP, **raw(tenant, b"name=x&hostname=y", content_type))
    assert_error(r, 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", f"{SMTP}/00000000-0000-4000-8000-000000000000"),
        ("DELETE", SMTP),
        ("PATCH", IMAP),
        ("POST", "/api/customers/1"),
    ],
)
async def test_unsupported_method_is_405(
    http: httpx.AsyncClient, tenant: Tenant, method: str, path: str
) -> None:
    assert_error(await http.request(method, path, json={}, headers=tenant.auth()), 405)


async def test_unknown_route_is_404_in_our_shape(http: httpx.AsyncClient, tenant: Tenant) -> None:
    assert_error(await http.get("/api/pop-monitors", headers=tenant.auth()), 404)
    assert_error(await http.get(f"{SMTP}/a/b", headers=tenant.auth()), 404)


@pytest.mark.parametrize(
    "raw_id",
    [
        "x",
        "0",
        "%00",
        "33333333333343338333333333333333333",
        "33333333-3333-4333-8333-3333333333333",
        "' OR 1=1 --",
        "%F0%9F%93%AB",
    ],
)
async def test_bad_uuid_paths_are_400_not_500(
    http: httpx.AsyncClient, tenant: Tenant, raw_id: str
) -> None:
    r = await http.get(f"{SMTP}/{raw_id}", headers=tenant.auth())
    assert_error(r, 400, message="SMTP Monitor public ID (UUID) required")


async def test_uuid_path_forms_are_accepted(http: httpx.AsyncClient, tenant: Tenant) -> None:
    """The public id in upper case or without dashes addresses the same monitor."""
    created = await create(http, tenant)
    for form in (created["publicId"].upper(), created["publicId"].replace("-", "")):
        r = await http.get(f"{SMTP}/{form}", headers=tenant.auth())
        assert r.status_code == 200 and r.json()["id"] == created["id"]


async def test_error_message_is_for_people(http: httpx.AsyncClient, tenant: Tenant) -> None:
    """The message says what is wrong about which field."""
    r = await http.post(
        SMTP, json=minimal_body(tenant, hostname="https://smtp.example.com"), headers=tenant.auth()
    )
    body = assert_error(r, 400, fields=["hostname"], code="invalid_hostname")
    assert "hostname" in body["message"].lower()
    r = await http.post(SMTP, json=minimal_body(tenant, port=70000), headers=tenant.auth())
    assert "65535" in assert_error(r, 400, fields=["port"])["message"]


@pytest.mark.parametrize("path", ["/api/customers", "/api/users"])
async def test_other_resources_reject_garbage_cleanly(
    http: httpx.AsyncClient, tenant: Tenant, path: str
) -> None:
    for content in (b"{bad", b"[]", b"null", b'{"name": 1, "email": 2}'):
        assert_error(await http.post(path, **raw(tenant, content)), 400)
    assert_error(
        await http.post(path, json={"name": "x" * (MAX_BODY + 1)}, headers=tenant.auth()), 413
    )
    assert_error(
        await http.post(
            path, json={"name": "x", "email": "e\u0000@example.com"}, headers=tenant.auth()
        ),
        400,
    )
    assert_error(
        await http.get(path, params={"perPage": 201}, headers=tenant.auth()),
        400,
        fields=["perPage"],
    )
