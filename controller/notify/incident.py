"""`Incident`: one row of `incidents`, typed, as the alerter and the notice texts read it
(controller.alerting.incident_store decodes it)."""

from datetime import datetime
from uuid import UUID

import msgspec


class Incident(msgspec.Struct, kw_only=True, frozen=True):
    """An incident of a monitor: open while `ended_at` is None. `end_reason`: why it ended
    other than by recovering (lack of data, monitoring disabled); `recovery_held`: its recovery
    notice waits for notifications to be no longer held."""

    id: int
    public_id: UUID
    monitor_id: int
    started_at: datetime
    opened_at: datetime
    ended_at: datetime | None
    cause_kind: str
    cause: str
    countries: list[str]
    notified: bool
    reminders: int
    end_reason: str | None
    recovery_held: bool
    # The flow incident (the mail-flow problem people are told of) it joined
    # (controller.alerting.flows); the agents' messages of the round that opened it.
    flow_incident_id: int | None = None
    messages: list[str] = msgspec.field(default_factory=list)
