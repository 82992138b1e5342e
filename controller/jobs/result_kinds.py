"""Error kinds of results the controller records itself that are no verdict on the server, and
the row it writes for them (`ResultRow`). Pure: the ingester's store writes them.
"""

from datetime import datetime
from uuid import UUID

import msgspec

# `auth_backoff`: the monitor's credentials were rejected and its logins wait; `login_capped`:
# the account had LOGIN_CAP_PER_ACCOUNT logins in the window (controller.logins.backoff, the
# scheduler): this country's check did not run, on purpose. So with a round trip's message
# that its mailbox or recipient domain may not get now (controller.roundtrips.rules).
HELD_KINDS = frozenset(
    {"auth_backoff", "login_capped", "mailbox_unconfirmed", "delivery_backoff", "domain_capped"}
)

# Error kinds of a round nobody ran in time: stored with status `missed`, neither up nor down.
# `no_seal_key`: the job carries credentials and its country has no public sealing key.
# `overdue`: the round was over before the scheduler could send it (the controller, NATS or
# PostgreSQL was away), so no job went out; its own kind, as no agent is at fault.
NO_SEAL_KEY = "no_seal_key"
OVERDUE = "overdue"
# `oauth2_token`: the login's OAuth2 token endpoint gave no token (controller.oauth2): the
# check was not sent, and the mail server is not at fault.
OAUTH2_TOKEN = "oauth2_token"
# `saturated`: the country's agents were full and the organization held its share of their
# slots or more (controller.scheduling.admission_rules): its own excess, not the server's fault.
SATURATED = "saturated"
# `preempted`: an agent cancelled the check, as the scheduler asked, because the organization
# held more than its share of a saturated country's slots while another organization's round
# waited (controller.scheduling.preemption): its own excess, reported by the agent as `down`.
PREEMPTED = "preempted"
MISSED_KINDS = (
    frozenset({"no_agent", "expired", NO_SEAL_KEY, OVERDUE, OAUTH2_TOKEN, SATURATED, PREEMPTED})
    | HELD_KINDS
)
# An agent's check whose failure its own path explains (a canary of the port, or the resolver
# check, failed too): status and error kind `inconclusive`. Neither up nor down, like missed.
INCONCLUSIVE = "inconclusive"
# Statuses that say nothing about the server: they move neither counter, nor `lastCheckedAt`.
UNCOUNTED = frozenset({"missed", INCONCLUSIVE})


def scheduled_since(at: str) -> str:
    """The condition a reader of `check_results` adds for results scheduled at or after `at`
    (an SQL timestamptz expression), beside its own on `scheduled_at`: the UTC hour (`hour`,
    so that only those hours' packs are read) and the day of the full row a result's details
    come from (`detail_at`, always the result's own UTC day, so that only those days of
    `result_details` are planned and opened: migration 0043)."""
    return (
        f"hour >= date_trunc('hour', {at}, 'UTC') AND detail_at >= date_trunc('day', {at}, 'UTC')"
    )


class ResultRow(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """A result the controller writes itself (a `no_agent` round). It encodes with the wire
    names of `CheckResult`, so `store` takes it and `CheckedResult` alike; what it leaves out
    is stored as NULL."""

    job_id: str
    scheduled_at: datetime
    monitor_id: UUID
    monitor_type: str
    country: str
    agent_id: str | None
    status: str
    error_kind: str | None
    message: str
    finished_at: datetime | None = None

    @classmethod
    def missed(
        cls,
        monitor_id: UUID,
        monitor_type: str,
        country: str,
        job_id: str,
        scheduled_at: datetime,
        kind: str,
        why: str,
    ) -> "ResultRow":
        """A round of the monitor (its public id and type) that did not run in `country`
        (`kind`: one of MISSED_KINDS)."""
        return cls(
            job_id=job_id,
            scheduled_at=scheduled_at,
            monitor_id=monitor_id,
            monitor_type=monitor_type,
            country=country,
            agent_id=None,
            status="missed",
            error_kind=kind,
            message=why,
        )
