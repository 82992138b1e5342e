"""The alerting core: what the rounds judged mean for a monitor. Pure rules, no I/O.

`judge(monitor, state, rounds, thresholds, now)` takes what the rules need of the monitor
(`JudgedMonitor.of` a typed `Monitor` and its `RoundState`), its alert state and the rounds
ready to judge (complete or closed, oldest first) and returns the state after them and the
effects the evaluator (controller.alerting.evaluator) applies in one transaction: state changes
(events),
incidents opened and closed (including the close for lack of data, controller.alerting.no_data),
notices wanted (down, reminder, recovered, no data), the login back-off's change and its
notice (controller.logins.backoff), a confirmation round wanted (controller.scheduling.confirm) and
the
rounds a round-trip monitor's delivery record observes.

A round's verdict (`JudgedRound.verdict`), the share divided by the expected countries (so a
dead agent counts as not failing): more than `failureThreshold` of them failed → **failing**;
some failed → **degraded**; none → **up** (both passing); none ran it → **missed**. An
inconclusive country (its agent's own path explains the failure) counts like a missed one:
never failing, never passing. `downAfterRounds` failing rounds in a row open an incident;
`recoverAfterRounds` passing rounds in a row close it (a round no country passed is not one
while the incident is open: `AlertState.counted`); before that no one is notified, so a
flapping server never notifies anyone, and the state says what the round saw: `down` when no
country passed it (every one that answered failed), else `degraded`; missed rounds move neither
counter (`AlertState.step`).

A late real result that replaced an `expired` row of a round judged already is a **revision**:
the rounds of a window up to the cursor are replayed through the same counting and deciding
steps from empty counters, and only the latest run (of failing, or of passing, rounds) acts:
what was notified for earlier rounds stays as it was.

While notifications are held (`Known.quiet`: maintenance), state and incidents still move but no
notice is wanted; an incident opened meanwhile is told `down` once the quiet is over, and a
recovery held is sent then (`Known.held`); one never notified sends none. Disabling a monitor
closes its open incident at once (`end_reason` "monitoring disabled"), notifies nobody, and
leaves the state `unknown`.
"""

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, NamedTuple

from controller.alerting import no_data
from controller.jobs.result_kinds import HELD_KINDS
from controller.logins import backoff as login_backoff
from controller.logins.backoff import HELD, Backoff
from controller.monitors.thresholds import Thresholds
from controller.notify import causes
from controller.notify.texts import Kind
from controller.scheduling import confirm
from controller.scheduling import rules as schedule
from controller.settings import AlertingSettings
from shared.guards import BrokenInvariant

if TYPE_CHECKING:  # the types only: the rules read no store
    from controller.monitors.store import Monitor, RoundState

Row = tuple[str, str | None, str]  # (country, error kind, message)
Verdict = Literal["missed", "failing", "degraded", "up"]
Action = Literal["open", "close", "no_data"]

DISABLED = "monitoring disabled"  # the end reason of an incident closed by disabling
NEW_INCIDENT = (
    -1
)  # `open_incident_id` of an incident `judge` opened, until the evaluator has its id


@dataclass
class JudgedRound:
    """One scheduled time across a monitor's countries, as its results say."""

    at: datetime
    jobs: dict[str, str] = field(default_factory=dict)  # country → job id of its result
    up: list[str] = field(default_factory=list)
    failures: list[Row] = field(default_factory=list)
    missed: list[Row] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # not run on purpose (result_kinds.HELD_KINDS)
    held_kinds: list[str] = field(default_factory=list)  # their error kinds

    @property
    def countries(self) -> int:
        return len(self.up) + len(self.failures) + len(self.missed) + len(self.held)

    def verdict(self, failure_threshold: float, expected: int) -> Verdict:
        """`missed`, `failing`, `degraded` or `up`; the share is of the expected countries less
        those whose login was held back (they did not check on purpose)."""
        if not self.up and not self.failures:
            return "missed"
        held = len(self.held)
        if len(self.failures) / max(expected - held, self.countries - held) > failure_threshold:
            return "failing"
        return "degraded" if self.failures else "up"


class CountryResult(NamedTuple):
    """One country's stored result of a round, as the rules read it (a `check_results` row)."""

    scheduled_at: datetime
    country: str
    job_id: str
    status: str  # up, down, missed or inconclusive
    error_kind: str | None
    message: str


def rounds(results: Sequence[CountryResult]) -> list[JudgedRound]:
    """Stored results (oldest first) grouped by scheduled time."""
    found: list[JudgedRound] = []
    for res in results:
        if not found or found[-1].at != res.scheduled_at:
            found.append(JudgedRound(res.scheduled_at))
        r = found[-1]
        r.jobs[res.country] = res.job_id
        if res.status == "up":
            r.up.append(res.country)
        elif res.status == "down":
            r.failures.append((res.country, res.error_kind, res.message))
        elif res.error_kind is not None and res.error_kind in HELD_KINDS:
            r.held.append(res.country)
            r.held_kinds.append(res.error_kind)
        else:  # missed, or inconclusive: neither failing nor passing
            r.missed.append((res.country, res.error_kind, res.message))
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
    missed_rounds: int = 0  # the run of missed rounds (`no_data.Run`)
    missed_since: datetime | None = None

    def step(
        self,
        verdict: str,
        at: datetime,
        t: Thresholds,
        data: no_data.Kind | None = None,
        no_data_after: timedelta | None = None,
        *,
        none_passed: bool = False,
    ) -> Action | None:
        """Move by one round; return `open`, `close` or `no_data` (close it for lack of data,
        `no_data.closes`) when the incident should change. `data`: the round's `no_data.kind`
        (by default `no_data` when missed); `no_data_after`: INCIDENT_NO_DATA_CLOSE_MINUTES;
        `none_passed`: no country passed the round."""
        verdict = self.counted(verdict, none_passed)
        self.count(verdict, at, data)
        return self.decide(verdict, at, t, no_data_after, none_passed=none_passed)

    def counted(self, verdict: str, none_passed: bool) -> str:
        """The verdict a round counts as: while an incident is open, a round no country passed
        (its failures too few of the expected countries to fail it: the others' results
        missing, or late past its close) counts as neither failing nor passing, like a missed
        round with data: nobody saw the server recover, so it never closes the incident."""
        if verdict == "degraded" and none_passed and self.open_incident_id is not None:
            return "missed"
        return verdict

    def count(self, verdict: str, at: datetime, data: no_data.Kind | None = None) -> None:
        """The counters after one round: the run of failing or passing rounds it extends or
        starts (a missed round neither), and the run of missed rounds."""
        self.last_round_at = at
        run = no_data.Run(self.missed_rounds, self.missed_since).after(
            data or ("no_data" if verdict == "missed" else "data"), at
        )
        self.missed_rounds, self.missed_since = run.rounds, run.since
        if verdict == "missed":
            return
        if verdict == "failing":
            if self.consecutive_down_rounds == 0:
                self.down_since = at
            self.consecutive_down_rounds += 1
            self.consecutive_up_rounds, self.up_since = 0, None
            return
        if self.consecutive_up_rounds == 0:
            self.up_since = at
        self.consecutive_up_rounds += 1
        self.consecutive_down_rounds, self.down_since = 0, None

    def decide(
        self,
        verdict: str,
        at: datetime,
        t: Thresholds,
        no_data_after: timedelta | None = None,
        *,
        none_passed: bool = False,
    ) -> Action | None:
        """The state the counters mean after the round at `at`, and the incident's change. A
        failing round short of `downAfterRounds` is `down` when no country passed it (what every
        country that answered saw), else `degraded`; the incident still waits for the run."""
        if verdict == "missed":
            if self.open_incident_id is None:
                self.state = "missed"
            elif no_data.closes(
                no_data.Run(self.missed_rounds, self.missed_since), at, no_data_after
            ):
                self.state = "missed"
                self.consecutive_down_rounds, self.down_since = 0, None
                self.consecutive_up_rounds, self.up_since = 0, None
                return "no_data"
            return None
        if verdict == "failing":
            if self.open_incident_id is not None:
                return None
            if self.consecutive_down_rounds >= t.down_after_rounds:
                self.state = "down"
                return "open"
            self.state = "down" if none_passed else "degraded"
            return None
        if self.open_incident_id is not None:
            if self.consecutive_up_rounds < t.recover_after_rounds:
                return None
            self.state = verdict
            return "close"
        self.state = verdict
        return None


STATE_FIELDS = tuple(AlertState.__dataclass_fields__)


def expected_countries(
    allowed: Sequence[str] | None, latest: Sequence[str] | None, default: int
) -> tuple[list[str] | None, int]:
    """The countries a round goes to (None when unknown) and how many: the listed ones, else
    those the scheduler sent the latest round to, else `default` (DEFAULT_CHECK_COUNTRIES).
    The twin of SQL `round_expected` and `checked_from` (migration 0053), held to them by
    tests/pipeline/test_round_rules.py."""
    countries = list(allowed or latest or ()) or None
    return countries, schedule.planned_countries(countries, default)


def checked_from(allowed: Sequence[str] | None, latest: Sequence[str] | None, country: str) -> bool:
    """Whether `country` is one the monitor is checked from now (any while its round's countries
    are unknown): the twin of SQL `checked_from` (migration 0053)."""
    countries, _ = expected_countries(allowed, latest, 0)
    return countries is None or country in countries


# What a round's close adds to its settling (`schedule.settles_at`: expiry plus timeout):
# nothing it has not got by then will come.
CLOSE_GRACE = timedelta(seconds=5)


def closes_at(scheduled_at: datetime, interval_s: int, timeout_s: int) -> datetime:
    """When the round scheduled at `scheduled_at` closes; the twin of SQL `round_closes_after`
    (migration 0053), held to it by tests/pipeline/test_round_rules.py."""
    return schedule.settles_at(scheduled_at, interval_s, timeout_s) + CLOSE_GRACE


@dataclass(frozen=True, slots=True)
class JudgedMonitor:
    """What `judge` needs of a monitor."""

    public_id: str
    interval: timedelta
    expected: int  # how many countries a round goes to
    disabled: bool = False
    roundtrip: bool = False

    @classmethod
    def of(
        cls, monitor: "Monitor", rounds: "RoundState", default_countries: int
    ) -> "JudgedMonitor":
        """The monitor as `judge` takes it; `default_countries`: DEFAULT_CHECK_COUNTRIES."""
        _, expected = expected_countries(
            monitor.allowed_country_codes, rounds.countries, default_countries
        )
        return cls(
            public_id=str(monitor.public_id),
            interval=timedelta(seconds=monitor.check_interval),
            expected=expected,
            disabled=monitor.status == "disabled",
            roundtrip=monitor.type == "roundtrip",
        )


@dataclass(frozen=True, slots=True)
class Policy:
    """The controller's settings the rules read."""

    reminder: timedelta | None = timedelta(minutes=60)  # INCIDENT_REMINDER_MINUTES; None: never
    no_data_after: timedelta | None = timedelta(minutes=60)  # INCIDENT_NO_DATA_CLOSE_MINUTES
    login_backoff_max: timedelta = timedelta(minutes=360)  # LOGIN_BACKOFF_MAX_MINUTES
    confirm: bool = True  # CONFIRM_ROUNDS_PER_MINUTE > 0

    @classmethod
    def of(cls, alerting: AlertingSettings, confirm_rounds_per_minute: int) -> "Policy":
        """The policy the alerter's settings and CONFIRM_ROUNDS_PER_MINUTE set (0 minutes:
        no reminders, no closing for lack of data; 0 a minute: no confirmation rounds)."""
        reminder, no_data_after = (
            alerting.notify_reminder_minutes,
            alerting.incident_no_data_close_minutes,
        )
        return cls(
            reminder=timedelta(minutes=reminder) if reminder else None,
            no_data_after=timedelta(minutes=no_data_after) if no_data_after else None,
            login_backoff_max=timedelta(minutes=alerting.login_backoff_max_minutes),
            confirm=confirm_rounds_per_minute > 0,
        )


@dataclass(frozen=True, slots=True)
class Held:
    """An incident that ended while notifications were held, its recovery notice waiting."""

    incident: int
    no_data: bool  # closed for lack of data (`no_data.closed_for_lack_of_data`)


@dataclass(frozen=True, slots=True)
class Known:
    """What the evaluator read besides the state and the rounds."""

    quiet: bool = False  # notifications held: maintenance
    incident_notified: bool = False  # the open incident's `down` notice went out
    backoff: Backoff | None = None  # the logins' back-off before these rounds
    held: tuple[Held, ...] = ()


# Effects, applied in order.


@dataclass(frozen=True, slots=True)
class StateChanged:
    previous: str
    state: str
    at: datetime
    countries: tuple[str, ...]
    cause: str


@dataclass(frozen=True, slots=True)
class IncidentOpened:
    started_at: datetime
    cause_kind: str
    cause: str
    countries: tuple[str, ...]
    messages: tuple[str, ...] = ()  # the agents' messages of the failing round


@dataclass(frozen=True, slots=True)
class IncidentClosed:
    incident: int  # NEW_INCIDENT: the one opened by an effect before
    ended_at: datetime
    why: Literal["recovered", "no_data", "disabled"]
    reason: str | None = None  # the end reason, unless it recovered
    hold_recovery: bool = False  # its recovery notice waits for the quiet to end
    missed_rounds: int = 0


@dataclass(frozen=True, slots=True)
class Notice:
    kind: Kind
    incident: int  # NEW_INCIDENT: the one opened by an effect before


@dataclass(frozen=True, slots=True)
class BackoffChanged:
    backoff: Backoff | None  # None: logins resumed
    notice: bool  # tell the owners (once per back-off)
    countries: tuple[str, ...]  # whose credentials were rejected in the latest round


@dataclass(frozen=True, slots=True)
class ConfirmationWanted:
    round_at: datetime
    countries: tuple[str, ...]  # the failing ones
    siblings: bool = False  # the host's other monitors are checked too (`confirm.with_siblings`)
    recovering: bool = False  # of a passing round while the incident is open
    own: bool = True  # the monitor's own confirmation (False: its siblings' only)


# A judged round as the round-trip delivery record needs it (controller.roundtrips.delivery).
Seen = tuple[datetime, bool, tuple[str | None, ...]]


@dataclass(frozen=True, slots=True)
class DeliveryObserved:
    rounds: tuple[Seen, ...]


@dataclass(frozen=True, slots=True)
class Replayed:
    """A revision was judged: the state before and after it."""

    previous: str
    state: str


Effect = (
    StateChanged
    | IncidentOpened
    | IncidentClosed
    | Notice
    | BackoffChanged
    | ConfirmationWanted
    | DeliveryObserved
    | Replayed
)


@dataclass(frozen=True, slots=True)
class Judgement:
    state: AlertState
    effects: tuple[Effect, ...]


def judge(
    monitor: JudgedMonitor,
    state: AlertState,
    rounds: Sequence[JudgedRound],
    t: Thresholds,
    now: datetime,
    known: Known = Known(),
    policy: Policy = Policy(),
    revised: Sequence[JudgedRound] = (),
) -> Judgement:
    """The state after `rounds` (ready to judge, after the cursor, oldest first) and what to
    do about it. `revised`: the rounds of a revision's window up to the cursor, replayed first
    (`_replay`). `state` is not changed."""
    j = _Judging(monitor, dataclasses.replace(state), t, now, known, policy)
    if not known.quiet:
        for h in known.held:
            j.notice("no_data" if h.no_data else "recovered", h.incident)
    if monitor.disabled:
        j.disable()
    else:
        if revised:
            j.replay(revised)
        j.forward(rounds)
        if j.s.open_incident_id is not None and not known.quiet:
            j.remind()
    return Judgement(j.s, tuple(j.effects))


def _failing(r: JudgedRound) -> tuple[str, ...]:
    return tuple(c for c, _, _ in r.failures)


@dataclass
class _Judging:
    monitor: JudgedMonitor
    s: AlertState
    t: Thresholds
    now: datetime
    known: Known
    policy: Policy
    effects: list[Effect] = field(default_factory=list)
    notified: bool = False  # the open incident's `down` notice went out

    def __post_init__(self) -> None:
        self.notified = self.known.incident_notified

    def notice(self, kind: Kind, incident: int) -> None:
        self.effects.append(Notice(kind, incident))
        if kind in ("down", "reminder"):
            self.s.last_notified_at = self.now
            self.notified = True

    def changed(self, previous: str, at: datetime, countries: Sequence[str], cause: str) -> None:
        if self.s.state != previous:
            self.effects.append(StateChanged(previous, self.s.state, at, tuple(countries), cause))

    def forward(self, rounds: Sequence[JudgedRound]) -> None:
        """Judge `rounds` in order; then the back-off, delivery and confirmation they ask for."""
        s, quiet = self.s, self.known.quiet
        backoff = self.known.backoff
        verdict: Verdict = "missed"
        for r in rounds:
            previous = s.state
            verdict = r.verdict(self.t.failure_threshold, self.monitor.expected)
            backoff = login_backoff.after_round(
                backoff,
                [k for _, k, _ in r.failures],
                bool(r.up),
                r.at,
                self.monitor.interval,
                self.policy.login_backoff_max,
            )
            data = no_data.kind(verdict, [k for _, k, _ in r.missed], r.held_kinds)
            action = s.step(
                verdict, r.at, self.t, data, self.policy.no_data_after, none_passed=not r.up
            )
            ended = self.act(r, action)
            seen = r.missed if s.state == "missed" else r.failures
            cause = causes.describe(seen)[1] if s.state != "up" and seen else ""
            self.changed(previous, r.at, [c for c, _, _ in seen], ended or cause)
        if not rounds:
            return
        last = rounds[-1]
        if self.monitor.roundtrip:
            self.effects.append(
                DeliveryObserved(
                    tuple((r.at, bool(r.up), tuple(k for _, k, _ in r.failures)) for r in rounds)
                )
            )
        if backoff != self.known.backoff:
            notice = backoff is not None and not backoff.notified and not quiet
            if notice and backoff is not None:
                backoff = dataclasses.replace(backoff, notified=True)
            auth = tuple(c for c, k, _ in last.failures if k in login_backoff.REJECTED)
            self.effects.append(BackoffChanged(backoff, notice, auth))
        # No confirmation while logins are held: it would only be another round of wrong logins.
        if backoff is None and self.policy.confirm:
            self.confirmation(verdict, last)

    def confirmation(self, verdict: str, last: JudgedRound) -> None:
        """The confirmation rounds the last round asks for (`controller.scheduling.confirm`):
        its own, of a failing round or of a passing one while the incident is open, and the
        same host's other monitors' at the first round of a run (also when its own is not
        wanted: `downAfterRounds` 1 opened the incident, `recoverAfterRounds` 1 closed it)."""
        s, t, interval = self.s, self.t, self.monitor.interval
        incident_open = s.open_incident_id is not None
        if verdict == "failing":
            run = s.consecutive_down_rounds
            own = confirm.wanted(verdict, run, incident_open, t, last.at, self.now, interval)
            recovering = False
        else:
            run = s.consecutive_up_rounds
            counted = s.counted(verdict, not last.up)
            own = confirm.wanted_back(counted, run, incident_open, t, last.at, self.now, interval)
            recovering = True
        # The host's other monitors are checked when a failing run starts outside an incident
        # (or opens one at once, `downAfterRounds` 1), and when a recovery is confirmed (or
        # closes the incident at once, `recoverAfterRounds` 1); not when a monitor flaps
        # within its open incident.
        if recovering:
            now_too = any(
                isinstance(e, IncidentClosed) and e.why == "recovered" and e.ended_at == last.at
                for e in self.effects
            )
        else:
            now_too = any(isinstance(e, IncidentOpened) for e in self.effects)
        siblings = (own or now_too or not (recovering or incident_open)) and confirm.with_siblings(
            verdict, run, t, last.at, self.now, interval
        )
        if own or siblings:
            self.effects.append(
                ConfirmationWanted(last.at, _failing(last), siblings, recovering, own)
            )

    def replay(self, window: Sequence[JudgedRound]) -> None:
        """A revision: the window's rounds counted again (`AlertState.count`) from empty
        counters, and decided (`AlertState.decide`) on the latest run's last round (and on a
        missed round after it, with no incident in question), acting on that alone. A run
        covering the whole window, of the kind counted before, may have begun before the
        window: it keeps its longer count."""
        s = self.s
        judged = [(r, r.verdict(self.t.failure_threshold, self.monitor.expected)) for r in window]
        ran = [(r, v) for r, v in judged if v != "missed"]
        if not ran:
            return
        previous, cursor = s.state, s.last_round_at
        down_before, up_before = s.consecutive_down_rounds, s.consecutive_up_rounds
        s.consecutive_down_rounds = s.consecutive_up_rounds = 0
        s.down_since = s.up_since = None
        s.missed_rounds, s.missed_since = 0, None
        for r, v in judged:
            data = no_data.kind(v, [k for _, k, _ in r.missed], r.held_kinds)
            s.count(s.counted(v, not r.up), r.at, data)
        last, verdict = ran[-1]
        failing = verdict == "failing"
        run = s.consecutive_down_rounds if failing else s.consecutive_up_rounds
        if run == len(ran) and failing == (down_before > 0):
            if failing:
                s.consecutive_down_rounds = max(run, down_before)
            else:
                s.consecutive_up_rounds = max(run, up_before)
        action = s.decide(verdict, last.at, self.t, none_passed=not last.up)
        if action is None and judged[-1][1] == "missed":
            s.decide("missed", judged[-1][0].at, self.t)  # the latest round still ran nowhere
        s.last_round_at = cursor
        self.act(last, action)
        self.effects.append(Replayed(previous, s.state))
        seen = last.failures if failing else []
        cause = causes.describe(seen)[1] if seen else ""
        self.changed(previous, last.at, [c for c, _, _ in seen], cause)

    def act(self, r: JudgedRound, action: Action | None) -> str:
        """Open or close the incident as the round's step said, and the notices it wants;
        return the end reason of an incident closed for lack of data (else "")."""
        s, quiet = self.s, self.known.quiet
        if action == "open":
            kind, text = causes.describe(r.failures)
            messages = tuple(m for _, _, m in r.failures)
            self.effects.append(
                IncidentOpened(s.down_since or r.at, kind, text, _failing(r), messages)
            )
            s.open_incident_id = NEW_INCIDENT
            self.notified = False
            if not quiet:
                self.notice("down", NEW_INCIDENT)
        elif action == "close" and s.open_incident_id is not None:
            incident = s.open_incident_id
            self.effects.append(
                IncidentClosed(incident, s.up_since or r.at, "recovered", hold_recovery=quiet)
            )
            s.open_incident_id = None
            if self.notified and not quiet:
                self.notice("recovered", incident)
        elif action == "no_data" and s.open_incident_id is not None:
            incident = s.open_incident_id
            since = s.missed_since or r.at
            unheld: list[Row] = [
                (c, k, "") for c, k in zip(r.held, r.held_kinds, strict=True) if k != HELD
            ]
            why = causes.describe(r.missed + unheld)[1] if r.missed or unheld else ""
            reason = no_data.reason(since, s.missed_rounds, why)
            self.effects.append(
                IncidentClosed(incident, since, "no_data", reason, quiet, s.missed_rounds)
            )
            s.open_incident_id = None
            if self.notified and not quiet:
                self.notice("no_data", incident)
            return reason
        return ""

    def remind(self) -> None:
        """A down notice not sent yet (opened in maintenance), or a reminder when it is due."""
        incident = self.s.open_incident_id
        if incident is None:
            raise BrokenInvariant("rules._Judging.remind: incident is unset")
        reminder, last = self.policy.reminder, self.s.last_notified_at
        if not self.notified:
            self.notice("down", incident)
        elif reminder is not None and last is not None and self.now - last >= reminder:
            self.notice("reminder", incident)

    def disable(self) -> None:
        """A disabled monitor: its open incident closes now, silently; the state is `unknown`;
        rounds before now are over (the cursor moves to now)."""
        s = self.s
        if s.open_incident_id is not None:
            self.effects.append(
                IncidentClosed(s.open_incident_id, self.now, "disabled", reason=DISABLED)
            )
        previous = s.state
        fresh = AlertState(last_round_at=self.now, last_notified_at=s.last_notified_at)
        for name in STATE_FIELDS:
            setattr(s, name, getattr(fresh, name))
        self.changed(previous, self.now, [], DISABLED)
