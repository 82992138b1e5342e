"""A stored config (JSON) as its kind's wire config Struct, secrets as stored: pure, the one
decoding every reader of a monitor goes through (`controller.monitors.store.decode`, a job's
config, a round trip as the API shows it)."""

from typing import Any, Final

import msgspec

from controller.monitors.kinds import KINDS
from controller.secrets.box import stored_hook
from shared.messages import ImapPopConfig, JobConfig
from shared.secret import enc_hook as secret_text

CONFIG_TYPES: Final[dict[str, type[JobConfig]]] = {t: k.config for k in KINDS for t in k.types}


# The API stores a config's keys as sent, a null `user`, `pass` or `password` included (no user,
# no password); the wire Structs spell that "" (the agent logs in only with both), so it is read
# as "". Read as a wrong shape, it made every read of a round trip a 500 and skipped every round
# of an SMTP or IMAP/POP monitor.
_BLANK_WHEN_NULL = frozenset({"user", "pass", "password"})


def _nulls_blank(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: "" if item is None and key in _BLANK_WHEN_NULL else _nulls_blank(item)
            for key, item in value.items()
        }
    return value


class MonitorConfigError(ValueError):
    """A stored config that does not fit its type's config Struct."""


def decode_config(monitor_type: str, stored: Any) -> JobConfig:
    """The stored config (JSON) as its type's config Struct; MonitorConfigError when it does
    not fit (an unknown type, a wrong shape)."""
    config_type = CONFIG_TYPES.get(monitor_type)
    if config_type is None:
        raise MonitorConfigError(f"unknown monitor type {monitor_type!r}")
    try:
        config: JobConfig = msgspec.convert(
            _nulls_blank(stored or {}), config_type, dec_hook=stored_hook
        )
    except msgspec.ValidationError as exc:
        raise MonitorConfigError(str(exc)) from None
    if isinstance(config, ImapPopConfig):
        config.protocol = "pop3" if monitor_type == "pop3" else "imap"
    return config


def as_stored(config: JobConfig) -> dict[str, Any]:
    """A typed config back as JSON, every key spelt out, each secret as its text (a sealed
    one as its ciphertext)."""
    stored: dict[str, Any] = msgspec.to_builtins(config, enc_hook=secret_text)
    return stored
