# ruff: noqa: E501  (the pages' cURL bodies are kept verbatim, long lines included)
"""The public API pages (/work/shared/seeds, docs/api.md's "to the letter") as a table: each row
one statement of a page, cited by page and section, sent to the served API as a consumer with
only the pages in hand would send it. The pages' request examples are sent as written (the cURL
bodies byte for byte) and their answers held to the pages' response examples key for key; the
extras docs/api.md states (`publicId`, `allowedCheckCountryCodes`; secrets masked) are the only
keys beyond the page's, and each answer is checked against the OpenAPI document too."""

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api.helpers import ERROR_KEYS, ISO_MS, MASK, assert_documented
from tests.conftest import Tenant, make_tenant

SMTP, IMAP = "/api/smtp-monitors", "/api/imap-pop-monitors"
SEED_UUID = "11111111-1111-4111-8111-111111111111"  # the pages' customerId

# Seed 000 (and its German twin 001), "cURL": the -d body, verbatim but for the customer.
CURL_000 = """{
    "customerId": "11111111-1111-4111-8111-111111111111",
    "name": "Outbound SMTP",
    "hostname": "smtp.example.com",
    "port": 587,
    "status": "active",
    "checkInterval": 60,
    "timeoutSeconds": 30,
    "smtpConfig": {
      "secure": false,
      "ignoreTls": false,
      "requireTls": false,
      "auth": { "user": "username", "pass": "password" }
    }
  }"""
# Seed 002, "cURL": the -d body.
CURL_002 = """{
    "status": "disabled"
  }"""
# Seed 003, "cURL": the -d body (without the request body's tlsOptions).
CURL_003 = """{
    "customerId": "11111111-1111-4111-8111-111111111111",
    "name": "Mailbox Access",
    "hostname": "mail.example.com",
    "port": 993,
    "status": "active",
    "checkInterval": 30,
    "timeoutSeconds": 30,
    "imapPopConfig": { "protocol": "imap", "user": "monitor@example.com", "password": "password", "tls": true }
  }"""

# The keys of the pages' response examples ("Response"), and the extras docs/api.md states.
PAGE_000_KEYS = {
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
    "smtpConfig",
}
PAGE_003_KEYS = PAGE_000_KEYS - {"smtpConfig"} | {"imapPopConfig"}
DOCUMENTED_EXTRAS = {"publicId", "allowedCheckCountryCodes"}  # docs/api.md, "Responses carry"


def page_body(text: str, tenant: Tenant) -> str:
    return text.replace(SEED_UUID, tenant.customer_public_id)


def masked(config: dict[str, Any]) -> dict[str, Any]:
    """A page's config as our answers show it: secrets write-only (docs/api.md, "the seed's
    service echoes passwords; we deliberately do not")."""
    shown = copy.deepcopy(config)
    if "auth" in shown:
        shown["auth"]["pass"] = MASK
    if "password" in shown:
        shown["password"] = MASK
    return shown


@dataclass
class World:
    http: httpx.AsyncClient
    tenant: Tenant
    spec: dict[str, Any]

    async def send(
        self, method: str, path: str, body: str | dict[str, Any] | None = None, role: str = "admin"
    ) -> httpx.Response:
        headers = {**self.tenant.auth(role), "Content-Type": "application/json"}
        if isinstance(body, str):
            r = await self.http.request(method, path, content=body.encode(), headers=headers)
        else:
            r = await self.http.request(method, path, json=body, headers=headers)
        self.documented(r)
        return r

    async def monitor(self, path: str = SMTP, **fields: Any) -> dict[str, Any]:
        base = {
            "customerId": self.tenant.customer_id,
            "name": "Probe",
            "hostname": "mx.example.com",
        }
        r = await self.send("POST", path, {**base, **fields})
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    def documented(self, r: httpx.Response) -> None:
        assert_documented(self.spec, r)


def error(r: httpx.Response, status: int, message: str | None = None) -> dict[str, Any]:
    """Seeds' "Errors": the status, in our one error shape (docs/api.md "Errors")."""
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == ERROR_KEYS and body["statusCode"] == status, body
    if message is not None:
        assert body["message"].startswith(message), body
    return body


# --- the rows ---------------------------------------------------------------------------------


async def curl_000_answers_the_response_example(w: World) -> None:
    r = await w.send("POST", SMTP, page_body(CURL_000, w.tenant))
    assert r.status_code == 201, r.text
    got = r.json()
    assert set(got) == PAGE_000_KEYS | DOCUMENTED_EXTRAS, set(got) ^ PAGE_000_KEYS
    config = {"secure": False, "ignoreTls": False, "requireTls": False}
    shown = {**config, "auth": {"user": "username", "pass": MASK}}
    assert got["config"] == got["smtpConfig"] == shown
    assert got["customerId"] == w.tenant.customer_id  # the numeric id, as the example shows
    assert got["organizationId"] == w.tenant.org_id
    assert (got["port"], got["status"], got["checkInterval"], got["timeoutSeconds"]) == (
        587,
        "active",
        60,
        30,
    )
    assert got["notificationEmail"] is got["notificationPhoneNumber"] is None
    assert got["lastCheckedAt"] is None
    assert ISO_MS.match(got["createdAt"]) and got["createdAt"] == got["updatedAt"]


async def curl_002_answers_the_response_example(w: World) -> None:
    created = await w.monitor(port=587)
    r = await w.send("PATCH", f"{SMTP}/{created['publicId']}", CURL_002)
    assert r.status_code == 200, r.text
    got = r.json()
    assert set(got) == PAGE_000_KEYS | DOCUMENTED_EXTRAS, set(got) ^ PAGE_000_KEYS
    assert got["status"] == "disabled"
    assert got["config"] == got["smtpConfig"] == {}  # no config sent: the stored one stays


async def request_body_002_answers_the_response_example(w: World) -> None:
    created = await w.monitor(smtpConfig={"auth": {"user": "u", "pass": "p"}})
    config: dict[str, Any] = {
        "secure": False,
        "requireTls": True,
        "auth": {"user": "username", "pass": "password"},
    }
    page = {  # 002, "Request Body"
        "name": "Outbound SMTP (Primary)",
        "hostname": "smtp.example.com",
        "port": 587,
        "status": "paused",
        "checkInterval": 60,
        "timeoutSeconds": 30,
        "allowedCheckCountryCodes": ["de", "us"],
        "smtpConfig": config,
    }
    r = await w.send("PATCH", f"{SMTP}/{created['publicId']}", page)
    assert r.status_code == 200, r.text
    got = r.json()
    assert set(got) == PAGE_000_KEYS | DOCUMENTED_EXTRAS, set(got) ^ PAGE_000_KEYS
    assert got["status"] == "disabled"
    assert got["allowedCheckCountryCodes"] == ["DE", "US"]
    assert got["config"] == got["smtpConfig"] == masked(config)
    assert got["createdAt"] == created["createdAt"] and got["updatedAt"] >= created["updatedAt"]


async def curl_003_answers_the_response_example(w: World) -> None:
    r = await w.send("POST", IMAP, page_body(CURL_003, w.tenant))
    assert r.status_code == 201, r.text
    got = r.json()
    assert set(got) == PAGE_003_KEYS | DOCUMENTED_EXTRAS, set(got) ^ PAGE_003_KEYS
    config = {"protocol": "imap", "user": "monitor@example.com", "password": MASK, "tls": True}
    assert got["config"] == got["imapPopConfig"] == config
    assert (got["port"], got["checkInterval"], got["status"]) == (993, 30, "active")


async def minimal_create_answers_the_same_keys(w: World) -> None:
    """000/003 "Fields": customerId, name, hostname are the only required ones."""
    for path, keys in ((SMTP, PAGE_000_KEYS), (IMAP, PAGE_003_KEYS)):
        created = await w.monitor(path)
        assert set(created) == keys | DOCUMENTED_EXTRAS, set(created) ^ keys
        assert created["port"] is None and created["status"] == "active"
        listed = await w.send("GET", f"{path}?perPage=1")
        assert set(listed.json()["items"][0]) == keys | DOCUMENTED_EXTRAS


async def required_fields_are_400(w: World) -> None:
    base = {"customerId": w.tenant.customer_id, "name": "n", "hostname": "mx.example.com"}
    for path in (SMTP, IMAP):
        for field in base:
            body = {k: v for k, v in base.items() if k != field}
            assert error(await w.send("POST", path, body), 400)["fields"] == [field]


async def customer_id_number_or_uuid(w: World) -> None:
    """000/003 customerId: "either the internal numeric customer ID or the public customer
    UUID"; "400 Invalid Customer identifier"; 003: "404 Customer not found"."""
    for ident in (w.tenant.customer_id, str(w.tenant.customer_id), w.tenant.customer_public_id):
        assert (await w.monitor(customerId=ident))["customerId"] == w.tenant.customer_id
    base = {"name": "n", "hostname": "mx.example.com"}
    for bad in ("acme", "1.5", "", 0, -1, True):
        r = await w.send("POST", SMTP, {**base, "customerId": bad})
        assert error(r, 400)["fields"] == ["customerId"], bad
    r = await w.send("POST", IMAP, {**base, "customerId": SEED_UUID})  # no such customer
    error(r, 404, "Customer not found")


async def hostname_only(w: World) -> None:
    """000/003 hostname: "no protocol like https://, no path like /smtp" → 400 Invalid
    hostname."""
    for bad in ("https://smtp.example.com", "smtp.example.com/smtp", "imap://mail.example.com"):
        r = await w.send(
            "POST", SMTP, {"customerId": w.tenant.customer_id, "name": "n", "hostname": bad}
        )
        assert error(r, 400, "Invalid hostname")["fields"] == ["hostname"]


async def status_values_and_normalisation(w: World) -> None:
    """000 status "Allowed: active, maintenance, disabled, paused, inactive"; 002/003
    "paused and inactive are normalised to disabled" (create and PATCH)."""
    stored = {"active": "active", "maintenance": "maintenance", "disabled": "disabled"}
    stored |= {"paused": "disabled", "inactive": "disabled"}
    for sent, kept in stored.items():
        created = await w.monitor(IMAP, status=sent)
        assert created["status"] == kept
        r = await w.send("PATCH", f"{IMAP}/{created['publicId']}", {"status": sent})
        assert r.json()["status"] == kept
    error(
        await w.send("POST", SMTP, {"customerId": 1, "name": "n", "hostname": "h", "status": "on"}),
        400,
    )


async def countries_normalised(w: World) -> None:
    """002: allowedCheckCountryCodes "normalised to upper-case ISO codes (DE, US); an empty
    list becomes null"."""
    created = await w.monitor()
    url = f"{SMTP}/{created['publicId']}"
    r = await w.send("PATCH", url, {"allowedCheckCountryCodes": ["de", "us"]})
    assert r.json()["allowedCheckCountryCodes"] == ["DE", "US"]
    r = await w.send("PATCH", url, {"allowedCheckCountryCodes": []})
    assert r.json()["allowedCheckCountryCodes"] is None


async def config_alias_and_kept(w: World) -> None:
    """002: "smtpConfig or config (alias). If both are missing, the stored config stays"."""
    created = await w.monitor(config={"secure": True})
    assert created["smtpConfig"] == created["config"] == {"secure": True}
    url = f"{SMTP}/{created['publicId']}"
    r = await w.send("PATCH", url, {"name": "renamed", "port": 465})
    assert r.json()["smtpConfig"] == {"secure": True}
    r = await w.send("PATCH", url, {"config": {"requireTls": True}})
    assert r.json()["smtpConfig"] == r.json()["config"] == {"requireTls": True}


async def readonly_only_status(w: World) -> None:
    """002: "readonly may only change status"; 403 otherwise; 000/003: 403 readonly create."""
    created = await w.monitor()
    url = f"{SMTP}/{created['publicId']}"
    r = await w.send("PATCH", url, {"status": "inactive"}, role="readonly")
    assert r.status_code == 200 and r.json()["status"] == "disabled", r.text
    error(await w.send("PATCH", url, {"name": "x"}, role="readonly"), 403)
    error(await w.send("PATCH", url, {"status": "active", "port": 26}, role="readonly"), 403)
    body = {"customerId": w.tenant.customer_id, "name": "n", "hostname": "mx.example.com"}
    error(await w.send("POST", IMAP, body, role="readonly"), 403)


async def public_id_errors(w: World) -> None:
    """002 "Errors": 400 SMTP Monitor Public ID (UUID) required; 404 Not found."""
    error(
        await w.send("PATCH", f"{SMTP}/200", {"status": "disabled"}),
        400,
        "SMTP Monitor public ID (UUID) required",
    )
    error(await w.send("PATCH", f"{SMTP}/{SEED_UUID}", {"status": "disabled"}), 404, "Not found")


async def unauthorized(w: World) -> None:
    """000/002/003 "Authentication": Authorization: Bearer <token>; else 401."""
    for method, path in (("POST", SMTP), ("PATCH", f"{SMTP}/{SEED_UUID}"), ("POST", IMAP)):
        r = await w.http.request(method, path, json={}, headers={"Authorization": "Bearer nope"})
        error(r, 401)


async def imap_defaults(w: World) -> None:
    """003 imapPopConfig: protocol imap|pop3 (default imap); port null: the worker's default."""
    created = await w.monitor(IMAP, imapPopConfig={"protocol": "pop3", "tls": True})
    assert created["imapPopConfig"] == {"protocol": "pop3", "tls": True}
    assert created["port"] is None
    r = await w.send(
        "POST",
        IMAP,
        {"customerId": 1, "name": "n", "hostname": "h", "imapPopConfig": {"protocol": "smtp"}},
    )
    assert error(r, 400)["fields"] == ["imapPopConfig.protocol"]


ROWS: list[tuple[str, Callable[[World], Awaitable[None]]]] = [
    ("000/001 cURL + Response", curl_000_answers_the_response_example),
    ("002 cURL + Response", curl_002_answers_the_response_example),
    ("002 Request Body + Response", request_body_002_answers_the_response_example),
    ("003 cURL + Response", curl_003_answers_the_response_example),
    ("000/003 Fields: optional ones", minimal_create_answers_the_same_keys),
    ("000/003 Fields: required", required_fields_are_400),
    ("000/003 Fields customerId + Errors", customer_id_number_or_uuid),
    ("000/003 Fields hostname + Errors", hostname_only),
    ("000/002/003 status", status_values_and_normalisation),
    ("002 Hinweise allowedCheckCountryCodes", countries_normalised),
    ("002 Hinweise config alias", config_alias_and_kept),
    ("002 Hinweise readonly + Errors 403", readonly_only_status),
    ("002 Errors 400/404", public_id_errors),
    ("000/002/003 Authentication", unauthorized),
    ("003 imapPopConfig", imap_defaults),
]


@pytest.mark.parametrize("row", [check for _, check in ROWS], ids=[cite for cite, _ in ROWS])
async def test_page_statement(
    row: Callable[[World], Awaitable[None]], http: httpx.AsyncClient, pool: Any
) -> None:
    spec = (await http.get("/schema/openapi.json")).json()
    await row(World(http, await make_tenant(pool), spec))
