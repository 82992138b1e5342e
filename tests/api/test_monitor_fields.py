"""The documented field rules of seeds 000-003, on create and on update, for both kinds.

customerId, hostname, port, status, checkInterval/timeoutSeconds, allowedCheckCountryCodes,
notificationEmail, notificationPhoneNumber, name.
"""

from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import IMAP, PATHS, SMTP, assert_error, create, minimal_body, stored_row
from tests.conftest import Tenant, make_tenant

KINDS = ["smtp", "imap"]


async def post(
    http: httpx.AsyncClient, tenant: Tenant, kind: str = "smtp", **fields: Any
) -> httpx.Response:
    return await http.post(PATHS[kind], json=minimal_body(tenant, **fields), headers=tenant.auth())


async def patch(
    http: httpx.AsyncClient,
    tenant: Tenant,
    monitor: dict[str, Any],
    kind: str = "smtp",
    **fields: Any,
) -> httpx.Response:
    url = f"{PATHS[kind]}/{monitor['publicId']}"
    return await http.patch(url, json=fields, headers=tenant.auth())


# customerId ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_customer_id_as_number_numeric_string_and_uuid(
    http: httpx.AsyncClient, tenant: Tenant, kind: str
) -> None:
    """customerId: internal number, the number as a string, or the public UUID (any case)."""
    for ident in (
        tenant.customer_id,
        str(tenant.customer_id),
        tenant.customer_public_id,
        tenant.customer_public_id.upper(),
    ):
        r = await post(http, tenant, kind, customerId=ident)
        assert r.status_code == 201, (ident, r.text)
        assert r.json()["customerId"] == tenant.customer_id


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "ident",
    [
        "garbage",
        "",
        "-1",
        "1.5",
        "0",
        "12abc",
        "11111111-1111-4111-8111",
        True,
        False,
        -1,
        0,
        1.5,
        None,
        [],
        {},
    ],
)
async def test_invalid_customer_identifier(
    http: httpx.AsyncClient, tenant: Tenant, kind: str, ident: object
) -> None:
    """Anything but a positive number or a UUID: 400 "Invalid Customer identifier"."""
    r = await post(http, tenant, kind, customerId=ident)
    assert_error(
        r,
        400,
        fields=["customerId"],
        code="invalid_customer_id",
        message="Invalid Customer identifier",
    )


async def test_missing_customer_id_is_400(http: httpx.AsyncClient, tenant: Tenant) -> None:
    body = minimal_body(tenant)
    del body["customerId"]
    r = await http.post(SMTP, json=body, headers=tenant.auth())
    assert_error(r, 400, fields=["customerId"])


@pytest.mark.parametrize("kind", KINDS)
async def test_customer_of_another_org_is_404(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, kind: str
) -> None:
    """A customer that exists in another organization: 404 Customer not found (by id and UUID)."""
    other = await make_tenant(pool)
    for ident in (other.customer_id, other.customer_public_id):
        r = await post(http, tenant, kind, customerId=ident)
        assert_error(r, 404, fields=["customerId"], message="Customer not found")


async def test_unknown_customer_is_404(http: httpx.AsyncClient, tenant: Tenant) -> None:
    for ident in (2**62, "00000000-0000-4000-8000-000000000000"):
        r = await post(http, tenant, customerId=ident)
        assert_error(r, 404, fields=["customerId"])


async def test_patch_customer_of_another_org_is_404(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    other = await make_tenant(pool)
    monitor = await create(http, tenant)
    r = await patch(http, tenant, monitor, customerId=other.customer_public_id)
    assert_error(r, 404, fields=["customerId"])


# hostname -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostname",
    [
        "https://smtp.example.com",
        "smtp://smtp.example.com",
        "smtp.example.com/smtp",
        "smtp.example.com:587",
        "user@smtp.example.com",
        "user:pw@smtp.example.com",
        "smtp example.com",
        " smtp.example.com",
        "smtp.example.com ",
        "smtp.example.com\n",
        "\tsmtp.example.com",
        "",
        "   ",
        "smtp..example.com",
        ".example.com",
        "a" * 64 + ".example.com",
        ".".join(["a" * 63] * 4),  # 255 characters
        "-smtp.example.com",
        "smtp_relay.example.com",
        "smtp.example.com?x=1",
        "1.2.3.999",
    ],
)
@pytest.mark.parametrize("kind", KINDS)
async def test_invalid_hostnames_are_400_naming_hostname(
    http: httpx.AsyncClient, tenant: Tenant, kind: str, hostname: str
) -> None:
    r = await post(http, tenant, kind, hostname=hostname)
    assert_error(r, 400, fields=["hostname"])


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("smtp.example.com", "smtp.example.com"),
        ("SMTP.Example.COM", "smtp.example.com"),
        ("smtp.example.com.", "smtp.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("mail.münchen.de", "mail.xn--mnchen-3ya.de"),
        ("localhost", "localhost"),
        ("a" * 63 + ".example.com", "a" * 63 + ".example.com"),
        (
            ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61]),
            ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61]),
        ),
        ("192.0.2.10", "192.0.2.10"),
        ("2001:db8::25", "2001:db8::25"),
        ("[2001:db8::25]", "2001:db8::25"),
        ("2001:DB8:0:0:0:0:0:25", "2001:db8::25"),
    ],
)
async def test_valid_hostnames_are_normalised(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, given: str, stored: str
) -> None:
    """IDN → punycode, lower case, trailing dot dropped; IPv4/IPv6 literals accepted."""
    r = await post(http, tenant, hostname=given)
    assert r.status_code == 201, r.text
    assert r.json()["hostname"] == stored
    assert (await stored_row(pool, r.json()["publicId"]))["hostname"] == stored


async def test_hostname_rules_apply_on_patch(http: httpx.AsyncClient, tenant: Tenant) -> None:
    monitor = await create(http, tenant, smtpConfig={})  # no secret to re-send on a move
    r = await patch(http, tenant, monitor, hostname="https://smtp.example.com/")
    assert_error(r, 400, fields=["hostname"])
    r = await patch(http, tenant, monitor, hostname="Bücher.Example")
    assert r.status_code == 200
    assert r.json()["hostname"] == "xn--bcher-kva.example"


@pytest.mark.parametrize("hostname", [None, 42, ["a.com"]])
async def test_hostname_wrong_type(
    http: httpx.AsyncClient, tenant: Tenant, hostname: object
) -> None:
    r = await post(http, tenant, hostname=hostname)
    assert_error(r, 400, fields=["hostname"])


# port -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("port", [1, 25, 65535])
async def test_port_in_range_accepted(
    http: httpx.AsyncClient, tenant: Tenant, kind: str, port: int
) -> None:
    r = await post(http, tenant, kind, port=port)
    assert r.status_code == 201
    assert r.json()["port"] == port


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("port", [0, -1, 65536, 10**12, "x", "587", 587.5, True, [587], {}])
async def test_port_out_of_range_or_wrong_type_is_400(
    http: httpx.AsyncClient, tenant: Tenant, kind: str, port: object
) -> None:
    r = await post(http, tenant, kind, port=port)
    assert_error(r, 400, fields=["port"])


@pytest.mark.parametrize("kind", KINDS)
async def test_port_null_or_omitted_is_stored_and_returned_as_null(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, kind: str
) -> None:
    """null: the worker applies the seeds' default port when checking; the API keeps null."""
    r = await post(http, tenant, kind, port=None)
    assert r.status_code == 201 and r.json()["port"] is None
    assert (await stored_row(pool, r.json()["publicId"]))["port"] is None
    r = await post(http, tenant, kind)
    assert r.status_code == 201 and r.json()["port"] is None


async def test_patch_port_to_null_and_back(http: httpx.AsyncClient, tenant: Tenant) -> None:
    monitor = await create(http, tenant, smtpConfig={})  # no secret to re-send on a move
    r = await patch(http, tenant, monitor, port=None)
    assert r.status_code == 200 and r.json()["port"] is None
    r = await patch(http, tenant, monitor, port=465)
    assert r.status_code == 200 and r.json()["port"] == 465
    r = await patch(http, tenant, monitor, port=0)
    assert_error(r, 400, fields=["port"])


# status ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("active", "active"),
        ("maintenance", "maintenance"),
        ("disabled", "disabled"),
        ("paused", "disabled"),
        ("inactive", "disabled"),
        ("PAUSED", "disabled"),
    ],
)
async def test_status_normalised_on_create_and_update(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, kind: str, given: str, stored: str
) -> None:
    """paused/inactive are stored and returned as disabled, on create and on update."""
    r = await post(http, tenant, kind, status=given)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == stored
    assert (await stored_row(pool, r.json()["publicId"]))["status"] == stored
    monitor = await create(http, tenant, kind, status="maintenance")
    r = await patch(http, tenant, monitor, kind, status=given)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == stored
    assert (await stored_row(pool, monitor["publicId"]))["status"] == stored


async def test_status_defaults_to_active(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await post(http, tenant)
    assert r.json()["status"] == "active"


@pytest.mark.parametrize("status", ["running", "", "enabled", None, 1, True])
async def test_unknown_status_is_400(
    http: httpx.AsyncClient, tenant: Tenant, status: object
) -> None:
    r = await post(http, tenant, status=status)
    assert_error(r, 400, fields=["status"])
    monitor = await create(http, tenant)
    r = await patch(http, tenant, monitor, status=status)
    assert_error(r, 400, fields=["status"])


# checkInterval / timeoutSeconds -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_interval_and_timeout_defaults(
    http: httpx.AsyncClient, tenant: Tenant, kind: str
) -> None:
    """Omitted: checkInterval 60, timeoutSeconds 30."""
    r = await post(http, tenant, kind)
    assert (r.json()["checkInterval"], r.json()["timeoutSeconds"]) == (60, 30)


async def test_timeout_default_never_exceeds_short_interval(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Only checkInterval given, below 30: the default timeout follows it instead of failing."""
    for interval in (10, 20):
        r = await post(http, tenant, checkInterval=interval)
        assert r.status_code == 201
        assert (r.json()["checkInterval"], r.json()["timeoutSeconds"]) == (interval, interval)


@pytest.mark.parametrize(
    ("interval", "seconds"), [(10, 1), (10, 10), (86_400, 300), (300, 300), (60, 30)]
)
async def test_interval_and_timeout_bounds_accepted(
    http: httpx.AsyncClient, tenant: Tenant, interval: int, seconds: int
) -> None:
    r = await post(http, tenant, checkInterval=interval, timeoutSeconds=seconds)
    assert r.status_code == 201, r.text
    assert (r.json()["checkInterval"], r.json()["timeoutSeconds"]) == (interval, seconds)


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"checkInterval": 9}, "checkInterval"),
        ({"checkInterval": 0}, "checkInterval"),
        ({"checkInterval": -60}, "checkInterval"),
        ({"checkInterval": 86_401}, "checkInterval"),
        ({"checkInterval": 2**63}, "checkInterval"),
        ({"checkInterval": "60"}, "checkInterval"),
        ({"checkInterval": 60.5}, "checkInterval"),
        ({"checkInterval": None}, "checkInterval"),
        ({"timeoutSeconds": 0}, "timeoutSeconds"),
        ({"timeoutSeconds": -1}, "timeoutSeconds"),
        ({"checkInterval": 600, "timeoutSeconds": 301}, "timeoutSeconds"),
        ({"timeoutSeconds": "30"}, "timeoutSeconds"),
        ({"timeoutSeconds": True}, "timeoutSeconds"),
        ({"checkInterval": 60, "timeoutSeconds": 61}, "timeoutSeconds"),
    ],
)
async def test_interval_and_timeout_out_of_bounds_are_400(
    http: httpx.AsyncClient, tenant: Tenant, fields: dict[str, Any], bad: str
) -> None:
    r = await post(http, tenant, **fields)
    assert_error(r, 400, fields=[bad])


async def test_patch_interval_below_stored_timeout_is_400_naming_timeout(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    """timeout > interval after merging with the stored values: 400 naming timeoutSeconds."""
    monitor = await create(http, tenant, checkInterval=60, timeoutSeconds=30)
    r = await patch(http, tenant, monitor, checkInterval=20)
    assert_error(r, 400, fields=["timeoutSeconds"])
    r = await patch(http, tenant, monitor, timeoutSeconds=61)
    assert_error(r, 400, fields=["timeoutSeconds"])
    r = await patch(http, tenant, monitor, checkInterval=20, timeoutSeconds=20)
    assert r.status_code == 200
    assert (r.json()["checkInterval"], r.json()["timeoutSeconds"]) == (20, 20)
    r = await patch(http, tenant, monitor, checkInterval=86_401)
    assert_error(r, 400, fields=["checkInterval"])


# allowedCheckCountryCodes ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (["de", "us"], ["DE", "US"]),
        (["DE", "de", "Us", "us"], ["DE", "US"]),
        (["gb"], ["GB"]),
        ([], None),
        (None, None),
    ],
)
async def test_country_codes_normalised(
    http: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool,
    kind: str,
    given: list[str] | None,
    stored: list[str] | None,
) -> None:
    """Upper-cased, de-duplicated (order kept); an empty list becomes null. Create and update."""
    r = await post(http, tenant, kind, allowedCheckCountryCodes=given)
    assert r.status_code == 201, r.text
    assert r.json()["allowedCheckCountryCodes"] == stored
    assert (await stored_row(pool, r.json()["publicId"]))["allowed_country_codes"] == stored
    monitor = await create(http, tenant, kind, allowedCheckCountryCodes=["fr"])
    r = await patch(http, tenant, monitor, kind, allowedCheckCountryCodes=given)
    assert r.status_code == 200
    assert r.json()["allowedCheckCountryCodes"] == stored


async def test_country_codes_omitted_is_null_and_patch_keeps_them(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await post(http, tenant)
    assert r.json()["allowedCheckCountryCodes"] is None
    monitor = await create(http, tenant, allowedCheckCountryCodes=["de"])
    r = await patch(http, tenant, monitor, name="x")
    assert r.json()["allowedCheckCountryCodes"] == ["DE"]


@pytest.mark.parametrize("code", ["xx", "UK", "EU", "DEU", "D", "", "276"])
async def test_invalid_country_code_is_400_naming_it(
    http: httpx.AsyncClient, tenant: Tenant, code: str
) -> None:
    """Checked against the real ISO 3166-1 alpha-2 list; the message names the bad code."""
    r = await post(http, tenant, allowedCheckCountryCodes=["de", code])
    body = assert_error(r, 400, fields=["allowedCheckCountryCodes"])
    assert repr(code) in body["message"]
    monitor = await create(http, tenant)
    r = await patch(http, tenant, monitor, allowedCheckCountryCodes=[code])
    assert_error(r, 400, fields=["allowedCheckCountryCodes"])


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("DE", "allowedCheckCountryCodes"),
        ([1], "allowedCheckCountryCodes[0]"),
        ({"DE": 1}, "allowedCheckCountryCodes"),
    ],
)
async def test_country_codes_wrong_type(
    http: httpx.AsyncClient, tenant: Tenant, value: object, field: str
) -> None:
    r = await post(http, tenant, allowedCheckCountryCodes=value)
    assert_error(r, 400, fields=[field])


# notificationEmail / notificationPhoneNumber -----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_notification_contacts_on_create_and_update(
    http: httpx.AsyncClient, tenant: Tenant, kind: str
) -> None:
    """E-mail trimmed; phone normalised to E.164; null or "" clears them."""
    r = await post(
        http,
        tenant,
        kind,
        notificationEmail=" ops@example.com ",
        notificationPhoneNumber="+49 151 1234-5678",
    )
    assert r.status_code == 201, r.text
    assert r.json()["notificationEmail"] == "ops@example.com"
    assert r.json()["notificationPhoneNumber"] == "+4915112345678"
    monitor = r.json()
    r = await patch(
        http,
        tenant,
        monitor,
        kind,
        notificationEmail="noc@example.org",
        notificationPhoneNumber="+1 (415) 555-2671",
    )
    assert r.status_code == 200, r.text
    assert r.json()["notificationEmail"] == "noc@example.org"
    assert r.json()["notificationPhoneNumber"] == "+14155552671"
    r = await patch(http, tenant, monitor, kind, notificationEmail=None, notificationPhoneNumber="")
    assert r.status_code == 200
    assert r.json()["notificationEmail"] is None
    assert r.json()["notificationPhoneNumber"] is None


@pytest.mark.parametrize("email", ["nope", "a@b", "a b@example.com", "@example.com", "ops@", 42])
async def test_invalid_notification_email_is_400(
    http: httpx.AsyncClient, tenant: Tenant, email: object
) -> None:
    r = await post(http, tenant, notificationEmail=email)
    assert_error(r, 400, fields=["notificationEmail"])
    monitor = await create(http, tenant)
    r = await patch(http, tenant, monitor, notificationEmail=email)
    assert_error(r, 400, fields=["notificationEmail"])


@pytest.mark.parametrize(
    "phone", ["12345", "015112345678", "+49 123", "+999 1234567", "call me", 4915112345678]
)
async def test_invalid_notification_phone_is_400(
    http: httpx.AsyncClient, tenant: Tenant, phone: object
) -> None:
    r = await post(http, tenant, notificationPhoneNumber=phone)
    assert_error(r, 400, fields=["notificationPhoneNumber"])
    monitor = await create(http, tenant)
    r = await patch(http, tenant, monitor, notificationPhoneNumber=phone)
    assert_error(r, 400, fields=["notificationPhoneNumber"])


# name -----------------------------------------------------------------------------------------


async def test_name_trimmed_and_bounded(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await post(http, tenant, name="  Outbound  ")
    assert r.status_code == 201 and r.json()["name"] == "Outbound"
    r = await post(http, tenant, name="x" * 200)
    assert r.status_code == 201
    for bad in ("", "   ", "x" * 201, None, 7):
        assert_error(await post(http, tenant, name=bad), 400, fields=["name"])


async def test_missing_required_fields_named(http: httpx.AsyncClient, tenant: Tenant) -> None:
    for missing in ("name", "hostname"):
        body = minimal_body(tenant)
        del body[missing]
        for path in (SMTP, IMAP):
            r = await http.post(path, json=body, headers=tenant.auth())
            assert_error(r, 400, fields=[missing])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "a\u0000b"),
        ("notificationEmail", "ops\u0000@example.com"),
        ("smtpConfig.auth.user", {"auth": {"user": "u\u0000"}}),
    ],
)
async def test_nul_characters_are_400_not_500(
    http: httpx.AsyncClient, tenant: Tenant, field: str, value: Any
) -> None:
    """PostgreSQL cannot store NUL in text/JSONB: a 400 naming the field, never a 500."""
    key = field.split(".")[0]
    r = await post(http, tenant, **{key: value})
    assert_error(r, 400, fields=[field])
    monitor = await create(http, tenant)
    r = await patch(http, tenant, monitor, **{key: value})
    assert_error(r, 400, fields=[field])


@pytest.mark.parametrize("kind", KINDS)
async def test_unknown_top_level_field_is_400_naming_it(
    http: httpx.AsyncClient, tenant: Tenant, kind: str
) -> None:
    r = await post(http, tenant, kind, checkIntervall=60)
    assert_error(r, 400, fields=["checkIntervall"])
    monitor = await create(http, tenant, kind)
    r = await patch(http, tenant, monitor, kind, id=5)
    assert_error(r, 400, fields=["id"])
