"""A monitor's stored config as a job carries it: its secrets opened, as its kind's typed
config. Pure: no I/O."""

from typing import Any

from controller.monitors import store as monitors
from controller.secrets.box import PREFIX, SecretBox, SecretBoxError
from shared.messages import JobConfig, MonitorType


class JobConfigError(Exception):
    """A monitor's stored config cannot become a job (a secret does not decrypt, bad shape)."""


def _open_secrets(value: Any, box: SecretBox) -> Any:
    if isinstance(value, dict):
        return {k: _open_secrets(v, box) for k, v in value.items()}
    if isinstance(value, str) and value.startswith(PREFIX):
        return box.open(value)
    return value


def job_config(monitor_type: MonitorType, stored: Any, box: SecretBox) -> JobConfig:
    """The stored config with its secrets decrypted, as the job's typed config."""
    try:
        return monitors.decode_config(monitor_type, _open_secrets(stored or {}, box))
    except (SecretBoxError, monitors.MonitorConfigError) as exc:
        raise JobConfigError(str(exc)) from None
