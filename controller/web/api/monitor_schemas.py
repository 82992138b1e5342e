"""Wire shapes of the monitor API's answers (seeds 000-003): monitors, latest results, pages.

The requests are the write model (`controller.monitors.write_model`); an answer is built from
the typed `Monitor` (`monitor_rules.present`), whose common fields (`MonitorCommon`) it shares.
"""

from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

from controller.monitors.heartbeats import HeartbeatRule
from controller.monitors.model import MonitorCommon
from controller.web.api.page import Page, published
from shared.secret import SECRET_MASK

MASK = SECRET_MASK  # what responses show for a stored secret, and requests send to keep it


class _MonitorOut(MonitorCommon, kw_only=True, frozen=True, omit_defaults=True):
    """A monitor as every kind shows it: `MonitorCommon`'s fields as stored, then these; a
    field at its default (UNSET, a common field's None, `secretEnv`'s None) is left out, so a
    body of the seeds' fields is answered with the seeds' keys."""

    secret_env: dict[str, str] | None = None  # monitors as code's variable names
    last_checked_at: str | None
    created_at: str
    updated_at: str
    config: dict[str, object]


class ReputationOut(msgspec.Struct, rename="camel"):
    ips: list[str]
    domains: list[str]


class SmtpMonitor(_MonitorOut, kw_only=True, frozen=True):
    """`reputation` only when the monitor lists outbound addresses or domains (the seeds'
    shape otherwise)."""

    smtp_config: dict[str, object]
    reputation: ReputationOut | UnsetType = UNSET


class ImapPopMonitor(_MonitorOut, kw_only=True, frozen=True):
    imap_pop_config: dict[str, object]


class RoundTripMonitor(_MonitorOut, kw_only=True, frozen=True):
    """`hostname`/`port` are the send leg's (also in `roundtripConfig.send`)."""

    roundtrip_config: dict[str, object]


class LatestResult(msgspec.Struct, rename="camel", kw_only=True):
    """A country's latest round: `status` is `up`, `down`, `missed` (error kind `no_agent`:
    no live agent in the country; `expired`: no agent ran it in time; `no_seal_key`: no sealing
    key for the country, so its credentials were not sent) or `inconclusive` (the agent's own
    path failed its self-check: neither up nor down). `checkedAt` is when the check ended, null
    for a round that did not run."""

    country: str
    status: str
    error_kind: str | None
    message: str
    response_time_ms: float | None
    scheduled_at: str
    checked_at: str | None
    job_id: str


class SmtpMonitorDetail(SmtpMonitor, kw_only=True, frozen=True):
    """GET one: the monitor and its latest result per country, ordered by country."""

    latest_results: list[LatestResult]


class ImapPopMonitorDetail(ImapPopMonitor, kw_only=True, frozen=True):
    """GET one: the monitor and its latest result per country, ordered by country."""

    latest_results: list[LatestResult]


SmtpMonitorPage = Annotated[Page[SmtpMonitor], published("SmtpMonitorPage")]


ImapPopMonitorPage = Annotated[Page[ImapPopMonitor], published("ImapPopMonitorPage")]


class RoundTripMonitorDetail(RoundTripMonitor, kw_only=True, frozen=True):
    """GET one: the monitor and its latest result per country, ordered by country."""

    latest_results: list[LatestResult]


RoundTripMonitorPage = Annotated[Page[RoundTripMonitor], published("RoundTripMonitorPage")]


class HeartbeatMonitor(msgspec.Struct, kw_only=True, rename="camel"):
    """`address`: where the mail must go (None while RECEIVER_DOMAIN is not set: `note` says
    so, `localPart` is its local part)."""

    public_id: str
    customer_id: int
    name: str
    status: str
    address: str | None
    local_part: str
    heartbeat_config: HeartbeatRule
    created_at: str
    updated_at: str
    note: str | None = None
