"""Which environment variables a monitors file may read as a secret (pure): only
MAILPROBE_SECRET_<NAME>, never the API token's variable nor the token's value; and `export`
names every secret so that it applies again."""

import pytest

from controller.ascode.secret_env import export_name, holds_the_token, refusal, what_of
from controller.monitors.validation import SECRET_ENV_NAME

TOKEN_REFUSED = "MAILPROBE_TOKEN holds the API token and is never sent as a secret"


def _prefix_refused(name: str) -> str:
    return (
        f"environment variable {name} may not be read as a secret: secrets come only from"
        " variables named MAILPROBE_SECRET_<NAME> (letters, digits, _)"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("MAILPROBE_SECRET_RELAY", None),
        ("MAILPROBE_SECRET_relay_2", None),
        ("MAILPROBE_TOKEN", TOKEN_REFUSED),
        ("MAILPROBE_API", _prefix_refused("MAILPROBE_API")),
        ("HOME", _prefix_refused("HOME")),
        ("AWS_SECRET_ACCESS_KEY", _prefix_refused("AWS_SECRET_ACCESS_KEY")),
        ("MAILPROBE_SECRET_", _prefix_refused("MAILPROBE_SECRET_")),
        ("mailprobe_secret_relay", _prefix_refused("mailprobe_secret_relay")),
        ("XMAILPROBE_SECRET_RELAY", _prefix_refused("XMAILPROBE_SECRET_RELAY")),
        ("MAILPROBE_SECRET_A-B", _prefix_refused("MAILPROBE_SECRET_A-B")),
        ("MAILPROBE_SECRET_A\n", _prefix_refused("MAILPROBE_SECRET_A\n")),
    ],
)
def test_only_prefixed_variables_are_secrets(name: str, expected: str | None) -> None:
    assert refusal(name) == expected


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("mp_tok", {"MAILPROBE_TOKEN": "mp_tok"}, True),
        ("mp_tok", {"MAILPROBE_TOKEN": "mp_other"}, False),
        ("", {"MAILPROBE_TOKEN": ""}, False),
        ("mp_tok", {}, False),
    ],
)
def test_a_secret_holding_the_token_is_recognised(
    value: str, env: dict[str, str], expected: bool
) -> None:
    assert holds_the_token(value, env) is expected


@pytest.mark.parametrize(
    ("monitor", "name"),
    [
        ("Outbound relay", "MAILPROBE_SECRET_OUTBOUND_RELAY_PASSWORD"),
        ("imap.example.com (DE)", "MAILPROBE_SECRET_IMAP_EXAMPLE_COM_DE_PASSWORD"),
        ("Ünïcode!", "MAILPROBE_SECRET_N_CODE_PASSWORD"),
        ("!!!", "MAILPROBE_SECRET_MONITOR_PASSWORD"),
    ],
)
def test_export_names_are_secrets_apply_reads(monitor: str, name: str) -> None:
    assert export_name(monitor) == name
    assert refusal(name) is None


@pytest.mark.parametrize(
    ("steps", "legs", "what"),
    [
        (("auth", "pass"), 1, "PASSWORD"),
        (("password",), 1, "PASSWORD"),
        (("send", "auth", "pass"), 2, "SEND_PASSWORD"),
        (("receive", "password"), 2, "RECEIVE_PASSWORD"),
        (("oauth2", "clientSecret"), 1, "CLIENT_SECRET"),
        (("send", "auth", "oauth2", "refreshToken"), 2, "SEND_REFRESH_TOKEN"),
    ],
)
def test_a_made_up_name_says_what_the_secret_is(
    steps: tuple[str, ...], legs: int, what: str
) -> None:
    assert what_of(steps, legs) == what
    assert refusal(export_name("Box", what)) is None


def test_a_made_up_name_from_a_long_monitor_name_is_one_the_api_keeps() -> None:
    name = export_name("x" * 200, "SEND_REFRESH_TOKEN")
    assert name == f"MAILPROBE_SECRET_{'X' * 60}_SEND_REFRESH_TOKEN"
    assert SECRET_ENV_NAME.fullmatch(name)
