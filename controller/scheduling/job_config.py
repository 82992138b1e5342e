"""A monitor's config as a job carries it: its secrets opened (controller.secrets.box), as its
kind's typed config. Pure: no I/O."""

from typing import Any

from controller.monitors import config as monitor_config
from controller.secrets.box import SecretBox, SecretBoxError
from shared.messages import JobConfig, MonitorType


class JobConfigError(Exception):
    """A monitor's stored config cannot become a job (a secret does not decrypt, bad shape)."""


def opened(config: JobConfig, box: SecretBox) -> JobConfig:
    """A monitor's typed config (secrets sealed, as stored) with its secrets opened."""
    try:
        return box.opened(config)
    except SecretBoxError as exc:
        raise JobConfigError(str(exc)) from None


def job_config(monitor_type: MonitorType, stored: Any, box: SecretBox) -> JobConfig:
    """The stored config (JSON) with its secrets opened, as the job's typed config."""
    try:
        return opened(monitor_config.decode_config(monitor_type, stored), box)
    except monitor_config.MonitorConfigError as exc:
        raise JobConfigError(str(exc)) from None
