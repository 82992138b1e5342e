"""NATS subject and stream names (see docs/architecture.md, "Subjects and streams")."""

import re
from typing import Final

JOBS_STREAM: Final = "JOBS"
RESULTS_STREAM: Final = "RESULTS"
EVENTS_STREAM: Final = "EVENTS"
ARRIVALS_STREAM: Final = "ARRIVALS"

JOBS_SUBJECTS: Final = "mon.jobs.*"
RESULTS_SUBJECTS: Final = "mon.results.>"
EVENTS_SUBJECTS: Final = "mon.events.*"
ARRIVALS_SUBJECTS: Final = "mon.arrivals.*.*"
HEARTBEATS_SUBJECTS: Final = "mon.heartbeats.>"
CONTROL_SUBJECTS: Final = "mon.control.>"

_COUNTRY = re.compile(r"[A-Z]{2}")
# One subject token: no dots, wildcards or whitespace, so a value can never widen a subject.
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def _country(cc: str) -> str:
    if not _COUNTRY.fullmatch(cc):
        raise ValueError(f"country must be an upper-case ISO 3166-1 alpha-2 code, got {cc!r}")
    return cc


def _token(name: str, value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{name} is not a valid subject token: {value!r}")
    return value


def jobs_subject(cc: str) -> str:
    return f"mon.jobs.{_country(cc)}"


def results_subject(cc: str, monitor_type: str, monitor_id: str) -> str:
    return (
        f"mon.results.{_country(cc)}.{_token('monitor_type', monitor_type)}"
        f".{_token('monitor_id', monitor_id)}"
    )


# The third token of a results subject for a bundle of results (never a monitor type).
RESULTS_BUNDLE_TOKEN: Final = "bundle"


def results_bundle_subject(cc: str) -> str:
    """Where an agent of `cc` publishes several results as one message (a JSON array)."""
    return f"mon.results.{_country(cc)}.{RESULTS_BUNDLE_TOKEN}"


def results_bundle_country(subject: str) -> str | None:
    """The country of a results bundle's subject; None for any other subject."""
    parts = subject.split(".")
    if len(parts) == 4 and parts[:2] == ["mon", "results"] and parts[3] == RESULTS_BUNDLE_TOKEN:
        return parts[2] if _COUNTRY.fullmatch(parts[2]) else None
    return None


def results_country_filter(cc: str) -> str:
    """Every result from one country (for a country-scoped reader)."""
    return f"mon.results.{_country(cc)}.>"


def arrivals_subject(cc: str, monitor_id: str) -> str:
    """Where an agent of `cc` publishes a message its receiver took for `monitor_id`."""
    return f"mon.arrivals.{_country(cc)}.{_token('monitor_id', monitor_id)}"


def arrivals_country_filter(cc: str) -> str:
    """Every arrival of one country's receivers."""
    return f"mon.arrivals.{_country(cc)}.*"


def events_subject(monitor_id: str) -> str:
    return f"mon.events.{_token('monitor_id', monitor_id)}"


def agent_inbox_prefix(cc: str) -> str:
    """The `inbox_prefix` agents of `cc` connect with: their NATS user may subscribe only there
    (deploy/nats_conf.py grants `_INBOX_agent_CC.>`), so replies to them stay theirs."""
    return f"_INBOX_agent_{_country(cc)}"


def heartbeats_subject(cc: str, agent_id: str) -> str:
    """Where an agent of `cc` publishes its heartbeat (core NATS, read by the controller)."""
    return f"mon.heartbeats.{_country(cc)}.{_token('agent_id', agent_id)}"


def heartbeats_country_filter(cc: str) -> str:
    """Every heartbeat of one country's agents."""
    return f"mon.heartbeats.{_country(cc)}.>"


def control_subject(cc: str, agent_id: str) -> str:
    """Where the controller asks agent `agent_id` of `cc` to do something (core NATS: a
    `Preempt`); the agent subscribes to its own."""
    return f"mon.control.{_country(cc)}.{_token('agent_id', agent_id)}"


def control_country_filter(cc: str) -> str:
    """Every control message to one country's agents."""
    return f"mon.control.{_country(cc)}.>"
