"""The alerter: queued monitors → state per round → incidents, notifications and events.

A **round** is one scheduled time across a monitor's countries. It is evaluated once complete:
every expected country has a result (the listed countries, or `DEFAULT_CHECK_COUNTRIES`), or
the round is past its expiry plus the timeout (what has not come by then never will). Of the
countries that ran it (`missed` ones ran nowhere and count for nothing):

- more than `failureThreshold` of them failed → a **failing** round;
- some failed, but not that many → **degraded**; none failed → **up** (both are passing);
- none ran it at all → **missed**: neither counter moves.

`downAfterRounds` failing rounds in a row open an incident (`down`); `recoverAfterRounds`
passing rounds in a row close it. Before that the monitor is `degraded`, so a flapping server
never notifies anyone.

Queued monitors are leased (FOR UPDATE SKIP LOCKED on `alert_queue`, so replicas share the
work) and each is evaluated in one transaction that writes the new state, the incident, the
notification outbox rows and the events together; `monitor_alert_state` is locked FOR UPDATE,
so even an evaluation repeated after an expired lease runs one at a time. Events are
published after the commit (`publish_events`).
Nothing is notified while the monitor's status is `maintenance` or one of its maintenance
windows is open: state and incidents are still recorded. An incident opened meanwhile is
notified as `down` once the maintenance is over and it is still open; one that closes during
maintenance, or that was never notified, sends no recovery.
"""

import asyncio
import contextlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog
from nats.js import JetStreamContext

from controller import causes, maintenance
from controller.db import alerts
from controller.db import maintenance as windows_db
from controller.db.alerts import Outgoing, Thresholds
from controller.db.pool import Conn
from controller.notify.texts import Kind, render
from shared.messages import MonitorEvent, encode
from shared.subjects import events_subject
from shared.timefmt import iso_ms, utcnow

log = structlog.get_logger(__name__)

BATCH = 100
ROWS_PER_EVALUATION = 5000
CLOSE_GRACE = timedelta(seconds=5)
LEASE_S = 30.0  # an evaluation takes milliseconds; a crashed one is retried after this


@dataclass
class Round:
    at: datetime
    up: list[str] = field(default_factory=list)
    failures: list[tuple[str, str | None, str]] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    @property
    def countries(self) -> int:
        return len(self.up) + len(self.failures) + len(self.missed)

    def verdict(self, failure_threshold: float) -> str:
        """`missed`, `failing`, `degraded` or `up`."""
        ran = len(self.up) + len(self.failures)
        if ran == 0:
            return "missed"
        if len(self.failures) / ran > failure_threshold:
            return "failing"
        return "degraded" if self.failures else "up"


def rounds(rows: Sequence[Any]) -> list[Round]:
    """Results (oldest first) grouped by scheduled time."""
    found: list[Round] = []
    for row in rows:
        if not found or found[-1].at != row["scheduled_at"]:
            found.append(Round(row["scheduled_at"]))
        r = found[-1]
        if row["status"] == "up":
            r.up.append(row["country"])
        elif row["status"] == "down":
            r.failures.append((row["country"], row["error_kind"], row["message"]))
        else:
            r.missed.append(row["country"])
    return found


@dataclass
class AlertState:
    """The monitor's alert state as plain fields (one row of `monitor_alert_state`)."""

    state: str = "unknown"
    consecutive_down_rounds: int = 0
    consecutive_up_rounds: int = 0
    down_since: datetime | None = None
    up_since: datetime | None = None
    last_round_at: datetime | None = None
    open_incident_id: int | None = None
    last_notified_at: datetime | None = None

    def step(self, verdict: str, at: datetime, t: Thresholds) -> str | None:
        """Move by one round; return `open` or `close` when the incident should change."""
        self.last_round_at = at
        if verdict == "missed":
            if self.open_incident_id is None:
                self.state = "missed"
            return None
        if verdict == "failing":
            if self.consecutive_down_rounds == 0:
                self.down_since = at
            self.consecutive_down_rounds += 1
            self.consecutive_up_rounds, self.up_since = 0, None
            if self.open_incident_id is not None:
                return None
            if self.consecutive_down_rounds >= t.down_after_rounds:
                self.state = "down"
                return "open"
            self.state = "degraded"
            return None
        if self.consecutive_up_rounds == 0:
            self.up_since = at
        self.consecutive_up_rounds += 1
        self.consecutive_down_rounds, self.down_since = 0, None
        if self.open_incident_id is not None:
            if self.consecutive_up_rounds < t.recover_after_rounds:
                return None
            self.state = verdict
            return "close"
        self.state = verdict
        return None


_STATE_FIELDS = tuple(AlertState.__dataclass_fields__)


class Alerter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        *,
        channels: Collection[str] = (),
        default_countries: int = 2,
        reminder_minutes: int = 60,
        interval_s: float = 1.0,
        batch: int = BATCH,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`channels`: the configured channel names; no outbox row is written for others."""
        self._pool = pool
        self._js = js
        self._channels = frozenset(channels)
        self._default_countries = default_countries
        self._reminder = timedelta(minutes=reminder_minutes) if reminder_minutes else None
        self._interval_s = interval_s
        self._batch = batch
        self._clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate and publish until `stop` is set; errors are logged and retried."""
        log.info("alerter started", channels=sorted(self._channels))
        while not stop.is_set():
            busy = False
            try:
                busy = await self.evaluate_due() == self._batch
                await self.publish_events()
            except Exception:
                log.exception("alerter pass failed; retrying")
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._interval_s)

    async def burst(self) -> int:
        """Evaluate everything due and publish the events; return monitors evaluated (tests)."""
        total = 0
        while count := await self.evaluate_due():
            total += count
        await self.publish_events()
        return total

    async def evaluate_due(self) -> int:
        """Lease one batch of queued monitors and evaluate each in its own transaction; return
        how many. A failed evaluation is retried when its lease ends."""
        now = self._clock()
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                leased = await alerts.claim(conn, now, self._batch, LEASE_S)
            for monitor_id, lease in leased:
                try:
                    async with conn.transaction():
                        due = await self.evaluate(conn, monitor_id, now)
                        await alerts.release(conn, monitor_id, lease, due)
                except (asyncpg.PostgresError, ValueError, KeyError) as exc:
                    log.error("evaluation failed", monitor=monitor_id, error=str(exc)[:300])
        return len(leased)

    async def evaluate(self, conn: Conn, monitor_id: int, now: datetime) -> datetime | None:
        """Move one monitor over its complete rounds; return when to come back (a round is
        still open), or None."""
        monitor = await alerts.monitor(conn, monitor_id)
        if monitor is None:
            return None
        row = await alerts.state(conn, monitor_id)
        s = AlertState(**{name: row[name] for name in _STATE_FIELDS})
        t = await alerts.thresholds(conn, monitor_id, monitor["organization_id"])
        interval = timedelta(seconds=monitor["check_interval"])
        after = s.last_round_at or now - max(timedelta(hours=1), 3 * interval)
        rows = await alerts.results_after(conn, monitor_id, after, ROWS_PER_EVALUATION)
        found = rounds(rows)
        due: datetime | None = None
        if len(rows) == ROWS_PER_EVALUATION and len(found) > 1:
            found.pop()  # may be cut short; read again at once
            due = now
        listed = monitor["allowed_country_codes"]
        expected = len(listed) if listed is not None else self._default_countries
        closes_after = interval + timedelta(seconds=monitor["timeout_seconds"]) + CLOSE_GRACE
        quiet = await self._quiet(conn, monitor, now)
        before = s.state
        for r in found:
            if r.countries < expected and now < r.at + closes_after:
                due = r.at + closes_after
                break
            previous = s.state
            action = s.step(r.verdict(t.failure_threshold), r.at, t)
            if action == "open":
                kind, text = causes.describe(r.failures)
                incident = await alerts.open_incident(
                    conn,
                    monitor_id,
                    s.down_since or r.at,
                    kind,
                    text,
                    [c for c, _, _ in r.failures],
                )
                s.open_incident_id = incident["id"]
                if not quiet:
                    await self._notify(conn, monitor, incident, "down", now, s)
            elif action == "close" and s.open_incident_id is not None:
                incident = await alerts.close_incident(conn, s.open_incident_id, s.up_since or r.at)
                s.open_incident_id = None
                if incident["notified"] and not quiet:
                    await self._notify(conn, monitor, incident, "recovered", now, s)
            if s.state != previous:
                await self._event(conn, monitor, previous, s, r)
        if s.open_incident_id is not None and not quiet:
            await self._remind(conn, monitor, s, now)
        await alerts.save_state(
            conn,
            monitor_id,
            {name: getattr(s, name) for name in _STATE_FIELDS}
            | ({"changed_at": now} if s.state != before else {}),
        )
        return due

    async def _quiet(self, conn: Conn, monitor: Any, now: datetime) -> bool:
        """No notifications: status `maintenance`, or a maintenance window is open."""
        if monitor["status"] == "maintenance":
            return True
        windows = await windows_db.for_monitor(conn, monitor["id"], monitor["customer_id"])
        return maintenance.any_open(windows, now)

    async def _remind(self, conn: Conn, monitor: Any, s: AlertState, now: datetime) -> None:
        """A down notice not sent yet (opened in maintenance), or a reminder when it is due."""
        assert s.open_incident_id is not None
        incident = await alerts.incident(conn, s.open_incident_id)
        assert incident is not None
        if not incident["notified"]:
            await self._notify(conn, monitor, incident, "down", now, s)
        elif (
            self._reminder is not None
            and s.last_notified_at is not None
            and now - s.last_notified_at >= self._reminder
        ):
            await self._notify(conn, monitor, incident, "reminder", now, s)

    async def _notify(
        self, conn: Conn, monitor: Any, incident: Any, kind: Kind, now: datetime, s: AlertState
    ) -> None:
        texts = render(kind, monitor, incident, now)
        reminders = incident["reminders"] + (kind == "reminder")
        tag = f"{kind}-{reminders}" if kind == "reminder" else kind
        notes: list[Outgoing] = []
        email, phone = monitor["notification_email"], monitor["notification_phone_number"]
        if email and "email" in self._channels:
            notes.append(
                Outgoing(
                    kind,
                    "email",
                    email,
                    texts.subject,
                    texts.text,
                    texts.html,
                    f"incident:{incident['id']}:{tag}:email",
                )
            )
        if phone and "sms" in self._channels:
            notes.append(
                Outgoing(
                    kind, "sms", phone, "", texts.sms, None, f"incident:{incident['id']}:{tag}:sms"
                )
            )
        await alerts.enqueue(conn, monitor["id"], incident["id"], notes)
        if kind != "recovered":
            await alerts.set_incident_notified(conn, incident["id"], reminders)
            s.last_notified_at = now
        log.info(
            "notification queued",
            monitor_id=str(monitor["public_id"]),
            kind=kind,
            channels=[n.channel for n in notes],
        )

    async def _event(
        self, conn: Conn, monitor: Any, previous: str, s: AlertState, r: Round
    ) -> None:
        public_id = str(monitor["public_id"])
        at = iso_ms(r.at)
        cause = ""
        if s.state in ("down", "degraded") and r.failures:
            cause = causes.describe(r.failures)[1]
        countries = [c for c, _, _ in r.failures] if s.state != "missed" else r.missed
        event = MonitorEvent(
            monitor_id=public_id,
            state=s.state,
            previous_state=None if previous == "unknown" else previous,
            at=at,
            countries=sorted(countries),
            cause=cause,
        )
        await alerts.add_event(
            conn, events_subject(public_id), f"{public_id}:{at}:{s.state}", encode(event)
        )
        log.info("monitor state changed", monitor_id=public_id, state=s.state, previous=previous)

    async def publish_events(self) -> int:
        """Publish the state changes written so far (Nats-Msg-Id makes a retry harmless)."""
        published = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await alerts.claim_events(conn, self._batch)
                if not rows:
                    return published
                for row in rows:
                    await self._js.publish(
                        row["subject"],
                        bytes(row["payload"]),
                        headers={"Nats-Msg-Id": row["msg_id"]},
                    )
                await alerts.delete_events(conn, [r["id"] for r in rows])
            published += len(rows)
