"""SMTP monitors (seeds 000 and 002): the seed bodies, the response shape, secrets, smtpConfig."""

import copy
from typing import Any

import asyncpg
import httpx
import pytest

from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from tests.api.helpers import (
    ISO_MS,
    MASK,
    SEED_002_PATCH,
    SMTP,
    SMTP_GET_KEYS,
    SMTP_KEYS,
    as_got,
    assert_error,
    create,
    minimal_body,
    opened,
    seed_body,
    stored_row,
)
from tests.conftest import Tenant

SEED_CONFIG_SHOWN = {
    "secure": False,
    "ignoreTls": False,
    "requireTls": False,
    "auth": {"user": "username", "pass": MASK},
}


async def test_seed_000_body_gives_seed_response_shape(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    """POST with seed 000's body (customer by UUID) → 201 with exactly the seed's keys."""
    r = await http.post(SMTP, json=seed_body("smtp", tenant), headers=tenant.auth())
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == SMTP_KEYS
    assert isinstance(body["id"], int)
    assert len(body["publicId"]) == 36
    assert body["organizationId"] == tenant.org_id
    assert body["customerId"] == tenant.customer_id  # numeric in the response, as in the seed
    assert {k: body[k] for k in ("name", "hostname", "port", "status")} == {
        "name": "Outbound SMTP",
        "hostname": "smtp.example.com",
        "port": 587,
        "status": "active",
    }
    assert (body["checkInterval"], body["timeoutSeconds"]) == (60, 30)
    assert body["notificationEmail"] is None
    assert body["notificationPhoneNumber"] is None
    assert body["lastCheckedAt"] is None
    assert body["allowedCheckCountryCodes"] is None
    assert ISO_MS.match(body["createdAt"]) and ISO_MS.match(body["updatedAt"])
    assert body["config"] == SEED_CONFIG_SHOWN
    assert body["smtpConfig"] == SEED_CONFIG_SHOWN


async def test_get_one_returns_same_shape_as_create(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create(http, tenant)
    r = await http.get(f"{SMTP}/{created['publicId']}", headers=tenant.auth("readonly"))
    assert r.status_code == 200
    assert set(r.json()) == SMTP_GET_KEYS
    assert r.json() == as_got(created)


async def test_secret_is_encrypted_at_rest_and_masked_in_responses(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """auth.pass is shown as "********", stored sealed with SECRETS_KEY, never in plain text."""
    secret = "Plain-Secret-4711"
    cfg = {"auth": {"user": "username", "pass": secret}}
    created = await create(http, tenant, smtpConfig=cfg)
    assert created["smtpConfig"]["auth"] == {"user": "username", "pass": MASK}
    assert secret not in str(created)
    row = await stored_row(pool, created["publicId"])
    assert secret not in row["config_text"]
    assert row["config"]["auth"]["user"] == "username"
    assert (
        opened(SecretBox(settings.secrets.secrets_key or ""), row["config"]["auth"]["pass"])
        == secret
    )


async def test_seed_002_patch_gives_seed_response(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """PATCH with seed 002's body: paused → disabled, ["de","us"] → ["DE","US"], config replaced."""
    created = await create(http, tenant)
    r = await http.patch(
        f"{SMTP}/{created['publicId']}", json=SEED_002_PATCH, headers=tenant.auth()
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == SMTP_KEYS
    assert body["name"] == "Outbound SMTP (Primary)"
    assert body["status"] == "disabled"
    assert body["allowedCheckCountryCodes"] == ["DE", "US"]
    expected_cfg = {"secure": False, "requireTls": True, "auth": {"user": "username", "pass": MASK}}
    assert body["config"] == expected_cfg
    assert body["smtpConfig"] == expected_cfg
    assert body["createdAt"] == created["createdAt"]
    assert ISO_MS.match(body["updatedAt"]) and body["updatedAt"] >= created["updatedAt"]
    assert (body["id"], body["publicId"]) == (created["id"], created["publicId"])
    row = await stored_row(pool, created["publicId"])
    assert row["status"] == "disabled"
    assert row["allowed_country_codes"] == ["DE", "US"]
    assert (
        opened(SecretBox(settings.secrets.secrets_key or ""), row["config"]["auth"]["pass"])
        == "password"
    )


async def test_seed_002_curl_patch_status_disabled(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(http, tenant)
    r = await http.patch(
        f"{SMTP}/{created['publicId']}", json={"status": "disabled"}, headers=tenant.auth()
    )
    assert r.status_code == 200
    assert r.json()["status"] == "disabled"
    assert r.json()["config"] == created["config"]


async def test_patch_with_mask_keeps_stored_secret(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """Sending the response's config back (pass "********") keeps the stored password."""
    created = await create(http, tenant, smtpConfig={"auth": {"user": "u", "pass": "orig-pass"}})
    echoed = copy.deepcopy(created["smtpConfig"])
    r = await http.patch(
        f"{SMTP}/{created['publicId']}",
        json={"name": "renamed", "smtpConfig": echoed},
        headers=tenant.auth(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["smtpConfig"]["auth"] == {"user": "u", "pass": MASK}
    row = await stored_row(pool, created["publicId"])
    assert (
        opened(SecretBox(settings.secrets.secrets_key or ""), row["config"]["auth"]["pass"])
        == "orig-pass"
    )


async def test_patch_with_new_password_replaces_secret(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    created = await create(http, tenant)
    cfg = {"auth": {"user": "username", "pass": "brand-new"}}
    r = await http.patch(
        f"{SMTP}/{created['publicId']}", json={"config": cfg}, headers=tenant.auth()
    )
    assert r.status_code == 200
    row = await stored_row(pool, created["publicId"])
    assert "brand-new" not in row["config_text"]
    assert (
        opened(SecretBox(settings.secrets.secrets_key or ""), row["config"]["auth"]["pass"])
        == "brand-new"
    )


async def test_mask_without_stored_secret_is_rejected(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = seed_body("smtp", tenant, smtpConfig={"auth": {"user": "u", "pass": MASK}})
    r = await http.post(SMTP, json=body, headers=tenant.auth())
    assert_error(r, 400, fields=["smtpConfig.auth.pass"])


async def test_patch_without_config_keeps_stored_config(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    """Neither smtpConfig nor config in a PATCH: the stored config is unchanged (seed 002)."""
    created = await create(http, tenant)
    before = await stored_row(pool, created["publicId"])
    r = await http.patch(
        f"{SMTP}/{created['publicId']}", json={"name": "Renamed"}, headers=tenant.auth()
    )
    assert r.status_code == 200
    assert r.json()["name"] == "Renamed"
    assert r.json()["smtpConfig"] == SEED_CONFIG_SHOWN
    after = await stored_row(pool, created["publicId"])
    assert after["config"] == before["config"]
    assert (
        opened(SecretBox(settings.secrets.secrets_key or ""), after["config"]["auth"]["pass"])
        == "password"
    )


async def test_config_alias_on_create(http: httpx.AsyncClient, tenant: Tenant) -> None:
    """`config` is an alias of `smtpConfig`; both response keys carry it."""
    cfg = {"secure": True, "auth": {"user": "a", "pass": "b"}}
    r = await http.post(SMTP, json=minimal_body(tenant, config=cfg), headers=tenant.auth())
    assert r.status_code == 201, r.text
    shown = {"secure": True, "auth": {"user": "a", "pass": MASK}}
    assert r.json()["config"] == shown
    assert r.json()["smtpConfig"] == shown


async def test_config_alias_on_patch(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(http, tenant)
    r = await http.patch(
        f"{SMTP}/{created['publicId']}", json={"config": {"secure": True}}, headers=tenant.auth()
    )
    assert r.status_code == 200
    assert r.json()["smtpConfig"] == {"secure": True}


async def test_same_config_under_both_names_is_accepted(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    cfg = {"secure": True}
    body = minimal_body(tenant, config=cfg, smtpConfig=cfg)
    r = await http.post(SMTP, json=body, headers=tenant.auth())
    assert r.status_code == 201
    assert r.json()["smtpConfig"] == cfg


async def test_two_different_configs_are_rejected(http: httpx.AsyncClient, tenant: Tenant) -> None:
    body = minimal_body(tenant, config={"secure": True}, smtpConfig={"secure": False})
    r = await http.post(SMTP, json=body, headers=tenant.auth())
    assert_error(r, 400, fields=["smtpConfig"])


async def test_nodemailer_spellings_are_normalised(http: httpx.AsyncClient, tenant: Tenant) -> None:
    """ignoreTLS / requireTLS (nodemailer) are stored and shown as ignoreTls / requireTls."""
    cfg = {"ignoreTLS": True, "requireTLS": False}
    r = await http.post(SMTP, json=minimal_body(tenant, smtpConfig=cfg), headers=tenant.auth())
    assert r.status_code == 201, r.text
    assert r.json()["smtpConfig"] == {"ignoreTls": True, "requireTls": False}


async def test_tls_options_reject_unauthorized_extension(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    cfg = {"secure": True, "tlsOptions": {"rejectUnauthorized": False}}
    r = await http.post(SMTP, json=minimal_body(tenant, smtpConfig=cfg), headers=tenant.auth())
    assert r.status_code == 201, r.text
    assert r.json()["smtpConfig"] == cfg


async def test_no_config_stores_empty_object(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post(SMTP, json=minimal_body(tenant), headers=tenant.auth())
    assert r.status_code == 201
    body = r.json()
    assert set(body) == SMTP_KEYS
    assert body["config"] == {} and body["smtpConfig"] == {}


async def test_null_config_stores_empty_object(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post(SMTP, json=minimal_body(tenant, smtpConfig=None), headers=tenant.auth())
    assert r.status_code == 201
    assert r.json()["smtpConfig"] == {}


@pytest.mark.parametrize(
    ("key", "cfg", "field"),
    [
        ("smtpConfig", {"foo": 1}, "smtpConfig.foo"),
        ("config", {"foo": 1}, "config.foo"),
        (
            "smtpConfig",
            {"auth": {"user": "u", "pass": "p", "method": "PLAIN"}},
            "smtpConfig.auth.method",
        ),
        ("smtpConfig", {"tlsOptions": {"ca": "x"}}, "smtpConfig.tlsOptions.ca"),
        ("smtpConfig", {"protocol": "imap"}, "smtpConfig.protocol"),
    ],
)
async def test_unknown_config_keys_are_rejected_by_name(
    http: httpx.AsyncClient, tenant: Tenant, key: str, cfg: dict[str, Any], field: str
) -> None:
    r = await http.post(SMTP, json=minimal_body(tenant, **{key: cfg}), headers=tenant.auth())
    assert_error(r, 400, fields=[field])


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"secure": "yes"}, "smtpConfig.secure"),
        ({"secure": 1}, "smtpConfig.secure"),
        ({"ignoreTls": "false"}, "smtpConfig.ignoreTls"),
        ({"requireTLS": None}, "smtpConfig.requireTLS"),
        ({"auth": {"user": 5}}, "smtpConfig.auth.user"),
        ({"auth": {"pass": ["x"]}}, "smtpConfig.auth.pass"),
        ({"auth": "user:pass"}, "smtpConfig.auth"),
        ({"tlsOptions": {"rejectUnauthorized": "no"}}, "smtpConfig.tlsOptions.rejectUnauthorized"),
        ("secure", "smtpConfig"),
        ([], "smtpConfig"),
    ],
)
async def test_config_wrong_types_are_rejected_by_name(
    http: httpx.AsyncClient, tenant: Tenant, cfg: object, field: str
) -> None:
    r = await http.post(SMTP, json=minimal_body(tenant, smtpConfig=cfg), headers=tenant.auth())
    assert_error(r, 400, fields=[field])


async def test_patch_config_wrong_type_rejected_and_config_unchanged(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create(http, tenant)
    url = f"{SMTP}/{created['publicId']}"
    r = await http.patch(url, json={"config": {"secure": "no"}}, headers=tenant.auth())
    assert_error(r, 400, fields=["config.secure"])
    r = await http.get(url, headers=tenant.auth())
    assert r.json() == as_got(created)


async def test_update_customer_by_uuid_and_number(http: httpx.AsyncClient, tenant: Tenant) -> None:
    """PATCH customerId accepts the same identifiers as create."""
    created = await create(http, tenant)
    url = f"{SMTP}/{created['publicId']}"
    r = await http.post("/api/customers", json={"name": "Second"}, headers=tenant.auth())
    second = r.json()
    r = await http.patch(url, json={"customerId": second["publicId"]}, headers=tenant.auth())
    assert r.status_code == 200 and r.json()["customerId"] == second["id"]
    r = await http.patch(url, json={"customerId": tenant.customer_id}, headers=tenant.auth())
    assert r.status_code == 200 and r.json()["customerId"] == tenant.customer_id
    r = await http.patch(url, json={"customerId": "nope"}, headers=tenant.auth())
    assert_error(r, 400, fields=["customerId"], message="Invalid Customer identifier")


async def test_empty_patch_changes_nothing(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(http, tenant)
    r = await http.patch(f"{SMTP}/{created['publicId']}", json={}, headers=tenant.auth())
    assert r.status_code == 200
    body = r.json()
    assert {k: v for k, v in body.items() if k != "updatedAt"} == {
        k: v for k, v in created.items() if k != "updatedAt"
    }


async def test_delete_then_get_is_404(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(http, tenant)
    url = f"{SMTP}/{created['publicId']}"
    r = await http.delete(url, headers=tenant.auth())
    assert r.status_code == 204
    assert r.content == b""
    assert_error(await http.get(url, headers=tenant.auth()), 404, code="not_found")
    assert_error(await http.delete(url, headers=tenant.auth()), 404)
    assert_error(await http.patch(url, json={"name": "x"}, headers=tenant.auth()), 404)


async def test_unknown_uuid_is_404(http: httpx.AsyncClient, tenant: Tenant) -> None:
    url = f"{SMTP}/33333333-3333-4333-8333-333333333333"
    assert_error(await http.get(url, headers=tenant.auth()), 404)
    assert_error(await http.patch(url, json={"status": "disabled"}, headers=tenant.auth()), 404)
    assert_error(await http.delete(url, headers=tenant.auth()), 404)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("raw", ["not-a-uuid", "123", "33333333-3333-4333-8333-33333333333Z"])
async def test_bad_public_id_is_400_with_seed_message(
    http: httpx.AsyncClient, tenant: Tenant, method: str, raw: str
) -> None:
    """400 "SMTP Monitor public ID (UUID) required" (seed 002's error), never a 404 or 500."""
    kwargs: dict[str, Any] = {"json": {"status": "active"}} if method == "PATCH" else {}
    r = await http.request(method, f"{SMTP}/{raw}", headers=tenant.auth(), **kwargs)
    assert_error(r, 400, fields=["publicId"], message="SMTP Monitor public ID (UUID) required")
