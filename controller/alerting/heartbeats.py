"""The heartbeat judge: heartbeat monitors' verdicts (controller.arrivals.rules) on the
alerter's clock, as rounds of the outage rules (controller.alerting.rules `judge`), so a late
heartbeat opens an incident and sends notices like any outage (the same channels, budgets,
maintenance windows and reminders) and an arrival again closes it.

Each monitor is looked at when its `heartbeat_watch` row is due (controller.arrivals
.watch_store): at the rule's `due_at` (when it turns late if nothing arrives), at once when an
arrival was stored for it, and, while late, again every period or `LATE_LOOK` if sooner
(reminders, a maintenance's end). A disabled monitor is looked at every `LATE_LOOK`, its watch
starting at each look: enabled again, it is pending for a period and its grace.
Each look is one round: `up` (from the receiving countries), or failing with the error kind
`late`; one round decides (the rule has its grace already): no confirmation rounds. `pending`
is the state `unknown`: no round."""

import dataclasses
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Final

import asyncpg
import structlog

from controller.alerting import incident_store as incident_db
from controller.alerting import state_store as alert_state
from controller.alerting.effects import Effects
from controller.alerting.rules import NEW_INCIDENT, JudgedMonitor, JudgedRound, Known, Policy, judge
from controller.arrivals import watch_store
from controller.arrivals.rules import DAYS, Rule, Schedule, Verdict
from controller.arrivals.rules import judge as verdict_of
from controller.db.pool import Conn
from controller.notify import entry as notify_entry
from controller.notify.incident import Incident
from shared.messages import HeartbeatConfig

log = structlog.get_logger(__name__)

BATCH: Final = 200
LEASE_S: Final = 30.0
# The newest arrivals a look reads (the rule needs the `expected` newest and those of one
# period): a monitor may ask for at most this many a period.
NEWEST: Final = 1000
# While late, how often a monitor is looked at again at most (reminders, a maintenance's end).
LATE_LOOK: Final = timedelta(minutes=5)
# A country for the rounds when the monitor lists none: the receivers as a whole.
ANY_COUNTRY: Final = "ZZ"


def rule_of(config: HeartbeatConfig) -> Rule:
    schedule = None
    if config.by_time:
        hours, minutes = config.by_time.split(":")
        days = frozenset(DAYS.index(d) for d in config.days if d in DAYS)
        schedule = Schedule(time(int(hours), int(minutes)), config.time_zone, days)
    return Rule(
        every=timedelta(minutes=config.every_minutes),
        grace=timedelta(minutes=config.grace_minutes),
        expected=config.expected,
        sender=config.sender,
        subject=config.subject,
        schedule=schedule,
    )


def late_text(rule: Rule, verdict: Verdict) -> str:
    """What the failing round says: how many arrived of how many expected."""
    if rule.schedule is not None:
        at = rule.schedule.at.strftime("%H:%M")
        return f"{verdict.count} of {rule.expected} expected by {at} {rule.schedule.zone} (+ grace)"
    minutes = int(rule.every.total_seconds() // 60)
    return f"{verdict.count} of {rule.expected} expected in {minutes} min (+ grace)"


class HeartbeatJudge:
    """Judges the due heartbeat monitors: `effects` writes what the rules decide; `policy`
    the alerter's (without confirmation rounds); "now" from `clock`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        effects: Effects,
        *,
        policy: Policy,
        clock: Callable[[], datetime],
    ) -> None:
        self._pool = pool
        self._effects = effects
        self._policy = dataclasses.replace(policy, confirm=False)
        self._clock = clock

    async def judge_due(self) -> int:
        """Judge the monitors due now, each in its own transaction; how many."""
        now = self._clock()
        async with self._pool.acquire() as conn:
            due = await watch_store.claim(conn, now, BATCH, LEASE_S)
            for w in due:
                try:
                    async with conn.transaction():
                        await self.judge_one(conn, w, now)
                except Exception:
                    log.error(
                        "heartbeat judging failed; retried when its lease ends",
                        monitor=w.monitor_id,
                        exc_info=True,
                    )
        return len(due)

    async def judge_one(self, conn: Conn, w: watch_store.Watched, now: datetime) -> None:
        got = await alert_state.inputs(conn, w.monitor_id, now)
        if got is None:
            return
        monitor = got.watched.monitor
        config = monitor.config
        if not isinstance(config, HeartbeatConfig):
            await watch_store.release(conn, w.monitor_id, None)
            return
        rule = rule_of(config)
        seen = await watch_store.newest(conn, w.monitor_id, now, NEWEST)
        times = [s.arrived_at for s in seen if rule.matches(s.header_from, s.mail_from, s.subject)]
        verdict = verdict_of(rule, times, w.watched_from, now)
        s = got.state
        countries = tuple(monitor.allowed_country_codes or ()) or (ANY_COUNTRY,)
        cursor = s.last_round_at
        rounds: list[JudgedRound] = []
        if verdict.state != "pending" and monitor.status != "disabled":
            at = now if verdict.state == "up" else (verdict.late_since or now)
            if cursor is not None and at <= cursor:
                at = cursor + timedelta(microseconds=1)
            if verdict.state == "up":
                rounds.append(JudgedRound(at, up=list(countries)))
            else:
                text = late_text(rule, verdict)
                rounds.append(JudgedRound(at, failures=[(c, "late", text) for c in countries]))
        quiet = await notify_entry.in_maintenance(conn, monitor, now, windows=got.windows)
        incidents: dict[int, Incident] = {}
        notified = False
        if s.open_incident_id is not None:
            current = await incident_db.incident(conn, s.open_incident_id)
            if current is not None:
                incidents[current.id] = current
                notified = current.notified
        facts = JudgedMonitor(
            str(monitor.public_id), rule.every, len(countries), monitor.status == "disabled"
        )
        t = dataclasses.replace(
            got.thresholds,
            failure_threshold=0.5,
            down_after_rounds=1,
            recover_after_rounds=1,
            confirm_failures=False,
        )
        judged = judge(facts, s, rounds, t, now, Known(quiet, notified), self._policy)
        state = judged.state
        opened = await self._effects.apply(conn, monitor, judged.effects, incidents, now, quiet)
        if state.open_incident_id == NEW_INCIDENT:
            state.open_incident_id = opened
        changed_at = now if state.state != s.state else None
        await alert_state.save_state(conn, w.monitor_id, state, changed_at, now=now)
        if monitor.status == "disabled":
            # Watched again from when it is enabled: its watch starts at each look meanwhile.
            await watch_store.release(conn, w.monitor_id, now + LATE_LOOK, watched_from=now)
        else:
            due = verdict.due_at
            if verdict.state == "down":
                due = now + min(rule.every, LATE_LOOK)
            await watch_store.release(conn, w.monitor_id, due)
        log.info(
            "heartbeat judged",
            monitor_id=str(monitor.public_id),
            verdict=verdict.state,
            count=verdict.count,
            state=state.state,
        )
