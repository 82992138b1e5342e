"""The agent's settings in groups: each bad variable, alone, stops the agent with the same line
it gave when the settings were one class (pinned here word for word), each variable is declared
by one group, and only the composition root and the worker's builder see the whole."""

import ast
import re
from pathlib import Path

import pytest

from agent.settings import AgentSettings
from shared.settings import SettingsError, load, variables

ROOT = Path(__file__).resolve().parents[2]

NOT_HOST_PORT = "is not `host:port` (port 1-65535, an IPv6 address in brackets)"
# (the environment besides AGENT_COUNTRY=DE, the error's line after "setting ")
AGENT_ERRORS: list[tuple[dict[str, str], str]] = [
    ({}, "AGENT_COUNTRY is required but not set"),
    (
        {"AGENT_COUNTRY": "germany"},
        "AGENT_COUNTRY must be an upper-case ISO 3166-1 alpha-2 code like DE",
    ),
    (
        {"AGENT_COUNTRY": "de"},
        "AGENT_COUNTRY must be an upper-case ISO 3166-1 alpha-2 code like DE",
    ),
    (
        {"AGENT_ALLOW_PRIVATE_TARGETS": "maybe"},
        "AGENT_ALLOW_PRIVATE_TARGETS is invalid: Expected `bool`, got `str`",
    ),
    ({"AGENT_SEAL_KEYS": ","}, "AGENT_SEAL_KEYS holds no key"),
    ({"AGENT_SEAL_KEYS": "notakey"}, "AGENT_SEAL_KEYS: key 1 of 1: private key is not base64"),
    ({"AGENT_SEAL_KEYS_FILE": "/dev/null"}, "AGENT_SEAL_KEYS_FILE holds no key"),
    ({"AGENT_ID": "a b"}, "AGENT_ID must be 1 to 64 letters, digits, `-` or `_`"),
    ({"AGENT_ID": "x" * 65}, "AGENT_ID must be 1 to 64 letters, digits, `-` or `_`"),
    ({"AGENT_DNS_RESOLVER": "udp://1.1.1.1"}, "AGENT_DNS_RESOLVER must be `host` or `host:port`"),
    ({"AGENT_BLOCKLIST_RESOLVER": "a b"}, "AGENT_BLOCKLIST_RESOLVER must be `host` or `host:port`"),
    (
        {"AGENT_DNS_CANARIES": "garbage"},
        "AGENT_DNS_CANARIES: 'garbage': say `name TYPE` (A, AAAA, MX, TXT, NS, SOA, PTR, CNAME),"
        " `!name TYPE`",
    ),
    (
        {"AGENT_DNS_CANARIES": "a0.org A,a1.org A,a2.org A,a3.org A,a4.org A"},
        "AGENT_DNS_CANARIES: at most 4 canaries",
    ),
    (
        {"AGENT_SPAMHAUS_DQS_KEY": "short"},
        "AGENT_SPAMHAUS_DQS_KEY must be 8 to 63 letters and digits",
    ),
    (
        {"AGENT_SPAMHAUS_DQS_KEY": "abc.defghij"},
        "AGENT_SPAMHAUS_DQS_KEY must be 8 to 63 letters and digits",
    ),
    (
        {"AGENT_MTA_STS_CA_FILE": "/nonexistent.pem"},
        "AGENT_MTA_STS_CA_FILE cannot be loaded: [Errno 2] No such file or directory",
    ),
    ({"AGENT_MTA_STS_PORT": "0"}, "AGENT_MTA_STS_PORT is invalid: Expected `int` >= 1"),
    ({"AGENT_MTA_STS_PORT": "70000"}, "AGENT_MTA_STS_PORT is invalid: Expected `int` <= 65535"),
    ({"AGENT_MTA_STS_PORT": "x"}, "AGENT_MTA_STS_PORT is invalid: Expected `int`, got `str`"),
    (
        {"AGENT_BLOCKLIST_RECENT_SECONDS": "0"},
        "AGENT_BLOCKLIST_RECENT_SECONDS is invalid: Expected `float` >= 1.0",
    ),
    ({"AGENT_CONCURRENCY": "0"}, "AGENT_CONCURRENCY is invalid: Expected `int` >= 1"),
    ({"AGENT_CONCURRENCY": "100001"}, "AGENT_CONCURRENCY is invalid: Expected `int` <= 100000"),
    ({"AGENT_CONCURRENCY": "many"}, "AGENT_CONCURRENCY is invalid: Expected `int`, got `str`"),
    (
        {"AGENT_TENANT_SLOT_SHARE": "0"},
        "AGENT_TENANT_SLOT_SHARE is invalid: Expected `float` > 0.0",
    ),
    (
        {"AGENT_TENANT_SLOT_SHARE": "1.5"},
        "AGENT_TENANT_SLOT_SHARE is invalid: Expected `float` <= 1.0",
    ),
    (
        {"AGENT_DNS_LOOKUPS_PER_TENANT": "0"},
        "AGENT_DNS_LOOKUPS_PER_TENANT is invalid: Expected `int` >= 1",
    ),
    (
        {"AGENT_DNS_LOOKUPS_PER_TENANT": "10001"},
        "AGENT_DNS_LOOKUPS_PER_TENANT is invalid: Expected `int` <= 10000",
    ),
    (
        {"AGENT_DNS_PROBES_PER_TENANT": "0"},
        "AGENT_DNS_PROBES_PER_TENANT is invalid: Expected `int` >= 1",
    ),
    (
        {"AGENT_DNS_PROBES_PER_TENANT": "10001"},
        "AGENT_DNS_PROBES_PER_TENANT is invalid: Expected `int` <= 10000",
    ),
    (
        {"AGENT_SHUTDOWN_GRACE_SECONDS": "-1"},
        "AGENT_SHUTDOWN_GRACE_SECONDS is invalid: Expected `float` >= 0.0",
    ),
    ({"AGENT_METRICS_PORT": "-1"}, "AGENT_METRICS_PORT is invalid: Expected `int` >= 0"),
    ({"AGENT_METRICS_PORT": "65536"}, "AGENT_METRICS_PORT is invalid: Expected `int` <= 65535"),
    (
        {"AGENT_CANARIES": "bad"},
        "AGENT_CANARIES: entry 1 of 1 " + NOT_HOST_PORT,
    ),
    (
        {"AGENT_CANARIES": ",".join(f"10.0.0.{i}:25" for i in range(17))},
        "AGENT_CANARIES holds 17 canaries; at most 16",
    ),
    (
        {"AGENT_CANARIES": "10.0.0.1:25,bob:hunter2@mx:25"},
        "AGENT_CANARIES: entry 2 of 2 " + NOT_HOST_PORT,
    ),
    (
        {"AGENT_CANARY_RESOLVE": "not a host"},
        "AGENT_CANARY_RESOLVE must be a host name like example.org",
    ),
    (
        {"AGENT_CANARY_INTERVAL_SECONDS": "0.5"},
        "AGENT_CANARY_INTERVAL_SECONDS is invalid: Expected `float` >= 1.0",
    ),
    (
        {"AGENT_CANARY_TIMEOUT_SECONDS": "0"},
        "AGENT_CANARY_TIMEOUT_SECONDS is invalid: Expected `float` > 0.0",
    ),
    (
        {"AGENT_CANARY_TIMEOUT_SECONDS": "61"},
        "AGENT_CANARY_TIMEOUT_SECONDS is invalid: Expected `float` <= 60.0",
    ),
    ({"NATS_URL": "http://x"}, "NATS_URL must start with one of nats://, tls://, ws://, wss://"),
    (
        {"NATS_URL": "nats://u:change-me@h:4222"},
        "NATS_URL holds a template's placeholder password: generate the real one"
        " (python -m deploy.gen_env, python -m deploy.mint_country)",
    ),
    ({"NATS_TLS_CERT_FILE": "/x"}, "NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE must be set together"),
    (
        {"NATS_TLS_CA_FILE": "/nonexistent"},
        "NATS_TLS_CA_FILE cannot be loaded: [Errno 2] No such file or directory",
    ),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL is invalid: Invalid enum value 'LOUD'"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT is invalid: Invalid enum value 'xml'"),
]


@pytest.mark.parametrize(("bad", "message"), AGENT_ERRORS)
def test_a_bad_agent_setting_is_the_line_naming_it(bad: dict[str, str], message: str) -> None:
    env = {"AGENT_COUNTRY": "DE", **bad} if bad else {}
    with pytest.raises(SettingsError) as caught:
        load(AgentSettings, env)
    assert str(caught.value) == f"setting {message}"


def test_each_agent_variable_is_declared_by_one_group() -> None:
    names = variables(AgentSettings)
    assert len(names) == len(set(names)) == 48
    settings = load(AgentSettings, {"AGENT_CONCURRENCY": "7"}, agent_country="DE", agent_id="a")
    assert (settings.identity.agent_country, settings.identity.agent_id) == ("DE", "a")
    assert settings.work.agent_concurrency == 7


# Where the whole AgentSettings may go: the settings, the composition root, the worker's builder.
WHOLE = {"agent/settings.py", "agent/__main__.py", "agent/worker.py"}


def _names_it(node: ast.AST) -> bool:
    """`AgentSettings` as a name, an imported name, an attribute or a string annotation."""
    match node:
        case ast.Name(id="AgentSettings") | ast.alias(name="AgentSettings"):
            return True
        case ast.Attribute(attr="AgentSettings"):
            return True
        case ast.Constant(value=str(text)):
            return re.search(r"\bAgentSettings\b", text) is not None
    return False


def whole_settings_users(sources: dict[str, str]) -> list[str]:
    """The agent's modules, besides WHOLE, that name AgentSettings in their code."""
    return sorted(
        path
        for path, source in sources.items()
        if path not in WHOLE and any(_names_it(node) for node in ast.walk(ast.parse(source)))
    )


def test_each_part_of_the_agent_takes_only_its_groups() -> None:
    sources = {
        str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "agent").rglob("*.py"))
    }
    assert whole_settings_users(sources) == []
    planted = {
        "agent/selfcheck.py": "from agent.settings import AgentSettings\n",
        "agent/sidechecks/relay.py": "def build(s: 'AgentSettings') -> None: ...\n",
        "agent/sidechecks/x.py": "import agent.settings\nX = agent.settings.AgentSettings\n",
        "agent/worker.py": "from agent.settings import AgentSettings\n",
    }
    assert whole_settings_users(planted) == [
        "agent/selfcheck.py",
        "agent/sidechecks/relay.py",
        "agent/sidechecks/x.py",
    ]
