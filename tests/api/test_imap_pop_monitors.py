"""IMAP/POP monitors (seed 003): the seed body, protocol, password secrecy, type isolation."""

import copy
from typing import Any

import asyncpg
import httpx
import pytest

from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from tests.api.helpers import (
    IMAP,
    IMAP_KEYS,
    ISO_MS,
    MASK,
    SMTP,
    assert_error,
    create,
    minimal_body,
    opened,
    seed_body,
    stored_row,
)
from tests.conftest import Tenant


async def test_seed_003_body_gives_seed_response_shape(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """POST with seed 003's body → 201 with exactly the seed's keys; password masked."""
    r = await http.post(IMAP, json=seed_body("imap", tenant), headers=tenant.auth())
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == IMAP_KEYS
    assert body["organizationId"] == tenant.org_id
    assert body["customerId"] == tenant.customer_id
    assert (body["name"], body["hostname"], body["port"]) == (
        "Mailbox Access",
        "mail.example.com",
        993,
    )
    assert (body["status"], body["checkInterval"], body["timeoutSeconds"]) == ("active", 30, 30)
    assert body["notificationEmail"] is None and body["notificationPhoneNumber"] is None
    assert body["lastCheckedAt"] is None and body["allowedCheckCountryCodes"] is None
    assert ISO_MS.match(body["createdAt"]) and ISO_MS.match(body["updatedAt"])
    shown = {
        "protocol": "imap",
        "user": "monitor@example.com",
        "password": MASK,
        "tls": True,
        "tlsOptions": {"rejectUnauthorized": True},
    }
    assert body["config"] == shown
    assert body["imapPopConfig"] == shown
    row = await stored_row(pool, body["publicId"])
    assert row["type"] == "imap"
    assert '"password"' in row["config_text"] and ': "password"' not in row["config_text"]
    assert (
        opened(SecretBox(settings.secrets.secrets_key or ""), row["config"]["password"])
        == "password"
    )


async def test_seed_003_curl_body_without_tls_options(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = seed_body("imap", tenant)
    del body["imapPopConfig"]["tlsOptions"]
    r = await http.post(IMAP, json=body, headers=tenant.auth())
    assert r.status_code == 201
    assert r.json()["imapPopConfig"] == {
        "protocol": "imap",
        "user": "monitor@example.com",
        "password": MASK,
        "tls": True,
    }


@pytest.mark.parametrize(
    ("given", "stored"),
    [("imap", "imap"), ("IMAP", "imap"), ("pop3", "pop3"), ("POP3", "pop3"), (" Pop3 ", "pop3")],
)
async def test_protocol_case_insensitive_and_stored_as_type(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, given: str, stored: str
) -> None:
    r = await http.post(
        IMAP, json=minimal_body(tenant, imapPopConfig={"protocol": given}), headers=tenant.auth()
    )
    assert r.status_code == 201, r.text
    assert r.json()["imapPopConfig"] == {"protocol": stored}
    assert (await stored_row(pool, r.json()["publicId"]))["type"] == stored


@pytest.mark.parametrize("protocol", ["smtp", "pop", "imaps", ""])
@pytest.mark.parametrize("key", ["imapPopConfig", "config"])
async def test_invalid_protocol_is_400(
    http: httpx.AsyncClient, tenant: Tenant, key: str, protocol: str
) -> None:
    r = await http.post(
        IMAP, json=minimal_body(tenant, **{key: {"protocol": protocol}}), headers=tenant.auth()
    )
    assert_error(r, 400, fields=[f"{key}.protocol"])


async def test_protocol_defaults_to_imap(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """No imapPopConfig, or one without protocol: an IMAP monitor (seed 003's default)."""
    for extra in ({}, {"imapPopConfig": {"tls": False}}, {"imapPopConfig": None}):
        r = await http.post(IMAP, json=minimal_body(tenant, **extra), headers=tenant.auth())
        assert r.status_code == 201, r.text
        assert (await stored_row(pool, r.json()["publicId"]))["type"] == "imap"
        assert set(r.json()) == IMAP_KEYS


async def test_config_alias(http: httpx.AsyncClient, tenant: Tenant) -> None:
    cfg = {"protocol": "pop3", "user": "u", "password": "p", "tls": True}
    r = await http.post(IMAP, json=minimal_body(tenant, config=cfg), headers=tenant.auth())
    assert r.status_code == 201
    shown = {**cfg, "password": MASK}
    assert r.json()["config"] == shown and r.json()["imapPopConfig"] == shown


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"foo": 1}, "imapPopConfig.foo"),
        ({"pass": "x"}, "imapPopConfig.pass"),
        ({"tlsOptions": {"sni": "x"}}, "imapPopConfig.tlsOptions.sni"),
        ({"tls": "yes"}, "imapPopConfig.tls"),
        ({"tls": 1}, "imapPopConfig.tls"),
        ({"protocol": 3}, "imapPopConfig.protocol"),
        ({"user": ["u"]}, "imapPopConfig.user"),
        ({"password": 1234}, "imapPopConfig.password"),
        (
            {"tlsOptions": {"rejectUnauthorized": "false"}},
            "imapPopConfig.tlsOptions.rejectUnauthorized",
        ),
        ("imap", "imapPopConfig"),
    ],
)
async def test_config_unknown_keys_and_wrong_types_are_400(
    http: httpx.AsyncClient, tenant: Tenant, cfg: object, field: str
) -> None:
    r = await http.post(IMAP, json=minimal_body(tenant, imapPopConfig=cfg), headers=tenant.auth())
    assert_error(r, 400, fields=[field])


async def test_smtp_config_key_rejected_on_imap(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post(
        IMAP, json=minimal_body(tenant, smtpConfig={"secure": True}), headers=tenant.auth()
    )
    assert_error(r, 400, fields=["smtpConfig"])
    r = await http.post(
        SMTP, json=minimal_body(tenant, imapPopConfig={"tls": True}), headers=tenant.auth()
    )
    assert_error(r, 400, fields=["imapPopConfig"])


async def test_patch_mask_keeps_password_and_no_config_keeps_config(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    box = SecretBox(settings.secrets.secrets_key or "")
    created = await create(http, tenant, "imap")
    url = f"{IMAP}/{created['publicId']}"
    # no config at all: stored config unchanged
    r = await http.patch(url, json={"status": "inactive"}, headers=tenant.auth())
    assert r.status_code == 200
    assert r.json()["status"] == "disabled"
    assert r.json()["imapPopConfig"] == created["imapPopConfig"]
    # the response's config sent back (password "********"): the secret is kept
    echoed = copy.deepcopy(created["imapPopConfig"])
    r = await http.patch(url, json={"imapPopConfig": echoed}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert r.json()["imapPopConfig"] == echoed
    row = await stored_row(pool, created["publicId"])
    assert opened(box, row["config"]["password"]) == "password"
    # ...but not for another user name: the password is bound to the user it was given with
    echoed["user"] = "other@example.com"
    r = await http.patch(url, json={"imapPopConfig": echoed}, headers=tenant.auth())
    assert_error(r, 400, fields=["imapPopConfig.password"], code="secret_required")
    # a new password replaces it
    r = await http.patch(url, json={"config": {**echoed, "password": "n3w"}}, headers=tenant.auth())
    assert r.status_code == 200 and r.json()["config"]["password"] == MASK
    row = await stored_row(pool, created["publicId"])
    assert opened(box, row["config"]["password"]) == "n3w"
    assert "n3w" not in row["config_text"]


async def test_patch_protocol_changes_type(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    created = await create(http, tenant, "imap")
    url = f"{IMAP}/{created['publicId']}"
    cfg = {"protocol": "POP3", "user": "u", "password": "pop-pw", "tls": False}
    r = await http.patch(url, json={"imapPopConfig": cfg, "port": None}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert r.json()["imapPopConfig"]["protocol"] == "pop3"
    assert r.json()["port"] is None
    assert (await stored_row(pool, created["publicId"]))["type"] == "pop3"
    # still an IMAP/POP monitor
    r = await http.get(url, headers=tenant.auth())
    assert r.status_code == 200
    r = await http.patch(url, json={"imapPopConfig": {"protocol": "smtp"}}, headers=tenant.auth())
    assert_error(r, 400, fields=["imapPopConfig.protocol"])


async def test_mask_without_stored_password_is_400(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post(
        IMAP, json=minimal_body(tenant, imapPopConfig={"password": MASK}), headers=tenant.auth()
    )
    assert_error(r, 400, fields=["imapPopConfig.password"])


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_type_isolation_between_smtp_and_imap_pop(
    http: httpx.AsyncClient, tenant: Tenant, protocol: str
) -> None:
    """An IMAP/POP monitor is listed and addressable only under /api/imap-pop-monitors."""
    cfg = {**seed_body("imap", tenant)["imapPopConfig"], "protocol": protocol}
    mailbox = await create(http, tenant, "imap", imapPopConfig=cfg)
    smtp = await create(http, tenant, "smtp")
    h = tenant.auth()
    for method in ("GET", "PATCH", "DELETE"):
        kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "PATCH" else {}
        r = await http.request(method, f"{SMTP}/{mailbox['publicId']}", headers=h, **kwargs)
        assert_error(r, 404)
        r = await http.request(method, f"{IMAP}/{smtp['publicId']}", headers=h, **kwargs)
        assert_error(r, 404)
    smtp_list = (await http.get(SMTP, headers=h)).json()
    imap_list = (await http.get(IMAP, headers=h)).json()
    assert [m["publicId"] for m in smtp_list["items"]] == [smtp["publicId"]]
    assert [m["publicId"] for m in imap_list["items"]] == [mailbox["publicId"]]
    assert set(smtp_list["items"][0]) == {*IMAP_KEYS - {"imapPopConfig"}, "smtpConfig"}
    assert set(imap_list["items"][0]) == IMAP_KEYS
    # both still there
    assert (await http.get(f"{IMAP}/{mailbox['publicId']}", headers=h)).status_code == 200
    assert (await http.get(f"{SMTP}/{smtp['publicId']}", headers=h)).status_code == 200


async def test_delete_then_get_is_404(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(http, tenant, "imap")
    url = f"{IMAP}/{created['publicId']}"
    r = await http.delete(url, headers=tenant.auth())
    assert r.status_code == 204 and r.content == b""
    assert_error(await http.get(url, headers=tenant.auth()), 404)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_bad_public_id_is_400(http: httpx.AsyncClient, tenant: Tenant, method: str) -> None:
    kwargs: dict[str, Any] = {"json": {"status": "active"}} if method == "PATCH" else {}
    r = await http.request(method, f"{IMAP}/nope", headers=tenant.auth(), **kwargs)
    assert_error(r, 400, fields=["publicId"], message="IMAP/POP Monitor public ID (UUID) required")
