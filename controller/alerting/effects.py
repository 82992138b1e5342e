"""What `judge` (controller.alerting.rules) decided, written in the evaluator's transaction:
incidents opened and closed (an outage joining its flow incident), notices (through the teller,
controller.alerting.telling), state-change events for the event outbox, the login back-off,
confirmation rounds asked of the scheduler, round trips' delivery, and the monitor's posture."""

import dataclasses
from collections.abc import Sequence
from datetime import datetime

import msgspec
import structlog

from controller.alerting import flow_store as flow_db
from controller.alerting import flows
from controller.alerting import incident_store as incident_db
from controller.alerting.rules import (
    NEW_INCIDENT,
    AlertState,
    BackoffChanged,
    ConfirmationWanted,
    DeliveryObserved,
    Effect,
    IncidentClosed,
    IncidentOpened,
    Notice,
    Replayed,
    StateChanged,
)
from controller.alerting.telling import Teller, outage
from controller.db.pool import Conn
from controller.logins import backoff_store as backoff_db
from controller.monitors.store import Monitor
from controller.monitors.thresholds import Thresholds
from controller.notify import events_store as events_db
from controller.notify.incident import Incident
from controller.notify.links import Links
from controller.observability import metrics
from controller.posture import observe as posture
from controller.roundtrips import delivery as roundtrip_delivery
from controller.scheduling import confirm_store as confirmations
from controller.scheduling import rules as schedule
from controller.settings import FairUseSettings
from shared.guards import BrokenInvariant
from shared.messages import MonitorEvent, encode
from shared.subjects import events_subject
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)


class Effects:
    """Writes `judge`'s effects: notices through `teller`; `links` (PUBLIC_URL) for the
    findings and delivery notices; `fair_use`: how many countries a round without a list goes
    to and the organization's allowance for triggered checks, which confirmation rounds draw
    on."""

    def __init__(self, teller: Teller, links: Links, *, fair_use: FairUseSettings) -> None:
        self._teller = teller
        self._links = links
        self._default_countries = fair_use.default_check_countries
        self._checks_per_minute = fair_use.org_max_checks_per_minute

    async def apply(
        self,
        conn: Conn,
        monitor: Monitor,
        effects: Sequence[Effect],
        incidents: dict[int, Incident],
        now: datetime,
        quiet: bool,
    ) -> int | None:
        """Write what `judge` decided, in its order; return the id of the incident it opened
        (`NEW_INCIDENT`) and left open, if any. `incidents`: the rows read, by id."""
        public_id = str(monitor.public_id)
        opened: int | None = None
        if any(
            isinstance(e, IncidentOpened | IncidentClosed | Notice | ConfirmationWanted)
            for e in effects
        ):
            # Before any incident row: a flow incident's writer may move other monitors' rows.
            # Before the organization's row too (a confirmation round draws on its allowance):
            # a lane's transaction holds both for several monitors, always in this order.
            await flow_db.lock(conn, monitor.organization_id)
        for e in effects:
            if isinstance(e, IncidentOpened):
                new = await incident_db.open_incident(
                    conn,
                    monitor.id,
                    e.started_at,
                    e.cause_kind,
                    e.cause,
                    e.countries,
                    e.messages,
                    opened_at=now,
                )
                incidents[NEW_INCIDENT] = await self._join_flow(conn, monitor, new, now)
                opened = new.id
            elif isinstance(e, IncidentClosed):
                incident_id = opened if e.incident == NEW_INCIDENT else e.incident
                if incident_id is None:
                    raise BrokenInvariant("effects.Effects.apply: incident_id is unset")
                closed = await incident_db.close_incident(
                    conn, incident_id, e.ended_at, reason=e.reason, hold_recovery=e.hold_recovery
                )
                incidents[e.incident] = closed
                await self._teller.flow_closed(conn, monitor.organization_id, closed, e, now)
                if e.why == "disabled":
                    log.info("incident closed", monitor_id=public_id, reason=e.reason)
                elif e.why == "no_data":
                    log.warning(
                        "incident closed for lack of data",
                        monitor_id=public_id,
                        incident_id=incident_id,
                        missed_rounds=e.missed_rounds,
                        no_data_since=iso_ms(e.ended_at),
                    )
            elif isinstance(e, Notice):
                await self._teller.outage(conn, monitor, incidents[e.incident], e.kind, now)
            elif isinstance(e, StateChanged):
                await self._event(
                    conn, monitor, e.previous, e.state, e.at, list(e.countries), e.cause
                )
            elif isinstance(e, BackoffChanged):
                await self._back_off(conn, monitor, e, now)
            elif isinstance(e, ConfirmationWanted):
                await self._confirm(conn, monitor, e, now)
            elif isinstance(e, DeliveryObserved):
                await roundtrip_delivery.observe(conn, monitor, e.rounds, quiet, self._links, now)
            elif isinstance(e, Replayed):
                log.info(
                    "rounds judged again with a late result",
                    monitor_id=public_id,
                    state=e.state,
                    previous=e.previous,
                )
        return opened

    async def posture(
        self,
        conn: Conn,
        monitor: Monitor,
        s: AlertState,
        quiet: bool,
        t: Thresholds,
        read: posture.Read | None,
        now: datetime,
    ) -> None:
        """Feed the rounds just judged (complete or closed: their results are final) to the
        monitor's posture, in a savepoint: a posture failure is logged and retried at the next
        evaluation, and never holds back the monitor's alerting."""
        try:
            async with conn.transaction():
                await posture.observe(
                    conn, monitor, s.last_round_at, s.state, quiet, self._links, now, t, read
                )
        except Exception:
            log.exception("posture evaluation failed", monitor_id=str(monitor.public_id))

    async def _join_flow(
        self, conn: Conn, monitor: Monitor, incident: Incident, now: datetime
    ) -> Incident:
        """The outage `incident` joins the open flow incident it is related to
        (`flows.joins`), else opens one of its own; return it with its flow incident."""
        await flow_db.lock(conn, monitor.organization_id)
        mine = outage(monitor, incident)
        open_flows = await flow_db.open_flows(conn, monitor.organization_id, now)
        seen = flows.NO_ADDRESSES
        if others := flows.by_address(mine, open_flows):
            seen = await flow_db.addresses(conn, [mine, *others], now)
        found = flows.joins(mine, open_flows, seen)
        if found is None:
            flow_id = await flow_db.start(
                conn, monitor.organization_id, incident.id, incident.started_at, now
            )
        else:
            flow_id = found.flow.id
            await flow_db.join(conn, flow_id, incident.id)
            if found.merged:
                await flow_db.merge(conn, flow_id, [f.id for f in found.merged])
            log.info(
                "outage joined a flow incident",
                monitor_id=str(monitor.public_id),
                flow_incident=flow_id,
                relation=found.why,
                merged=len(found.merged),
            )
            metrics.flow_joined(found.why)
        return msgspec.structs.replace(incident, flow_incident_id=flow_id)

    async def _back_off(
        self, conn: Conn, monitor: Monitor, e: BackoffChanged, now: datetime
    ) -> None:
        """Store the back-off of logins; tell the owner when `judge` says so (once per back-off,
        outside maintenance), unless the monitor's server is down (`_server_down`): its
        rejected logins are then part of that outage, already paged, and the back-off is told
        only if a later round still has them rejected once the outage is over."""
        public_id = str(monitor.public_id)
        b = e.backoff
        if b is None:
            log.info("logins resumed", monitor_id=public_id)
        else:
            log.warning(
                "credentials rejected: logins backed off",
                monitor_id=public_id,
                failures=b.failures,
                retry_at=iso_ms(b.retry_at),
            )
            if e.notice and await self._server_down(conn, monitor, e.countries, now):
                b = dataclasses.replace(b, notified=False)
                log.info(
                    "login back-off not told: its server's outage is open", monitor_id=public_id
                )
            elif e.notice:
                await self._teller.backoff(conn, monitor, b, list(e.countries))
        metrics.login_backoff("resumed" if b is None else "backed_off")
        await backoff_db.put(conn, monitor.id, b)

    async def _server_down(
        self, conn: Conn, monitor: Monitor, countries: Sequence[str], now: datetime
    ) -> bool:
        """Whether an open flow incident holds another monitor's outage that an outage of this
        one would join (`flows.joins`: the same server by name, address or `dependsOn`)."""
        open_flows = await flow_db.open_flows(conn, monitor.organization_id, now)
        mine = flows.Outage(flows.Dependent.of(monitor), now, "auth", frozenset(countries))
        seen = flows.NO_ADDRESSES
        if others := flows.by_address(mine, open_flows):
            seen = await flow_db.addresses(conn, [mine, *others], now)
        return flows.joins(mine, open_flows, seen) is not None

    async def _confirm(
        self, conn: Conn, monitor: Monitor, e: ConfirmationWanted, now: datetime
    ) -> None:
        """Ask the scheduler for a confirmation round of the round `e.round_at` (failing, or
        passing while the incident is open), and when `e.siblings` of each of its siblings
        (`confirm_store.siblings`: the same host name, or `dependsOn`), each within its
        organization's allowance for triggered checks (as a trigger-check draws on it); the
        scheduler sends them when the global budget has a slot for their organization."""
        public_id = str(monitor.public_id)
        own = confirmations.Sibling(
            monitor.id, public_id, monitor.organization_id, monitor.allowed_country_codes
        )
        outcome = await self._ask(conn, own, e, now) if e.own else "asked"
        if outcome == "requested":
            log.info(
                "confirmation round requested",
                monitor_id=public_id,
                failing_round=iso_ms(e.round_at),
                countries=list(e.countries),
                recovering=e.recovering,
            )
        if outcome == "org_capped" or not e.siblings:
            return
        found = await confirmations.siblings(
            conn,
            monitor.id,
            now,
            recovering=e.recovering,
            addresses_since=now - flow_db.ADDRESSES_SINCE,
        )
        asked = 0
        for sibling in found:
            outcome = await self._ask(conn, sibling, e, now)
            if outcome == "org_capped":
                break
            asked += outcome == "requested"
        if found:
            log.info(
                "confirmation rounds of the monitor's siblings requested",
                monitor_id=public_id,
                recovering=e.recovering,
                monitors=asked,
                found=len(found),
            )

    async def _ask(
        self, conn: Conn, m: confirmations.Sibling, e: ConfirmationWanted, now: datetime
    ) -> str:
        """Request one confirmation round of `e.round_at` for the monitor `m`; the outcome
        (`confirm_store.request`), counted and, when over the allowance, logged."""
        countries = schedule.planned_countries(m.allowed_country_codes, self._default_countries)
        cost_s = countries * 60.0 / self._checks_per_minute
        outcome = await confirmations.request(
            conn, m.monitor_id, e.round_at, now, m.organization_id, cost_s
        )
        if outcome == "asked":
            return outcome
        metrics.confirmation(outcome)
        if outcome == "org_capped":
            log.warning(
                "confirmation round not sent: the organization's triggered checks"
                " (ORG_MAX_CHECKS_PER_MINUTE) are used up",
                monitor_id=m.public_id,
                failing_round=iso_ms(e.round_at),
                per_minute=self._checks_per_minute,
            )
        return outcome

    @staticmethod
    async def _event(
        conn: Conn,
        monitor: Monitor,
        previous: str,
        state: str,
        at: datetime,
        countries: list[str],
        cause: str,
    ) -> None:
        """The state change, queued for the event outbox (`EventPublisher` sends it)."""
        public_id = str(monitor.public_id)
        stamp = iso_ms(at)
        event = MonitorEvent(
            monitor_id=public_id,
            state=state,
            previous_state=None if previous == "unknown" else previous,
            at=stamp,
            countries=sorted(countries),
            cause=cause,
        )
        await events_db.add_event(
            conn, events_subject(public_id), f"{public_id}:{stamp}:{state}", encode(event)
        )
        log.info("monitor state changed", monitor_id=public_id, state=state, previous=previous)
