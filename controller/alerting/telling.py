"""The alerter's notices: an outage's, told as its flow incident has it told
(controller.alerting.flows: as the monitor's own, as the flow incident's, later in the flow
incident's next notice, or not at all), the flow incidents' due notices (`Teller.send_due`), and
the login back-off's. Every one goes through the one notify entry (controller.notify.entry)."""

from collections.abc import Callable, Sequence
from datetime import datetime

import asyncpg
import msgspec
import structlog

from controller.alerting import flow_store as flow_db
from controller.alerting import flows
from controller.alerting import incident_store as incident_db
from controller.alerting.rules import IncidentClosed, Policy
from controller.db.pool import Conn
from controller.logins import backoff as login_backoff
from controller.monitors.store import Monitor
from controller.notify import entry as notify_entry
from controller.notify import evidence_store as evidence_db
from controller.notify import recipients
from controller.notify.entry import Source, notify
from controller.notify.flow_texts import Part, evidence_facts, flow_facts, render_flow
from controller.notify.incident import Incident
from controller.notify.links import Links
from controller.notify.texts import Kind, render, render_backoff
from controller.scheduling import confirm_store as confirmations
from shared.guards import BrokenInvariant
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

BATCH = 400  # flow incidents' due notices sent a pass at most


async def _evidence(conn: Conn, flow_id: int) -> list[str]:
    """The findings attached to the flow incident, as its notices list them."""
    return [f"{e.summary} ({e.source})" for e in await evidence_db.of_flows(conn, [flow_id])]


def outage(monitor: Monitor, incident: Incident) -> flows.Outage:
    """The monitor's outage `incident`, as the flow rules see it."""
    return flows.Outage(
        flows.Dependent.of(monitor),
        incident.started_at,
        incident.cause_kind,
        frozenset(incident.countries),
        tuple(incident.messages),
    )


class Teller:
    """Queues the alerter's notices: where they link (`links`, PUBLIC_URL), when reminders are
    due and how long a back-off lasts at most (`policy`), how long a flow incident's notices
    wait (`timing`); `batch`: the flow incidents' notices sent a pass at most."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        links: Links,
        *,
        policy: Policy,
        timing: flows.Timing,
        batch: int = BATCH,
        clock: Callable[[], datetime],
    ) -> None:
        self._pool = pool
        self._links = links
        self._policy = policy
        self._timing = timing
        self._batch = batch
        self._clock = clock

    async def outage(
        self, conn: Conn, monitor: Monitor, incident: Incident, kind: Kind, now: datetime
    ) -> None:
        """The notice of `kind` about the monitor's outage `incident`, as its flow incident has
        it told (`flows.tell`): as the monitor's own, as the flow incident's, in the flow
        incident's next notice (`send_due`), or not at all."""
        flow = None
        if incident.flow_incident_id is not None:
            flow = await flow_db.state(conn, incident.flow_incident_id)
        if flow is None:
            await self.monitor(conn, monitor, incident, kind, now)
            return
        if kind == "down" and flow.notified and monitor.id in flow.held:
            # Its recipients were skipped for maintenance: they hear of the flow incident now.
            await incident_db.set_incident_notified(conn, incident.id, incident.reminders)
            await self.flow(conn, flow, "down", (), now, only=monitor.id)
            await flow_db.told_late(conn, flow.id, monitor.id)
            return
        changes = flows.material(
            outage(monitor, incident), flow.monitors, flow.countries, flow.cause_kinds
        )
        reminder = self._policy.reminder
        last = flow.last_notified_at
        told = flows.tell(
            kind,
            members=flow.members,
            flow_notified=flow.notified,
            changes=changes,
            still_open=flow.open,
            reminder_due=last is None or (reminder is not None and now - last >= reminder),
        )
        if kind in ("down", "reminder"):  # owed to the flow incident from now on
            reminders = incident.reminders + (kind == "reminder")
            await incident_db.set_incident_notified(conn, incident.id, reminders)
        if told.say == "as_monitor":
            await self.monitor(conn, monitor, incident, kind, now, mark=False)
            if kind == "reminder":
                await flow_db.told(conn, flow.id, kind, now)
        elif told.say == "flow":
            await self.flow(conn, flow, told.kind, (), now)
            if kind == "reminder":
                await flow_db.told(conn, flow.id, kind, now)
        elif told.say == "later":
            due = flows.due(
                now,
                self._timing,
                notified=flow.notified,
                last_notified_at=flow.last_notified_at,
                due_at=flow.due_at,
            )
            await flow_db.want(conn, flow.id, due, changes)
            if due <= now:
                await self.send_flow(conn, flow.id, now)

    async def flow_closed(
        self, conn: Conn, incident_org: int, incident: Incident, e: IncidentClosed, now: datetime
    ) -> None:
        """The flow incident of the outage `incident` ends with its last open outage; told
        then when it spoke for several (a held or disabled outage's end tells nobody now)."""
        if incident.flow_incident_id is None:
            return
        await flow_db.lock(conn, incident_org)
        flow = await flow_db.state(conn, incident.flow_incident_id)
        if flow is None or flow.open or flow.ended_at is not None:
            return
        await flow_db.end(conn, flow.id, e.ended_at)
        if e.why == "disabled" or e.hold_recovery:
            return
        told = flows.tell(e.why, members=flow.members, flow_notified=flow.notified)
        if told.say == "flow":
            ended = msgspec.structs.replace(flow, ended_at=e.ended_at)
            await self.flow(conn, ended, e.why, (), now)

    async def send_due(self) -> int:
        """Send the flow incidents' notices that are due (`flows.due`), each in a transaction
        of its own under its organization's lock; return how many."""
        now = self._clock()
        async with self._pool.acquire() as conn:
            found = await flow_db.due(conn, now, self._batch)
            sent = 0
            for flow_id, organization_id in found:
                try:
                    async with conn.transaction():
                        await flow_db.lock(conn, organization_id)
                        sent += await self.send_flow(conn, flow_id, now)
                except Exception:
                    log.error("flow incident notice failed; retried", flow=flow_id, exc_info=True)
            sent += await self._send_settled(conn, now)
        return sent

    async def _send_settled(self, conn: Conn, now: datetime) -> int:
        """Send the first notices that wait for their group wait while nothing is left to wait
        for (`flows.first_now`: their monitors' siblings are judged); return how many."""
        sent = 0
        for flow_id, organization_id, monitors in await flow_db.first_waiting(
            conn, now, self._batch
        ):
            try:
                unsettled = await confirmations.unsettled(
                    conn, monitors, now, addresses_since=now - flow_db.ADDRESSES_SINCE
                )
                if not monitors or unsettled:
                    continue
                async with conn.transaction():
                    await flow_db.lock(conn, organization_id)
                    sent += await self.send_flow(conn, flow_id, now, settled=True)
            except Exception:
                log.error("flow incident notice failed; retried", flow=flow_id, exc_info=True)
        return sent

    async def send_flow(
        self, conn: Conn, flow_id: int, now: datetime, *, settled: bool = False
    ) -> int:
        """The flow incident's due notice (`flows.when_due`), under its organization's lock;
        1 when one went out. `settled`: its monitors' siblings are judged, so a first
        notice goes before its group wait is over (`flows.first_now`)."""
        flow = await flow_db.state(conn, flow_id)
        if flow is None or flow.ended_at is not None or flow.due_at is None:
            return 0
        if flow.due_at > now and not flows.first_now(
            notified=flow.notified, due_at=flow.due_at, now=now, unsettled=0 if settled else 1
        ):
            return 0
        found = await flow_db.members(conn, flow.id)
        if not found:  # its monitors are gone: nobody left to tell
            await flow_db.end(conn, flow.id, now)
            return 0
        if not flow.notified and await self._all_in_maintenance(conn, found, now):
            # Nobody may hear of it yet: it stays untold, and each open outage's `down` is
            # wanted again once its maintenance is over (the evaluator's `remind`), as an
            # outage that opened in maintenance is.
            await flow_db.hold(conn, flow.id)
            for m in found:
                if m.ended_at is None:
                    await incident_db.set_incident_unnotified(conn, m.incident_id)
            return 0
        told = flows.when_due(members=flow.members, notified=flow.notified)
        if told.say == "as_monitor":
            member = found[0]
            incident = await incident_db.incident(conn, member.incident_id)
            if incident is None:
                raise BrokenInvariant("telling.Teller.send_flow: incident is unset")
            await self.monitor(conn, member.monitor, incident, "down", now, mark=False)
            kind = "down"
        else:
            changes = flow.pending if told.kind == "changed" else ()  # a first notice: all new
            held = await self.flow(conn, flow, told.kind, changes, now)
            kind = told.kind
            if held:  # told once their maintenance is over (`outage`)
                await flow_db.held_back(conn, flow.id, [m.monitor.id for m in held])
                for m in held:
                    await incident_db.set_incident_unnotified(conn, m.incident_id)
        await flow_db.told(conn, flow.id, kind, now)
        return 1

    @staticmethod
    async def _all_in_maintenance(
        conn: Conn, found: Sequence[flow_db.Member], now: datetime
    ) -> bool:
        for m in found:
            if not await notify_entry.in_maintenance(conn, m.monitor, now):
                return False
        return True

    async def flow(
        self,
        conn: Conn,
        flow: flow_db.FlowState,
        kind: str,
        changes: Sequence[str],
        now: datetime,
        *,
        only: int | None = None,
    ) -> list[flow_db.Member]:
        """Queue the flow incident's notice of `kind` to every recipient of its monitors, each
        once (the dedupe key is the flow incident's, made per address and channel), or of the
        monitor `only`. A monitor held back (`FlowState.held`: never told it began) hears of
        no later notice but its `down`. Return the members whose open outage's recipients a
        `down` or a change skipped for maintenance (the notify entry holds theirs)."""
        members = await flow_db.members(conn, flow.id)
        if not members:
            return []
        parts = [
            Part(m.monitor, m.started_at, m.ended_at, m.cause_kind, m.cause, m.countries)
            for m in members
        ]
        evidence = await _evidence(conn, flow.id)
        texts = render_flow(
            kind,
            parts,
            flow.started_at,
            flow.ended_at,
            now,
            self._links,
            changes,
            evidence,
            flow.public_id,
        )
        facts = flow_facts(flow.public_id, parts, flow.started_at, flow.ended_at, changes, evidence)
        tag = {
            "changed": f"changed-{flow.changes + 1}",
            "reminder": f"reminder-{flow.reminders + 1}",
            "recovered": "end",
            "no_data": "end",
        }.get(kind, kind)
        key = f"flow:{flow.id}:{tag}"
        outbox_kind = "down" if kind == "changed" else kind
        held: list[flow_db.Member] = []
        told: list[int] = []
        for m in members:
            if only is not None and m.monitor.id != only:
                continue
            if outbox_kind != "down" and m.monitor.id in flow.held:
                continue
            if (
                outbox_kind == "down"
                and m.ended_at is None
                and await notify_entry.in_maintenance(conn, m.monitor, now)
            ):
                held.append(m)
            else:
                told.append(m.incident_id)
            notes = recipients.to_recipients(
                outbox_kind, m.monitor, texts, key, by_target=True, flow=facts
            )
            org = m.monitor.organization_id
            notice = notify_entry.Notice(Source.OUTAGE, org, m.monitor, m.incident_id, notes)
            await notify(conn, notice, now)
        await flow_db.named(conn, key, told)
        log.info(
            "flow incident notice queued",
            flow_incident=str(flow.public_id),
            kind=kind,
            monitors=len(members),
            changes=list(changes),
            held=len(held),
        )
        return held

    async def monitor(
        self,
        conn: Conn,
        monitor: Monitor,
        incident: Incident,
        kind: Kind,
        now: datetime,
        *,
        mark: bool = True,
    ) -> None:
        """Queue one notification per recipient the monitor has, whatever channels this
        process can send: a replica that has the channel sends it. `mark`: record the
        incident as notified (its reminders counted)."""
        evidence: list[str] = []
        if incident.flow_incident_id is not None and kind != "down":
            evidence = await _evidence(conn, incident.flow_incident_id)
        texts = render(kind, monitor, incident, now, self._links, evidence_facts(evidence))
        reminders = incident.reminders + (kind == "reminder")
        tag = f"{kind}-{reminders}" if kind == "reminder" else kind
        key = f"incident:{incident.id}:{tag}"
        notes = recipients.to_recipients(kind, monitor, texts, key)
        await notify(
            conn,
            notify_entry.Notice(
                Source.OUTAGE, monitor.organization_id, monitor, incident.id, notes
            ),
            now,
        )
        if mark and kind not in ("recovered", "no_data"):
            await incident_db.set_incident_notified(conn, incident.id, reminders)
        log.info(
            "notification queued",
            monitor_id=str(monitor.public_id),
            kind=kind,
            channels=[n.channel for n in notes],
        )

    async def backoff(
        self, conn: Conn, monitor: Monitor, b: login_backoff.Backoff, countries: list[str]
    ) -> None:
        """The owner told that the monitor's logins are backed off."""
        texts = render_backoff(monitor, countries, b, self._policy.login_backoff_max, self._links)
        key = f"login-backoff:{monitor.id}:{iso_ms(b.since)}"
        notes = recipients.to_recipients("credentials", monitor, texts, key)
        await notify(
            conn,
            notify_entry.Notice(Source.ACCOUNT, monitor.organization_id, monitor, None, notes),
            self._clock(),
        )
        log.info(
            "notification queued",
            monitor_id=str(monitor.public_id),
            kind="credentials",
            channels=[n.channel for n in notes],
        )
