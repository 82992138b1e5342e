"""A process refuses a template's placeholder where a secret goes (the Kubernetes examples'
CHANGE-ME), naming the setting and never repeating the value; a real value passes."""

import pytest

from agent.settings import AgentSettings
from controller.settings import ControllerSettings
from shared.settings import SettingsError, load

DB = "postgresql://mailprobe:{}@db-rw:5432,db-r:5432/mailprobe?sslmode=verify-full"
NATS = "tls://agent-DE:{}@n-0:4222,tls://agent-DE:{}@n-1:4222"
KEY = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE="


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        ({"DATABASE_URL": DB.format("CHANGE-ME")}, "DATABASE_URL"),
        ({"DATABASE_URL": DB.format("change-me")}, "DATABASE_URL"),
        (
            {"DATABASE_URL": DB.format("x"), "NATS_URL": NATS.format("s3cret", "CHANGE-ME")},
            "NATS_URL",
        ),
        ({"DATABASE_URL": DB.format("x"), "SECRETS_KEY": "CHANGE-ME"}, "SECRETS_KEY"),
        ({"DATABASE_URL": DB.format("x"), "SECRETS_KEY": f"{KEY},changeme"}, "SECRETS_KEY"),
        ({"DATABASE_URL": DB.format("change-me-please")}, None),  # a password, if a poor one
        (
            {"DATABASE_URL": DB.format("x"), "NATS_URL": NATS.format("a", "b"), "SECRETS_KEY": KEY},
            None,
        ),
    ],
)
def test_the_controller_refuses_a_placeholder(env: dict[str, str], refused: str | None) -> None:
    if refused is None:
        load(ControllerSettings, env)
        return
    with pytest.raises(SettingsError, match=f"{refused} holds a template's placeholder") as exc:
        load(ControllerSettings, env)
    assert "change-me" not in str(exc.value).lower()  # the value is never repeated


def test_an_agent_refuses_a_placeholder_nats_password() -> None:
    env = {"AGENT_COUNTRY": "DE", "NATS_URL": "tls://agent-DE:CHANGE-ME@nats:4222"}
    with pytest.raises(SettingsError, match="NATS_URL holds a template's placeholder"):
        load(AgentSettings, env)
