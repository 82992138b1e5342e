"""OpenAPI is served by the app, with the seeds' request bodies as examples."""

import re
from importlib.metadata import version
from typing import Any

import httpx
import pytest

from tests.api.helpers import SEED_000, SEED_002_PATCH, SEED_003


@pytest.fixture
async def spec(http: httpx.AsyncClient) -> dict[str, Any]:
    r = await http.get("/schema/openapi.json")  # no token needed
    assert r.status_code == 200
    assert "json" in r.headers["content-type"]
    body: dict[str, Any] = r.json()
    return body


def examples(spec: dict[str, Any], path: str, method: str) -> list[Any]:
    content = spec["paths"][path][method]["requestBody"]["content"]["application/json"]
    found: list[Any] = list(content.get("schema", {}).get("examples", []))
    found += [e.get("value") for e in content.get("examples", {}).values()]
    return found


@pytest.mark.parametrize(
    ("path", "method", "seed"),
    [
        ("/api/smtp-monitors", "post", SEED_000),
        ("/api/smtp-monitors/{smtpMonitorPublicId}", "patch", SEED_002_PATCH),
        ("/api/imap-pop-monitors", "post", SEED_003),
    ],
)
def test_seed_request_bodies_are_examples(
    spec: dict[str, Any], path: str, method: str, seed: dict[str, Any]
) -> None:
    assert seed in examples(spec, path, method)


def test_info_version_is_the_package_version(spec: dict[str, Any]) -> None:
    """The document's version is the installed distribution's (pyproject.toml's), not a copy."""
    assert spec["info"]["version"] == version("mailprobe")


@pytest.mark.parametrize(
    ("path", "page", "item"),
    [
        ("/api/smtp-monitors", "SmtpMonitorPage", "SmtpMonitor"),
        ("/api/imap-pop-monitors", "ImapPopMonitorPage", "ImapPopMonitor"),
        ("/api/roundtrip-monitors", "RoundTripMonitorPage", "RoundTripMonitor"),
        ("/api/smtp-monitors/{smtpMonitorPublicId}/results", "CheckResultPage", "CheckResultOut"),
        ("/api/smtp-monitors/{smtpMonitorPublicId}/incidents", "IncidentPage", "Incident"),
        (
            "/api/smtp-monitors/{smtpMonitorPublicId}/alert-history",
            "DeliveryAttemptPage",
            "DeliveryAttempt",
        ),
        ("/api/customers", "CustomerPage", "Customer"),
        ("/api/users", "UserPage", "User"),
        ("/api/maintenance-windows", "MaintenanceWindowPage", "MaintenanceWindow"),
    ],
)
def test_list_answers_keep_their_page_names(
    spec: dict[str, Any], path: str, page: str, item: str
) -> None:
    """Every list answer is one generic `Page[T]` in the code; the document still names each
    its own component and title (what client generators make classes of), `items` of `item`."""
    ok = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": f"#/components/schemas/{page}"}
    schema = spec["components"]["schemas"][page]
    assert schema["title"] == page
    assert schema["properties"]["items"] == {
        "items": {"$ref": f"#/components/schemas/{item}"},
        "type": "array",
    }
    assert set(schema["required"]) == {"items", "total", "page", "perPage"}


def test_documented_paths_and_methods(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    for kind, param in (
        ("smtp-monitors", "smtpMonitorPublicId"),
        ("imap-pop-monitors", "imapPopMonitorPublicId"),
    ):
        assert {"get", "post"} <= set(paths[f"/api/{kind}"])
        assert {"get", "patch", "delete"} <= set(paths[f"/api/{kind}/{{{param}}}"])
    assert "post" in paths["/api/auth/login"]
    assert {"get", "post"} <= set(paths["/api/users"]) and {"get", "post"} <= set(
        paths["/api/customers"]
    )
    params = {p["name"] for p in paths["/api/smtp-monitors"]["get"]["parameters"]}
    assert params == {"customerId", "search", "status", "page", "perPage"}


def test_request_schema_uses_seed_field_names(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    create = schemas["SmtpMonitorCreate"]
    assert set(create["required"]) == {"customerId", "name", "hostname"}
    assert {
        "customerId",
        "name",
        "hostname",
        "port",
        "status",
        "checkInterval",
        "timeoutSeconds",
        "smtpConfig",
        "config",
        "allowedCheckCountryCodes",
        "notificationEmail",
        "notificationPhoneNumber",
        "mailDomain",
        "secretEnv",
        "reputation",  # our extra: outbound names for the blocklists
        "dependsOn",  # our extra: what its incidents depend on
        "dkimSelectors",  # our extra: DKIM selectors for readiness
    } == set(create["properties"])


def test_result_statuses_name_missed_and_inconclusive_and_agents_their_self_check(
    spec: dict[str, Any],
) -> None:
    """A client reads from the document that a result (a page's, a latest one, a country's)
    may be `inconclusive` as well as `missed`, and that an agent may carry its `selfCheck`."""
    schemas = spec["components"]["schemas"]
    for name in ("CheckResultOut", "LatestResult", "CountryState"):
        status = schemas[name]["properties"]["status"]
        assert status["enum"] == ["up", "down", "missed", "inconclusive"], name
        assert "self-check" in status["description"]
    agent = schemas["AgentOut"]["properties"]["selfCheck"]
    assert "SelfCheck" in str(agent)


def test_listed_outbound_names_are_documented_as_public_addresses_and_domains(
    spec: dict[str, Any],
) -> None:
    """`reputation`'s items carry the narrow patterns the API accepts (public unicast
    addresses, domain names) and their bounds, and the SMTP monitor shows it."""
    schemas = spec["components"]["schemas"]
    listed = schemas["ReputationIn"]
    assert listed["additionalProperties"] is False
    ips, domains = listed["properties"]["ips"], listed["properties"]["domains"]
    assert (ips["maxItems"], domains["maxItems"]) == (8, 4)
    ip = re.compile(ips["items"]["pattern"])
    assert ip.match("81.2.69.160") and ip.match("2a00:1450:4001:829:0:0:0:200e")
    for private in ("10.0.0.1", "127.0.0.2", "192.168.1.1", "192.0.2.1", "fd00:0:0:0:0:0:0:1"):
        assert not ip.match(private)
    assert re.match(domains["items"]["pattern"], "mail.example.com")
    assert "reputation" in schemas["SmtpMonitor"]["properties"]
