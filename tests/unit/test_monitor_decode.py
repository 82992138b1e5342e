"""`controller.monitors.store.decode`: a row as the typed Monitor, safe to log."""

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from controller.monitors.store import decode
from controller.secrets.box import SecretBox, generate_key
from shared.messages import ImapPopConfig, SmtpAuth, SmtpConfig
from shared.secret import Secret


def row(monitor_type: str, config: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": 1,
        "public_id": uuid4(),
        "organization_id": 1,
        "customer_id": 1,
        "type": monitor_type,
        "name": "probe",
        "hostname": "mx.example.com",
        "port": None,
        "status": "active",
        "check_interval": 60,
        "timeout_seconds": 30,
        "allowed_country_codes": None,
        "config": config,
        "notification_email": None,
        "notification_phone_number": None,
        "mail_domain": None,
        "reputation": None,
        "secret_env": None,
        "depends_on": None,
        "dkim_selectors": None,
        "next_due_at": None,
        "created_at": now,
        "updated_at": now,
        "last_checked_at": None,
    }


@pytest.mark.parametrize(
    ("monitor_type", "config", "typed"),
    [
        ("smtp", {}, SmtpConfig()),
        ("smtp", {"secure": False}, SmtpConfig()),
        ("smtp", {"auth": {"user": None, "pass": None}}, SmtpConfig(auth=SmtpAuth("", Secret("")))),
        ("imap", {"user": None, "password": None}, ImapPopConfig()),
        ("pop3", {"tls": True}, ImapPopConfig(protocol="pop3", tls=True)),
    ],
)
def test_config_is_typed_and_kept_as_sent(
    monitor_type: str, config: dict[str, Any], typed: object
) -> None:
    """The typed config spells defaults out (a null user or password is none, ""); the keys
    as sent are kept apart, for the responses that show them so."""
    monitor = decode(row(monitor_type, config))  # type: ignore[arg-type]
    assert monitor.config == typed
    assert monitor.config_as_sent == config


def test_repr_shows_no_secret_sealed_or_not() -> None:
    box = SecretBox(generate_key())
    sealed = box.seal("hunter2-secret")
    monitor = decode(row("smtp", {"auth": {"user": "u", "pass": sealed}}))  # type: ignore[arg-type]
    shown = repr(monitor)
    assert sealed not in shown and "hunter2" not in shown
    assert "hostname='mx.example.com'" in shown and "SmtpAuth(user='u'" in shown
