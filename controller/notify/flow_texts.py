"""What a flow incident's notice says (controller.alerting.flows): one mail-flow problem, every
monitor and country it touches, and each monitor's cause. Built, like a monitor's notice
(controller.notify.texts), from names, hosts, ports and causes only: never a secret."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from controller.notify import channel_kinds
from controller.notify.causes import label
from controller.notify.channel_kinds import FlowFacts, FlowMonitor
from controller.notify.links import Links
from controller.notify.texts import Texts, duration, one_line, target, with_facts
from shared.timefmt import iso_ms, iso_ms_or_none

if TYPE_CHECKING:  # the type only: texts read no store
    from controller.monitors.store import Monitor


@dataclass(frozen=True, slots=True)
class Part:
    """One monitor's outage in the flow incident."""

    monitor: "Monitor"
    started_at: datetime
    ended_at: datetime | None
    cause_kind: str
    cause: str
    countries: Sequence[str]


EVIDENCE_SHOWN = 10


def evidence_facts(evidence: Sequence[str]) -> list[tuple[str, str]]:
    """The findings attached to an incident, as a notice's facts (the first EVIDENCE_SHOWN)."""
    facts = [("Evidence", one_line(e)) for e in evidence[:EVIDENCE_SHOWN]]
    if len(evidence) > EVIDENCE_SHOWN:
        facts.append(("Evidence", f"and {len(evidence) - EVIDENCE_SHOWN} more"))
    return facts


_HEADLINE = {
    "down": "DOWN",
    "changed": "Changed",
    "reminder": "Still down",
    "recovered": "Recovered",
    "no_data": "Closed, no data",
}


def render_flow(
    kind: str,
    parts: Sequence[Part],
    started_at: datetime,
    ended_at: datetime | None,
    now: datetime,
    links: Links,
    changes: Sequence[str] = (),
    evidence: Sequence[str] = (),
    flow_id: UUID | None = None,
) -> Texts:
    """The flow incident's notice of `kind` (down, changed, reminder, recovered, no_data);
    `changes`: what a `changed` notice tells (flows.material); `evidence`: the findings
    attached to it meanwhile (controller.notify.evidence_store); `flow_id`: its public id,
    which its console link names."""
    first = parts[0].monitor
    lasted = duration(((ended_at or now) - started_at).total_seconds())
    countries = sorted({c for p in parts for c in p.countries})
    where = ", ".join(countries) or "-"
    down = [p for p in parts if p.ended_at is None]
    name = f"{one_line(first.name)} and {len(parts) - 1} more"
    if kind == "recovered":
        subject = f"[mailprobe] Recovered: {name} after {lasted}"
        lead = f"Mail flows again: {len(parts)} monitors are up again after {lasted}."
    elif kind == "no_data":
        subject = f"[mailprobe] Closed for lack of data: {name} (not recovered)"
        lead = (
            f"The outage of {len(parts)} monitors is closed because no check result could be"
            " had since, not because it recovered."
        )
    elif kind == "reminder":
        subject = f"[mailprobe] Still down: {name} for {lasted}"
        lead = f"{len(down)} of {len(parts)} monitors of one mail-flow problem are down."
    elif kind == "changed":
        subject = f"[mailprobe] DOWN, {', '.join(changes) or 'changed'}: {name}"
        lead = (
            f"One mail-flow problem now touches {len(parts)} monitors"
            f" ({len(down)} down) and {len(countries)} countries."
        )
    else:
        subject = f"[mailprobe] DOWN: {name}"
        lead = f"One mail-flow problem: {len(down)} monitors are down."
    facts = [("Seen from", where), ("Down since", iso_ms(started_at))]
    if ended_at is not None:
        facts.append(("Ended at", iso_ms(ended_at)))
    if changes:
        facts.append(("Changed", ", ".join(changes)))
    for p in parts:
        state = "down" if p.ended_at is None else f"up since {iso_ms(p.ended_at)}"
        facts.append(
            (
                f"{one_line(p.monitor.name)} ({target(p.monitor)})",
                f"{state}; {p.cause} [{', '.join(p.countries) or '-'}]",
            )
        )
    facts += evidence_facts(evidence)
    causes = sorted({label(p.cause_kind) for p in parts})
    sms = f"mailprobe {_HEADLINE.get(kind, kind)}: {name}: {', '.join(causes)} in {where}"
    url = links.monitor(first.public_id) if flow_id is None else links.incident(flow_id)
    if url is not None:
        facts.append(("Console", url))
    return with_facts(subject, lead, facts, sms)


def flow_facts(
    flow_id: UUID,
    parts: Sequence[Part],
    started_at: datetime,
    ended_at: datetime | None,
    changes: Sequence[str] = (),
    evidence: Sequence[str] = (),
) -> FlowFacts:
    """What a flow incident's notice tells its notification channels (the webhook's `flow`,
    every other kind's facts): every monitor with its state and cause, every country and
    cause, the changes and the evidence, each list bounded."""
    shown = parts[: channel_kinds.FLOW_MONITORS]
    return FlowFacts(
        id=str(flow_id),
        started_at=iso_ms(started_at),
        ended_at=iso_ms_or_none(ended_at),
        countries=sorted({c for p in parts for c in p.countries}),
        causes=sorted({one_line(p.cause) for p in parts}),
        monitor_count=len(parts),
        monitors=[
            FlowMonitor(
                id=str(p.monitor.public_id),
                name=one_line(p.monitor.name),
                type=p.monitor.type,
                hostname=p.monitor.hostname,
                port=p.monitor.port,
                state="down" if p.ended_at is None else "up",
                cause=one_line(p.cause),
                cause_kind=p.cause_kind,
                countries=sorted(p.countries),
            )
            for p in shown
        ],
        changes=list(changes),
        evidence_count=len(evidence),
        evidence=[one_line(e) for e in evidence[: channel_kinds.EVIDENCE]],
        down_count=sum(p.ended_at is None for p in parts),
    )
