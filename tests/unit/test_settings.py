"""Settings: a missing or malformed one is one clear line naming it."""

import msgspec
import pytest

from agent.settings import AgentSettings, parse_canaries
from controller.secrets.box import generate_key
from controller.settings import ControllerSettings
from shared.settings import ProcessSettings, SettingsError, load, table, variables

GOOD = {"DATABASE_URL": "postgresql://u@localhost/db"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "setting DATABASE_URL is required but not set"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must start with one of"),
        ({**GOOD, "API_PORT": "eighty"}, "setting API_PORT is invalid: Expected `int`"),
        ({**GOOD, "API_PORT": "0"}, "setting API_PORT is invalid: Expected `int` >= 1"),
        ({**GOOD, "NATS_URL": "http://x"}, "NATS_URL must start with one of"),
        ({**GOOD, "SECRETS_KEY": "short"}, "SECRETS_KEY must be comma-separated"),
        ({**GOOD, "LOG_LEVEL": "LOUD"}, "setting LOG_LEVEL is invalid"),
        ({**GOOD, "CHECK_RAW_DAYS": "1"}, "setting CHECK_RAW_DAYS is invalid"),
        ({**GOOD, "CHECK_RAW_DAYS": "91"}, "CHECK_RAW_DAYS must be at most CHECK_HISTORY_DAYS"),
        (
            {**GOOD, "NOTIFY_PRIVATE_NETWORK_GRANTS": "3=10.0.0.0/8, intranet"},
            "NOTIFY_PRIVATE_NETWORK_GRANTS: 'intranet' (organization 3) is not an IP address",
        ),
        (
            {**GOOD, "NOTIFY_PRIVATE_NETWORK_GRANTS": "acme=10.0.0.0/8"},
            "NOTIFY_PRIVATE_NETWORK_GRANTS: 'acme' is not an organization id or *",
        ),
        (
            {**GOOD, "NOTIFY_PRIVATE_NETWORK_GRANTS": "10.0.0.0/8"},
            "NOTIFY_PRIVATE_NETWORK_GRANTS: '10.0.0.0/8' is not an organization id or *",
        ),
        (
            {**GOOD, "NOTIFY_PRIVATE_NETWORK_GRANTS": "3="},
            "NOTIFY_PRIVATE_NETWORK_GRANTS: organization 3 has no `=<networks>`",
        ),
        (
            {**GOOD, "NOTIFY_PRIVATE_NETWORK_GRANTS": "3=10.0.0.0/8;3=fd00::/8"},
            "NOTIFY_PRIVATE_NETWORK_GRANTS: organization 3 is granted twice",
        ),
        (
            {**GOOD, "NOTIFY_ALLOW_PRIVATE_NETWORKS": "10.0.0.0/8"},
            "NOTIFY_ALLOW_PRIVATE_NETWORKS is retired: it opened the networks to every"
            " organization. Grant them per organization in NOTIFY_PRIVATE_NETWORK_GRANTS",
        ),
        ({**GOOD, "PUBLIC_URL": "ftp://mailprobe.example"}, "PUBLIC_URL must start with one of"),
        (
            {**GOOD, "OAUTH2_TOKEN_FETCHES": "20"},
            "OAUTH2_TOKEN_FETCHES must be below DB_POOL_MAX",
        ),
        ({**GOOD, "OAUTH2_TOKEN_FETCHES": "0"}, "setting OAUTH2_TOKEN_FETCHES is invalid"),
        (
            {**GOOD, "ORG_MAX_CHANNEL_NOTIFICATIONS_PER_HOUR": "0"},
            "setting ORG_MAX_CHANNEL_NOTIFICATIONS_PER_HOUR is invalid",
        ),
    ],
)
def test_bad_controller_setting_names_it(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(ControllerSettings, env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_multi_host_database_url_is_one_url() -> None:
    """The primary and its standby in one libpq URL (docs/operating.md, "Running without a
    single point of failure"): its hosts' commas do not make it a list of URLs."""
    url = "postgresql://u:p@db1:5432,db2:5432/mailprobe?target_session_attrs=read-write"
    assert load(ControllerSettings, {"DATABASE_URL": url}).database.database_url == url


def test_private_networks_are_granted_per_organization_or_to_every_one_by_star() -> None:
    env = {**GOOD, "NOTIFY_PRIVATE_NETWORK_GRANTS": " 3 = 10.0.0.0/8, 192.168.1.5 ;*=fd00::/8;"}
    grants = load(ControllerSettings, env).notify.notify_private_grants
    assert {org: [str(n) for n in nets] for org, nets in grants.items()} == {
        3: ["10.0.0.0/8", "192.168.1.5/32"],
        "*": ["fd00::/8"],
    }
    assert load(ControllerSettings, GOOD).notify.notify_private_grants == {}


def test_defaults_and_conversions() -> None:
    key = generate_key()
    settings = load(ControllerSettings, {**GOOD, "API_PORT": "9000", "SECRETS_KEY": key, "X": "1"})
    assert settings.api.api_port == 9000
    assert settings.secrets.secrets_key == key
    assert settings.process.nats_url == "nats://127.0.0.1:4222"


def test_empty_value_counts_as_unset() -> None:
    assert load(ControllerSettings, {**GOOD, "API_PORT": ""}).api.api_port == 8080


def test_agent_country_must_be_upper_iso_shape() -> None:
    with pytest.raises(SettingsError, match="AGENT_COUNTRY must be an upper-case"):
        load(AgentSettings, {"AGENT_COUNTRY": "germany"})
    agent = load(AgentSettings, {"AGENT_ALLOW_PRIVATE_TARGETS": "true"}, agent_country="DE")
    assert agent.targets.agent_allow_private_targets is True
    assert agent.identity.agent_country == "DE"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NOTIFY_SMTP_URL": "http://relay"}, "NOTIFY_SMTP_URL must start with one of smtp://"),
        ({"NOTIFY_SMTP_URL": "smtp://u:pw@relay:99999", "NOTIFY_FROM": "a@b"}, "invalid port"),
        ({"NOTIFY_SMTP_URL": "smtp://u:pw@relay:587"}, "NOTIFY_FROM (an e-mail address)"),
        ({"NOTIFY_SMS_WEBHOOK_URL": "ftp://x"}, "NOTIFY_SMS_WEBHOOK_URL must start with"),
        ({"NOTIFY_REMINDER_MINUTES": "-1"}, "setting NOTIFY_REMINDER_MINUTES is invalid"),
        ({"PUBLIC_URL": "mailprobe.example.com"}, "PUBLIC_URL must start with one of http://"),
        ({"PUBLIC_URL": "https://u:pw@mailprobe.example.com"}, "PUBLIC_URL must be a base URL"),
        ({"PUBLIC_URL": "https://mailprobe.example.com/?x=1"}, "PUBLIC_URL must be a base URL"),
        ({"PUBLIC_URL": "https://"}, "PUBLIC_URL must be a base URL"),
    ],
)
def test_bad_notification_setting_names_it_without_its_secret(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load(ControllerSettings, {**GOOD, **env})
    assert message in str(caught.value)
    assert "pw" not in str(caught.value)


def test_notification_settings_load() -> None:
    settings = load(
        ControllerSettings,
        {
            **GOOD,
            "NOTIFY_SMTP_URL": "smtps://u:p%40ss@relay.example:465",
            "NOTIFY_FROM": "mailprobe <alerts@example.com>",
            "NOTIFY_SMS_WEBHOOK_URL": "https://hook.example/sms",
        },
    )
    assert settings.alerting.notify_reminder_minutes == 60
    from controller.notify import channels

    assert sorted(channels(settings.notify)) == ["email", "sms"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AGENT_CANARIES": "smtp.example"}, "AGENT_CANARIES: entry 1 of 1 is not `host:port`"),
        ({"AGENT_CANARIES": "a:25,b:0"}, "AGENT_CANARIES: entry 2 of 2 is not `host:port`"),
        ({"AGENT_CANARIES": "a:65536"}, "entry 1 of 1"),
        ({"AGENT_CANARIES": "a:25,"}, "entry 2 of 2"),
        ({"AGENT_CANARIES": "::1:25"}, "entry 1 of 1"),  # IPv6 needs brackets
        ({"AGENT_CANARIES": "[nope]:25"}, "entry 1 of 1"),
        ({"AGENT_CANARIES": "a b:25"}, "entry 1 of 1"),
        ({"AGENT_CANARIES": f"{'a' * 64}.example:25"}, "entry 1 of 1"),  # a label > 63
        ({"AGENT_CANARIES": ",".join(f"h{n}:25" for n in range(17))}, "at most 16"),
        ({"AGENT_CANARY_RESOLVE": "no such name!"}, "AGENT_CANARY_RESOLVE must be a host name"),
        ({"AGENT_CANARY_INTERVAL_SECONDS": "0"}, "setting AGENT_CANARY_INTERVAL_SECONDS is"),
        ({"AGENT_CANARY_TIMEOUT_SECONDS": "0"}, "setting AGENT_CANARY_TIMEOUT_SECONDS is"),
    ],
)
def test_a_bad_canary_setting_stops_the_agent_naming_it(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(AgentSettings, env, agent_country="DE")
    assert message in str(caught.value)


def test_a_canary_entry_with_credentials_is_refused_without_repeating_them() -> None:
    """A URL pasted by mistake (`user:password@host:port`) is named by position only."""
    with pytest.raises(SettingsError) as caught:
        load(AgentSettings, {"AGENT_CANARIES": "10.0.0.1:25,bob:hunter2@mx:25"}, agent_country="DE")
    assert "entry 2 of 2" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_canaries_may_be_private_loopback_or_ipv6_and_repeats_count_once() -> None:
    env = {"AGENT_CANARIES": "127.0.0.1:25, 10.0.0.5:993,[::1]:110,127.0.0.1:25"}
    settings = load(AgentSettings, env, agent_country="DE")
    assert parse_canaries(settings.self_checks.agent_canaries or "") == [
        ("127.0.0.1", 25),
        ("10.0.0.5", 993),
        ("::1", 110),
    ]
    assert settings.self_checks.agent_canary_interval_seconds == 60
    assert settings.self_checks.agent_canary_timeout_seconds == 5


@pytest.mark.parametrize("cls", [ControllerSettings, AgentSettings])
def test_shared_settings_are_declared_once_for_both_processes(
    cls: type[ControllerSettings] | type[AgentSettings],
) -> None:
    """Pins the shared base: both processes take NATS_URL, the NATS TLS files and LOG_* from
    ProcessSettings (one declaration: same env names, defaults and checks; each process's
    `process` group), and a required setting leads its group's rows (the agent's AGENT_COUNTRY,
    the controller's DATABASE_URL)."""
    env = {"DATABASE_URL": "postgresql://u@localhost/db", "AGENT_COUNTRY": "DE"}
    shared = {f.encode_name: f.default for f in msgspec.structs.fields(ProcessSettings)}
    assert shared == {
        "NATS_URL": "nats://127.0.0.1:4222",
        "NATS_TLS_CA_FILE": None,
        "NATS_TLS_CERT_FILE": None,
        "NATS_TLS_KEY_FILE": None,
        "LOG_FORMAT": "auto",
        "LOG_LEVEL": "INFO",
    }
    loaded = load(cls, env)
    settings = loaded.process
    assert isinstance(settings, ProcessSettings)
    assert (settings.nats_url, settings.log_format, settings.log_level) == (
        "nats://127.0.0.1:4222",
        "auto",
        "INFO",
    )
    for bad, message in (
        ({"NATS_URL": "http://x"}, "NATS_URL must start with one of"),
        ({"NATS_TLS_CERT_FILE": "/nonexistent.pem"}, "NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE"),
        ({"LOG_LEVEL": "LOUD"}, "setting LOG_LEVEL is invalid"),
        ({"LOG_FORMAT": "xml"}, "setting LOG_FORMAT is invalid"),
    ):
        with pytest.raises(SettingsError, match=message):
            load(cls, {**env, **bad})
    rows = table(cls).splitlines()[2:]
    if cls is AgentSettings:
        assert rows[0].startswith("| `AGENT_COUNTRY` | identity |  |")
        assert rows[2].startswith("| `NATS_URL` | process |")
    else:
        assert rows[0].startswith("| `NATS_URL` | process |")
        assert "| `DATABASE_URL` | database |  |" in rows[len(shared)]


def test_each_controller_variable_is_declared_by_one_group() -> None:
    """Pins the groups: no variable is read by two groups (each is checked in one place), and
    `of` and `replace` put each value in the group that declares it."""
    names = variables(ControllerSettings)
    assert len(names) == len(set(names))
    settings = ControllerSettings.of(database_url=GOOD["DATABASE_URL"], api_port=9000)
    assert (settings.database.database_url, settings.api.api_port) == (GOOD["DATABASE_URL"], 9000)
    changed = settings.replace(api_port=9001, check_raw_days=40)
    assert (changed.api.api_port, changed.retention.check_raw_days) == (9001, 40)
    assert changed.database is settings.database
    with pytest.raises(TypeError, match="no controller setting 'api_prot'"):
        settings.replace(api_prot=1)


def test_no_setting_is_declared_by_both_processes_outside_the_base() -> None:
    """A setting both processes read belongs in ProcessSettings, declared once."""
    names = [set(variables(cls)) for cls in (ControllerSettings, AgentSettings, ProcessSettings)]
    controller, agent, base = names
    assert controller & agent == base


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"NOTIFY_SMTP_URL": "http://relay"}, "NOTIFY_SMTP_URL must start with one of"),
        ({"API_PORT": "eighty"}, "setting API_PORT is invalid"),
        ({"CHECK_RAW_DAYS": "91"}, "CHECK_RAW_DAYS must be at most CHECK_HISTORY_DAYS"),
        ({"OAUTH2_TOKEN_FETCHES": "20"}, "OAUTH2_TOKEN_FETCHES must be below DB_POOL_MAX"),
    ],
)
def test_a_wrong_variable_stops_a_process_whatever_its_roles(
    bad: dict[str, str], message: str
) -> None:
    """Pins: every group is loaded and checked at start, so a replica whose roles never read
    a variable (an ingester and NOTIFY_SMTP_URL, a scheduler and API_PORT) still refuses a
    wrong one, naming it, as every replica did before the settings were grouped."""
    for roles in ("ingester", "scheduler", "alerter", "api"):
        with pytest.raises(SettingsError, match=message):
            load(ControllerSettings, {**GOOD, "CONTROLLER_ROLES": roles, **bad})
