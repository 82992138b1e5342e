"""The OpenAPI document says what the API does: error bodies as sent ({statusCode, code,
message, fields}; {"errors": [...]} under /api/v3), the error statuses that happen, bearer
authentication and UUID path ids. It used to document Litestar's default error body and only
400."""

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.api.helpers import seed_body
from tests.conftest import Tenant

METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture
async def spec(http: httpx.AsyncClient) -> dict[str, Any]:
    r = await http.get("/schema/openapi.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def test_every_error_response_is_the_body_the_api_sends(spec: dict[str, Any]) -> None:
    for path, method, op in operations(spec):
        expected = "AlertSiteErrors" if path.startswith("/api/v3") else "ErrorBody"
        errors = {s: r for s, r in op["responses"].items() if s.startswith("4")}
        assert {"400", "429"} <= set(errors), (path, method)
        for status, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{expected}"}, (path, method, status)
    body = spec["components"]["schemas"]["ErrorBody"]
    assert set(body["required"]) == {"statusCode", "code", "message", "fields"}
    assert body["additionalProperties"] is False


def test_statuses_that_happen_are_documented(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    one = paths["/api/smtp-monitors/{smtpMonitorPublicId}"]
    assert {"400", "401", "403", "404", "429"} <= set(one["patch"]["responses"])
    assert "413" in one["patch"]["responses"]
    assert (
        "409"
        in paths["/api/smtp-monitors/{smtpMonitorPublicId}/trigger-check"]["post"]["responses"]
    )
    # wrong credentials: our login's 401, AlertSite's documented 400
    login = paths["/api/auth/login"]["post"]
    assert (
        login["security"] == []
        and "wrong e-mail or password" in login["responses"]["401"]["description"]
    )
    alertsite = paths["/api/v3/access-tokens"]["post"]
    assert "401" not in alertsite["responses"]
    assert "User authentication failed" in alertsite["responses"]["400"]["description"]


def test_bearer_authentication_is_declared(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearer": []}]


def test_public_ids_in_paths_are_uuids(spec: dict[str, Any]) -> None:
    for path, method, op in operations(spec):
        for param in op.get("parameters", []):
            if param["in"] == "path" and param["name"].endswith("PublicId"):
                assert param["schema"]["format"] == "uuid", (path, method, param["name"])


async def test_real_error_bodies_match_their_documented_schema(
    http: httpx.AsyncClient, tenant: Tenant, spec: dict[str, Any]
) -> None:
    schemas = spec["components"]["schemas"]
    missing = "/api/smtp-monitors/00000000-0000-4000-8000-000000000000"
    for r in (
        await http.get(missing, headers=tenant.auth()),
        await http.get(missing),
        await http.post("/api/smtp-monitors", json={}, headers=tenant.auth()),
    ):
        assert set(r.json()) == set(schemas["ErrorBody"]["properties"]), r.text
    r = await http.get("/api/v3/devices/1")
    assert set(r.json()) == set(schemas["AlertSiteErrors"]["properties"]), r.text


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/api/smtp-monitors", {"GET", "POST", "OPTIONS"}),
        (
            "/api/smtp-monitors/00000000-0000-4000-8000-000000000000",
            {"GET", "PATCH", "DELETE", "OPTIONS"},
        ),
    ],
)
async def test_405_and_options_name_every_method_of_the_path(
    http: httpx.AsyncClient, tenant: Tenant, path: str, methods: set[str]
) -> None:
    """OPTIONS listed only the method Litestar registered first (`OPTIONS, POST`)."""
    r = await http.put(path, headers=tenant.auth())
    assert r.status_code == 405, r.text
    assert set(r.json()) == {"statusCode", "code", "message", "fields"}
    assert {m.strip() for m in r.headers["allow"].split(",")} == methods
    r = await http.options(path, headers=tenant.auth())
    assert r.status_code == 204
    assert {m.strip() for m in r.headers["allow"].split(",")} == methods


def test_request_bodies_state_the_rules_the_server_enforces(spec: dict[str, Any]) -> None:
    """Unknown keys are refused (additionalProperties false) and bounds are stated, `minimum: 0`
    too (Litestar dropped it as falsy: the fuzzer sent -1e-16 and got a 400)."""
    schemas = spec["components"]["schemas"]
    for name in ("SmtpMonitorCreate", "ImapPopConfigIn", "TlsOptionsIn", "AlertSettingsUpdate"):
        assert schemas[name]["additionalProperties"] is False, name
    threshold = schemas["AlertSettingsUpdate"]["properties"]["failureThreshold"]
    assert (threshold["minimum"], threshold["exclusiveMaximum"]) == (0, 1)
    assert schemas["SmtpMonitorCreate"]["required"] == ["customerId", "name", "hostname"]


def test_rules_the_handlers_enforce_are_stated(spec: dict[str, Any]) -> None:
    """The fuzzer's schema-valid requests that the handlers refused: customer id 0 or "", an
    empty `from`, a non-UUID `monitorId`, a blank name or email, a port of 0, AlertSite's
    fractional intervals and unknown types. The document now says each rule."""
    schemas = spec["components"]["schemas"]
    smtp = schemas["SmtpMonitorCreate"]["properties"]
    ids = {b["type"]: b for b in smtp["customerId"]["anyOf"]}
    assert ids["integer"]["minimum"] == 1
    pattern = re.compile(ids["string"]["pattern"])
    assert pattern.search("12") and pattern.search(str(uuid.uuid4()))
    assert not pattern.search("") and not pattern.search("0")
    assert not re.search(smtp["name"]["pattern"], " ")
    assert not re.search(smtp["name"]["pattern"], "a\nb")
    assert smtp["port"]["anyOf"][0]["minimum"] == 1
    assert not re.search(smtp["hostname"]["pattern"], "smtp.example.123")
    assert re.search(smtp["hostname"]["pattern"], "smtp.example.com")
    assert not re.search(schemas["UserCreate"]["properties"]["email"]["pattern"], "")
    assert schemas["SmtpMonitorCreate"]["not"] == {"required": ["smtpConfig", "config"]}
    interval = {
        b["type"]: b for b in schemas["EmailMonitorCreate"]["properties"]["interval"]["anyOf"]
    }
    assert interval["number"]["multipleOf"] == 1 and interval["integer"]["maximum"] == 1440
    window = schemas["MaintenanceWindowCreate"]["allOf"][1]["oneOf"][1]
    assert window["required"] == ["weekday", "startTime", "durationMinutes"]
    params = {
        (path, p["name"]): p["schema"]
        for path, method, op in operations(spec)
        for p in op.get("parameters", [])
    }
    assert params[("/api/smtp-monitors/{smtpMonitorPublicId}/results", "from")]["format"] == (
        "date-time"
    )
    assert params[("/api/maintenance-windows", "monitorId")]["format"] == "uuid"
    assert params[("/api/v3/monitors", "offset")]["anyOf"][0]["minimum"] == 0
    assert not re.search(params[("/api/v3/monitors", "type")]["pattern"], "nope")


def test_a_create_links_to_what_its_id_opens(spec: dict[str, Any]) -> None:
    """The fuzzer's stateful run guessed links by name and passed a monitor's numeric `id` where
    the path takes its public UUID (a 400); the document now declares the links, by field."""
    created = spec["paths"]["/api/smtp-monitors"]["post"]["responses"]["201"]["links"]
    by_id = spec["paths"]["/api/smtp-monitors/{smtpMonitorPublicId}"]["get"]["operationId"]
    assert created[by_id]["parameters"] == {"smtpMonitorPublicId": "$response.body#/publicId"}
    window = spec["paths"]["/api/maintenance-windows"]["post"]["responses"]["201"]["links"]
    assert {"windowId": "$response.body#/id"} in [link["parameters"] for link in window.values()]


# (hostname, whether the server accepts it): IDNA refuses hyphens in a label's 3rd and 4th
# places (all but a valid A-label) and an A-label that does not decode.
HOSTNAMES = [
    ("t.iy7e1.O.cL--EWj6YHo.z.example", False),  # the fuzzer's (make fuzz, 100 examples)
    ("ab--c.example.com", False),
    ("mx.example.ab--c", False),
    ("xn--zz.example.com", False),
    ("a--b.example.com", True),
    ("ab-c.example.com", True),
    ("a.b.c", True),
]


@pytest.mark.parametrize(("host", "accepted"), HOSTNAMES)
async def test_a_hostname_the_document_admits_is_one_the_server_accepts(
    http: httpx.AsyncClient, tenant: Tenant, spec: dict[str, Any], host: str, accepted: bool
) -> None:
    """The hostname pattern admitted a label with `--` in its 3rd and 4th places, which the
    server (IDNA) refuses: schemathesis's schema-valid request got a 400. The document now
    leaves such labels out (valid A-labels too: its rule is the narrower one)."""
    r = await http.post(
        "/api/smtp-monitors", json=seed_body("smtp", tenant, hostname=host), headers=tenant.auth()
    )
    assert r.status_code == (201 if accepted else 400), r.text
    if not accepted:
        assert r.json()["fields"] == ["hostname"]
    schemas = spec["components"]["schemas"]
    for pattern in (
        schemas["SmtpMonitorCreate"]["properties"]["hostname"]["pattern"],
        schemas["SmtpMonitorCreate"]["properties"]["mailDomain"]["anyOf"][0]["pattern"],
    ):
        assert (re.search(pattern, host) is not None) == accepted, pattern


async def test_a_customer_id_in_a_path_or_query_is_documented_as_the_text_the_server_reads(
    http: httpx.AsyncClient, tenant: Tenant, spec: dict[str, Any]
) -> None:
    """A path or query carries text: the document's integer alternative let schemathesis send
    the integer 1121.0 as `customerId=1121.0`, which the server refuses (a 400 naming
    customerId). The document now says what the server reads: digits or a public UUID."""
    found = [
        (path, p["schema"])
        for path, method, op in operations(spec)
        for p in op.get("parameters", [])
        if p["name"] in ("customerId", "customer_id") and p["in"] in ("path", "query")
    ]
    assert len(found) >= 5
    for path, schema in found:
        assert schema["type"] == "string" and "anyOf" not in schema, (path, schema)
        admits = re.compile(schema["pattern"])
        assert admits.search("7") and admits.search(tenant.customer_public_id), path
        assert not admits.search("1121.0") and not admits.search("0"), path
    for query, status in ((str(tenant.customer_id), 200), ("1121.0", 400)):
        r = await http.get(
            "/api/imap-pop-monitors", params={"customerId": query}, headers=tenant.auth()
        )
        assert r.status_code == status, r.text
    assert r.json()["fields"] == ["customerId"]
