"""OAuth2 grants as tables (controller.monitors.oauth2_grants, oauth2.rules): presets and their
exact scopes, which token endpoints are allowed, when a cached token still serves a job, and what
the owners read for `basic_auth_disabled` and `oauth2_token`."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.monitors import oauth2_grants as grants
from controller.monitors.oauth2_grants import Grant, GrantProblem
from controller.notify.causes import describe
from controller.oauth2 import rules

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("grant", "protocol", "url", "scopes"),
    [
        (
            Grant(provider="microsoft", tenant="contoso.onmicrosoft.com"),
            "imap",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
            ["https://outlook.office365.com/.default"],
        ),
        (
            Grant(provider="microsoft", tenant="common", grant="refresh_token"),
            "pop3",
            "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            ["https://outlook.office.com/POP.AccessAsUser.All", "offline_access"],
        ),
        (
            Grant(provider="microsoft", tenant="common", grant="refresh_token"),
            "smtp",
            "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            ["https://outlook.office.com/SMTP.Send", "offline_access"],
        ),
        (
            Grant(provider="google", grant="jwt_bearer"),
            "imap",
            "https://oauth2.googleapis.com/token",
            ["https://mail.google.com/"],
        ),
        (
            Grant(token_url="https://idp.example.net/token", scopes=["mail"]),
            "imap",
            "https://idp.example.net/token",
            ["mail"],
        ),
    ],
)
def test_presets_name_their_endpoint_and_exact_scopes(
    grant: Grant, protocol: str, url: str, scopes: list[str]
) -> None:
    assert grants.endpoint(grant) == url
    assert grants.scopes(grant, protocol) == scopes


BASE: dict[str, Any] = {"grant": "client_credentials", "clientId": "app", "clientSecret": "s"}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (
            {"provider": "custom", "tokenUrl": "https://evil.example/token", "scopes": ["a"]},
            "tokenUrl",
        ),
        (
            {
                "provider": "custom",
                "tokenUrl": "https://u:p@idp.example.net/token",
                "scopes": ["a"],
            },
            "tokenUrl",
        ),
        (
            {
                "provider": "custom",
                "tokenUrl": "https://idp.example.net/token?x=1",
                "scopes": ["a"],
            },
            "tokenUrl",
        ),
        ({"provider": "custom", "tokenUrl": "https://idp.example.net/token"}, "scopes"),
        ({"provider": "microsoft", "tenant": "../x"}, "tenant"),
        ({"provider": "microsoft", "tenant": "t", "tokenUrl": "https://x/t"}, "tokenUrl"),
        ({"provider": "google", "tenant": "t"}, "tenant"),
        ({"provider": "microsoft", "tenant": "t", "grant": "jwt_bearer"}, "grant"),
        ({"provider": "microsoft", "tenant": "t", "clientSecret": ""}, "clientSecret"),
        ({"provider": "google", "grant": "refresh_token"}, "refreshToken"),
        ({"provider": "microsoft", "tenant": "t", "subject": "a@b.c"}, "subject"),
    ],
)
def test_a_bad_grant_names_its_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(GrantProblem) as refused:
        grants.checked({**BASE, **raw}, ["IDP.example.net."])
    assert refused.value.field == field


def test_an_allowed_custom_host_is_compared_normalised() -> None:
    raw = {**BASE, "tokenUrl": "https://IDP.Example.NET:8443/token", "scopes": ["mail"]}
    assert grants.checked(raw, ["idp.example.net."]).token_url == raw["tokenUrl"]


def test_a_token_serves_a_job_only_while_it_outlives_it_by_the_margin() -> None:
    until = T0 + timedelta(minutes=10)
    assert rules.usable(until + rules.MARGIN + timedelta(seconds=1), until)
    assert not rules.usable(until + rules.MARGIN, until)
    assert not rules.usable(None, until)
    assert rules.expires_at(T0, None) == T0 + rules.DEFAULT_LIFETIME


def test_a_grant_key_changes_with_any_part_of_the_grant() -> None:
    grant = Grant(client_id="a", token_url="https://x/t")
    key = rules.grant_key(b"k" * 32, 1, "oauth2", grant)
    assert key == rules.grant_key(
        b"k" * 32, 1, "oauth2", Grant(client_id="a", token_url="https://x/t")
    )
    assert key != rules.grant_key(b"k" * 32, 2, "oauth2", grant)
    assert key != rules.grant_key(
        b"k" * 32, 1, "oauth2", Grant(client_id="b", token_url="https://x/t")
    )


def test_the_causes_say_how_to_switch_to_oauth2_and_that_the_server_is_not_at_fault() -> None:
    kind, text = describe(
        [("DE", "basic_auth_disabled", "535 5.7.139 basic authentication is disabled")]
    )
    assert kind == "basic_auth_disabled" and "OAuth2" in text and "oauth2" in text
    kind, text = describe([("DE", "oauth2_token", "invalid_grant")])
    assert "not at fault" in text


@pytest.mark.parametrize(
    "raw",
    [
        {"grant": "client_credentials", "provider": "microsoft", "tenant": "t", "clientId": "a"},
        {"grant": "refresh_token", "provider": "google", "clientId": "a"},
        {"grant": "client_credentials", "tokenUrl": "https://idp.example.net/t", "clientId": "a"},
    ],
)
def test_a_stored_grant_spells_out_its_choices_and_reads_back_as_it_is(
    raw: dict[str, Any],
) -> None:
    """Defaults included (`XOAUTH2`, `client_credentials`, `custom`): the API shows the stored
    grant, and the console and `export` send what it shows back."""
    secret = {"client_credentials": "clientSecret", "refresh_token": "refreshToken"}
    body = {**raw, secret[raw["grant"]]: "s", "scopes": ["mail"]}
    stored = grants.as_stored(grants.checked(body, ["idp.example.net"]))
    assert {k: stored[k] for k in ("mechanism", "grant", "provider")} == {
        "mechanism": "XOAUTH2",
        "grant": raw["grant"],
        "provider": raw.get("provider", "custom"),
    }
    assert grants.as_stored(grants.checked(stored, ["idp.example.net"])) == stored
