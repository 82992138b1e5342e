"""Check jobs for tests, valid by default, aimed at loopback.

A job's timeout is the product's default (`timeoutSeconds`, 10 s) unless a test passes its own:
a test about what a check finds must not turn into a test of how fast a loaded machine runs it, so
only a test about timing out gives a short one."""

from datetime import timedelta
from typing import Any

from shared.messages import (
    JOB_TYPES,
    CheckJob,
    CheckResult,
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
    timeout: float | None = None,
    expires_in: float = 60.0,
    **extra: Any,
) -> CheckJob:
    now = utcnow()
    if config is None:
        if monitor_type == "roundtrip":
            config = RoundTripConfig()
        elif monitor_type == "smtp":
            config = SmtpConfig()
        elif monitor_type in ("imap", "pop3"):
            config = ImapPopConfig(protocol=monitor_type)
        else:
            raise ValueError(f"no job is made for a {monitor_type} monitor")
    fields: dict[str, Any] = {
        "job_id": f"job-{monitor_type}-{port}",
        "monitor_id": "0b7e8d3a-6f0e-4a43-9c55-2f1d8e0f6a01",
        "hostname": hostname,
        "port": port,
        "country": "DE",
        "scheduled_at": iso_ms(now),
        "expires_at": iso_ms(now + timedelta(seconds=expires_in)),
        "config": config,
        **extra,
    }
    if timeout is not None:
        fields["timeout_seconds"] = timeout
    return JOB_TYPES[monitor_type](**fields)


def up_result(job: CheckJob, monitor_type: MonitorType = "smtp", **fields: Any) -> CheckResult:
    """An `up` result of `job` from agent `CC-1` of its country, started and finished at its
    scheduled time; `fields` add to it or replace what it says."""
    values: dict[str, Any] = {
        "job_id": job.job_id,
        "monitor_id": job.monitor_id,
        "monitor_type": monitor_type,
        "country": job.country,
        "agent_id": f"{job.country}-1",
        "status": "up",
        "scheduled_at": job.scheduled_at,
        "started_at": job.scheduled_at,
        "finished_at": job.scheduled_at,
        **fields,
    }
    return CheckResult(**values)
