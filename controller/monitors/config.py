"""A stored config (JSON) as its kind's wire config Struct, secrets as stored: pure, the one
decoding every reader of a monitor goes through (`controller.monitors.store.decode`, a job's
config, a round trip as the API shows it)."""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec

from controller.monitors import oauth2_grants
from controller.monitors.kinds import STORED_KINDS, of_type
from controller.monitors.oauth2_grants import Grant
from controller.secrets.box import stored_hook
from shared.messages import ImapPopConfig, JobConfig
from shared.secret import enc_hook as secret_text

if TYPE_CHECKING:  # the type only
    from controller.monitors.store import Monitor

CONFIG_TYPES: Final[dict[str, type[JobConfig]]] = {
    t: k.config for k in STORED_KINDS for t in k.types
}


# The API stores a config's keys as sent, a null `user`, `pass` or `password` included (no user,
# no password); the wire Structs spell that "" (the agent logs in only with both), so it is read
# as "". Read as a wrong shape, it made every read of a round trip a 500 and skipped every round
# of an SMTP or IMAP/POP monitor.
_BLANK_WHEN_NULL = frozenset({"user", "pass", "password"})


def _nulls_blank(value: object) -> object:
    if isinstance(value, dict):
        return {
            key: "" if item is None and key in _BLANK_WHEN_NULL else _nulls_blank(item)
            for key, item in value.items()
        }
    return value


class MonitorConfigError(ValueError):
    """A stored config that does not fit its type's config Struct."""


def decode_config(monitor_type: str, stored: object) -> JobConfig:
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


def same(monitor_type: str, a: object, b: object) -> bool:
    """Whether two stored configs of `monitor_type` say the same to every reader: equal read as
    the kind's Struct (defaults applied, a null login as ""; secrets as their sealed text), with
    the same OAuth2 grants. A config that does not fit its kind is the same only as itself.
    A write whose config is the same as the stored one keeps the stored one
    (`controller.monitors.writes`): the export of a monitor spells no default, the API's own
    request may spell them all, and either applied again changes nothing."""
    if a == b:
        return True
    try:
        read_a, read_b = decode_config(monitor_type, a), decode_config(monitor_type, b)
    except MonitorConfigError:
        return False
    return read_a == read_b and grants_of(monitor_type, a or {}) == grants_of(monitor_type, b or {})


def as_stored(config: JobConfig) -> dict[str, Any]:
    """A typed config back as JSON, every key spelt out, each secret as its text (a sealed
    one as its ciphertext)."""
    stored: dict[str, Any] = msgspec.to_builtins(config, enc_hook=secret_text)
    return stored


def _at(config: object, path: str) -> object:
    value: object = config
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def grants_of(monitor_type: str, stored: object) -> dict[str, Grant]:
    """The OAuth2 grants a stored config holds, by path; one that does not fit is none."""
    out: dict[str, Grant] = {}
    try:
        logins = of_type(monitor_type).logins
    except KeyError:
        return out
    for login in logins:
        grant = oauth2_grants.stored(_at(stored, login.oauth2))
        if grant is not None:
            out[login.oauth2] = grant
    return out


def stored_config(monitor: "Monitor") -> dict[str, Any]:
    """The monitor's config as JSON, every key the API takes spelt out, secrets as stored
    (sealed), with its OAuth2 grants where its logins keep them."""
    stored = as_stored(monitor.config)
    of_type(monitor.type).drop_job_only(stored)
    for path, grant in monitor.grants.items():
        *legs, leaf = path.split(".")
        holder: object = stored
        for leg in legs:
            holder = holder.setdefault(leg, {}) if isinstance(holder, dict) else {}
        if isinstance(holder, dict):
            holder[leaf] = oauth2_grants.as_stored(grant)
    return stored
