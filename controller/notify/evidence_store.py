"""Evidence of an open mail-flow problem (`flow_incident_evidence`): a finding about a monitor
(posture, a listing, a report finding) while a flow incident touching it is open, on its own
outage or one of its customer's on the same host or mail domain, is attached to that flow
incident instead of being sent on its own (controller.notify.entry); outside an incident it
stays a finding. The caller owns the transaction."""

from collections.abc import Sequence
from datetime import datetime

import msgspec

from controller.db.pool import Conn
from controller.monitors.store import Monitor
from controller.notify.recipients import Outgoing
from controller.notify.sources import Source

# Findings that join an open incident as evidence instead of paging.
EVIDENCE_SOURCES = frozenset({Source.FINDING, Source.REPORT})
# Rows one flow incident keeps of each source, apart: reports are written by strangers, and
# their evidence never takes the room of the monitor's own findings.
EVIDENCE_MAX = 100


async def attach(conn: Conn, monitor: Monitor, source: Source, notes: Sequence[Outgoing]) -> bool:
    """Attach the finding `notes` tell as evidence to the oldest open flow incident with an
    open outage of `monitor`, or of a monitor of its customer on its host or of its mail
    domain (once: the same notice attached again is the row kept already); False when there
    is none, or when that incident keeps `EVIDENCE_MAX` rows of `source` already (the finding
    is sent as it is: its notice never depends on room)."""
    if source not in EVIDENCE_SOURCES or not notes:
        return False
    flow_id: int | None = await conn.fetchval(
        "SELECT f.id FROM flow_incidents f"
        " JOIN incidents i ON i.flow_incident_id = f.id AND i.ended_at IS NULL"
        " JOIN monitors m ON m.id = i.monitor_id"
        " WHERE f.organization_id = $1 AND f.ended_at IS NULL AND m.customer_id = $5"
        " AND (m.id = $2 OR lower(m.hostname) = lower($3)"
        "      OR (m.mail_domain IS NOT NULL AND m.mail_domain = $4))"
        " ORDER BY f.started_at, f.id LIMIT 1",
        monitor.organization_id,
        monitor.id,
        monitor.hostname,
        monitor.mail_domain,
        monitor.customer_id,
    )
    if flow_id is None:
        return False
    first = notes[0]
    # One fact is one row: the same notice attached again (another way it goes, another
    # monitor showing the same domain's fact) is the evidence already kept.
    kept: bool = await conn.fetchval(
        "WITH same AS (SELECT 1 FROM flow_incident_evidence WHERE flow_incident_id = $1"
        "  AND source = $3 AND kind = $4 AND summary = $5 LIMIT 1),"
        " added AS (INSERT INTO flow_incident_evidence (flow_incident_id, monitor_id, source,"
        "  kind, summary) SELECT $1, $2, $3, $4, $5"
        "  WHERE NOT EXISTS (SELECT 1 FROM same) AND (SELECT count(*) FROM flow_incident_evidence"
        "   WHERE flow_incident_id = $1 AND source = $3) < $6"
        "  RETURNING id)"
        " SELECT EXISTS (SELECT 1 FROM same) OR EXISTS (SELECT 1 FROM added)",
        flow_id,
        monitor.id,
        str(source),
        first.kind,
        (first.subject or first.text)[:300],
        EVIDENCE_MAX,
    )
    return kept


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    flow_incident_id: int
    monitor_id: int | None
    source: str
    kind: str
    summary: str
    at: datetime


async def of_flows(conn: Conn, flow_ids: Sequence[int]) -> list[Evidence]:
    """The evidence of the flow incidents, oldest first."""
    rows = await conn.fetch(
        "SELECT flow_incident_id, monitor_id, source, kind, summary, at"
        " FROM flow_incident_evidence WHERE flow_incident_id = ANY($1::bigint[])"
        " ORDER BY at, id",
        list(flow_ids),
    )
    return [Evidence(**dict(r)) for r in rows]
