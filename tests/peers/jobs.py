"""Check jobs for tests, valid by default, aimed at loopback."""

from datetime import timedelta
from typing import Any

from shared.messages import (
    JOB_TYPES,
    CheckJob,
    ImapPopConfig,
    JobConfig,
    MonitorType,
    RoundTripConfig,
    SmtpConfig,
)
from shared.timefmt import iso_ms, utcnow


def make_job(
    monitor_type: MonitorType,
    port: int,
    config: JobConfig | None = None,
    *,
    hostname: str = "127.0.0.1",
    timeout: float = 2.0,
    expires_in: float = 60.0,
    **extra: Any,
) -> CheckJob:
    now = utcnow()
    if config is None:
        if monitor_type == "roundtrip":
            config = RoundTripConfig()
        else:
            config = (
                SmtpConfig() if monitor_type == "smtp" else ImapPopConfig(protocol=monitor_type)
            )
    fields: dict[str, Any] = {
        "job_id": f"job-{monitor_type}-{port}",
        "monitor_id": "0b7e8d3a-6f0e-4a43-9c55-2f1d8e0f6a01",
        "hostname": hostname,
        "port": port,
        "timeout_seconds": timeout,
        "country": "DE",
        "scheduled_at": iso_ms(now),
        "expires_at": iso_ms(now + timedelta(seconds=expires_in)),
        "config": config,
        **extra,
    }
    return JOB_TYPES[monitor_type](**fields)
