"""Incidents (flow incidents) as the console shows them: their state in one word, their causes
in words, and what the incidents list and the overview's open incidents show of them."""

from typing import TypedDict

from controller.alerting import flow_store as flow_db
from controller.alerting.flow_store import ListedFlow
from controller.db.pool import Conn
from controller.notify import evidence_store as evidence_db
from controller.notify.causes import label

OPEN_SHOWN = 10  # open incidents the overview lists


def state(flow: ListedFlow) -> str:
    """The console's word for an incident's state (the API's `state`): `open` until its last
    monitor recovered, then `closed`."""
    return "open" if flow.ended_at is None else "closed"


def causes(flow: ListedFlow) -> list[str]:
    """Its causes in words, one per error kind its monitors failed with."""
    return sorted({label(k) for k in flow.cause_kinds})


async def listed(
    conn: Conn, scope: int | None, limit: int, offset: int = 0, *, open_only: bool = False
) -> tuple[list[ListedFlow], int, dict[int, int]]:
    """A page of incidents, their total and each one's count of evidence."""
    flows, total = await flow_db.list_flows(conn, scope, limit, offset, open_only=open_only)
    found = await evidence_db.of_flows(conn, [f.id for f in flows])
    evidence: dict[int, int] = {}
    for e in found:
        evidence[e.flow_incident_id] = evidence.get(e.flow_incident_id, 0) + 1
    return flows, total, evidence


class Shown(TypedDict):
    """What `_flows.html` reads: the incidents, and each one's word, causes and evidence count
    by its id."""

    flows: list[ListedFlow]
    flow_state: dict[int, str]
    flow_causes: dict[int, list[str]]
    flow_evidence: dict[int, int]


def shown(flows: list[ListedFlow], evidence: dict[int, int]) -> Shown:
    """What `_flows.html` shows of `flows`."""
    return {
        "flows": flows,
        "flow_state": {f.id: state(f) for f in flows},
        "flow_causes": {f.id: causes(f) for f in flows},
        "flow_evidence": evidence,
    }
