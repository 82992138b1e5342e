"""The rules of a round trip's legs over a mailbox API (controller/monitors/mailbox_apis.py), as
tables: which `api` there is, what login each takes, which cleanup, which agent feature."""

import pytest

from controller.monitors import mailbox_apis as apis
from shared.messages import ImapPopConfig, RoundTripConfig, RoundTripReceive, RoundTripSend

GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]
GMAIL_SCOPE = ["https://www.googleapis.com/auth/gmail.modify"]


@pytest.mark.parametrize(
    ("sent", "stored"), [("", ""), ("graph", "graph"), (" Gmail ", "gmail"), ("GRAPH", "graph")]
)
def test_an_api_is_stored_lower_case(sent: str, stored: str) -> None:
    assert apis.api(sent) == stored


@pytest.mark.parametrize("sent", ["imap", "ews", "smtp", "graph2"])
def test_another_api_is_refused_naming_api(sent: str) -> None:
    with pytest.raises(apis.LegProblem) as refused:
        apis.api(sent)
    assert refused.value.field == "api"


@pytest.mark.parametrize(
    ("api", "grant", "scopes", "password", "stored", "field"),
    [
        ("", None, [], True, None, None),  # a protocol's leg: its grant left as it is
        ("", "refresh_token", ["x"], False, None, None),
        ("graph", "client_credentials", [], False, GRAPH_SCOPE, None),
        ("graph", "client_credentials", GRAPH_SCOPE, False, GRAPH_SCOPE, None),
        ("graph", "client_credentials", [], True, None, "password"),
        ("graph", None, [], False, None, "oauth2"),
        ("graph", "refresh_token", [], False, None, "oauth2.grant"),
        (
            "graph",
            "client_credentials",
            ["https://outlook.office365.com/.default"],
            False,
            None,
            "oauth2.scopes",
        ),
        ("gmail", "refresh_token", [], False, GMAIL_SCOPE, None),
        ("gmail", "jwt_bearer", GMAIL_SCOPE, False, GMAIL_SCOPE, None),
        ("gmail", "client_credentials", [], False, None, "oauth2.grant"),
        ("gmail", "refresh_token", ["https://mail.google.com/"], False, None, "oauth2.scopes"),
    ],
)
def test_an_api_legs_login(
    api: str,
    grant: str | None,
    scopes: list[str],
    password: bool,
    stored: list[str] | None,
    field: str | None,
) -> None:
    if field is None:
        assert apis.grant_scopes(api, grant, scopes, password, "oauth2") == stored
        return
    with pytest.raises(apis.LegProblem) as refused:
        apis.grant_scopes(api, grant, scopes, password, "oauth2")
    assert refused.value.field == field


def test_the_send_legs_password_is_named_where_it_sits() -> None:
    with pytest.raises(apis.LegProblem) as refused:
        apis.grant_scopes("graph", "client_credentials", [], True, "auth.oauth2")
    assert refused.value.field == "auth.pass"


@pytest.mark.parametrize(
    ("api", "protocol", "cleanup", "field"),
    [
        ("", "imap", "", None),
        ("", "pop3", "", None),
        ("graph", "imap", "", None),
        ("graph", "imap", "move", None),
        ("graph", "imap", "delete", None),
        ("gmail", "imap", "move", None),
        ("gmail", "imap", "delete", "cleanup"),  # a delete needs full mail access
        ("", "imap", "move", "cleanup"),  # IMAP and POP3 delete what they found
        ("graph", "imap", "purge", "cleanup"),
        ("graph", "pop3", "", "protocol"),
    ],
)
def test_a_mailbox_legs_cleanup(api: str, protocol: str, cleanup: str, field: str | None) -> None:
    if field is None:
        assert apis.receive_leg(api, protocol, cleanup) == cleanup
        return
    with pytest.raises(apis.LegProblem) as refused:
        apis.receive_leg(api, protocol, cleanup)
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("send", "receive", "features"),
    [
        ("", "", []),
        ("graph", "", ["graph"]),
        ("", "gmail", ["gmail"]),
        ("graph", "graph", ["graph"]),
        ("gmail", "graph", ["gmail", "graph"]),
        ("ews", "", []),  # one the controller does not know needs none: the agent names it
    ],
)
def test_the_features_a_job_needs(send: str, receive: str, features: list[str]) -> None:
    config = RoundTripConfig(send=RoundTripSend(api=send), receive=RoundTripReceive(api=receive))
    assert apis.features(config) == features


@pytest.mark.parametrize(
    ("api", "features"),
    [
        ("", []),
        ("graph", ["graph", "api-mailbox"]),
        ("gmail", ["gmail", "api-mailbox"]),
        ("ews", []),
    ],
)
def test_the_features_a_mailbox_check_needs(api: str, features: list[str]) -> None:
    assert apis.features(ImapPopConfig(api=api)) == features


@pytest.mark.parametrize(
    ("api", "check", "scopes"),
    [
        ("graph", True, ["https://graph.microsoft.com/.default"]),
        ("gmail", True, ["https://www.googleapis.com/auth/gmail.readonly"]),
        ("gmail", False, ["https://www.googleapis.com/auth/gmail.modify"]),
        ("", True, []),
    ],
)
def test_a_mailbox_check_asks_only_to_read(api: str, check: bool, scopes: list[str]) -> None:
    assert apis.scope(api, check) == scopes
