"""A stored secret is bound to where it is sent: which changes need the secret sent again.

Responses mask a monitor's password, yet anyone who may change the monitor could otherwise move
it to a server of their own, or loosen its TLS, or pair the password with another user name,
send the mask back ("keep the stored secret") and have the next check hand the password over.
So a change of anything deciding where, how or as whom the secret travels is allowed only when
the same request carries the secret again (a fresh value, not the mask).

Pure: two views of a monitor in, the names of the fields that moved its kept secret out.
Values are compared as the agent would use them (defaults applied), so restating a stored
value, or spelling out a default, is no change.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from shared.messages import ImapPopConfig, MonitorType, SmtpConfig, default_port

# Where a secret sits in each type's stored config.
SECRET_PATH = {"smtp": "auth.pass", "imap": "password", "pop3": "password"}

# The config keys a secret is bound to, with the value the agent uses when a key is absent.
_SMTP_BINDING: dict[str, object] = {
    "secure": False,
    "ignoreTls": False,
    "requireTls": False,
    "tlsOptions.rejectUnauthorized": True,
    "allowPlaintextAuth": False,
    "auth.user": "",
}
_IMAP_POP_BINDING: dict[str, object] = {
    "tls": False,
    "tlsOptions.rejectUnauthorized": True,
    "allowPlaintextAuth": False,
    "user": "",
}


@dataclass(frozen=True)
class Target:
    """A monitor as its secret sees it: type, address and config (secrets sealed)."""

    type: MonitorType
    hostname: str
    port: int | None
    config: Mapping[str, Any]

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> "Target":
        """From a monitor row, or anything with its `type`, `hostname`, `port`, `config`."""
        monitor_type = cast(MonitorType, values["type"])
        return cls(monitor_type, values["hostname"], values["port"], values["config"] or {})


def _at(config: Mapping[str, Any], path: str) -> object:
    value: object = config
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def secret(target: Target) -> str | None:
    """The target's stored secret (sealed), or None when it has none."""
    value = _at(target.config, SECRET_PATH[target.type])
    return value if isinstance(value, str) and value else None


def _binding(target: Target) -> dict[str, object]:
    """What the secret is bound to, as the agent will use it."""
    defaults = _SMTP_BINDING if target.type == "smtp" else _IMAP_POP_BINDING
    out: dict[str, object] = {
        "type": target.type,
        "hostname": target.hostname,
        "port": _port(target),
    }
    for path, default in defaults.items():
        value = _at(target.config, path)
        out[path] = default if value is None else value
    # Every TLS option binds the secret, also ones added after this rule was written (a CA, a
    # server name): they all decide whom the agent accepts as the server.
    options = _at(target.config, "tlsOptions")
    if isinstance(options, Mapping):
        for key, value in options.items():
            out.setdefault(f"tlsOptions.{key}", value)
    return out


def _port(target: Target) -> int:
    """The port the agent connects to: a `null` port is the type's default for its TLS."""
    if target.port is not None:
        return target.port
    config: SmtpConfig | ImapPopConfig = (
        SmtpConfig(secure=_at(target.config, "secure") is True)
        if target.type == "smtp"
        else ImapPopConfig(tls=_at(target.config, "tls") is True)
    )
    return default_port(target.type, config)


def moved(before: Target, after: Target) -> list[str]:
    """The fields that changed where `before`'s secret goes while `after` keeps it; [] when the
    change is allowed (nothing it is bound to changed, no secret was stored, or the request
    sent a secret: a new one seals to a new value, the mask keeps the stored one)."""
    kept = secret(before)
    if kept is None or secret(after) != kept:
        return []
    old, new = _binding(before), _binding(after)
    return [name for name in {**old, **new} if new.get(name) != old.get(name)]
