"""The verdict campaign's ground truth and its judge (issue 60): pure rules, table-tested.

The harness logs what it did and when (`Fact`: a target's server killed, frozen or back; a
country's path to it dropped or back; a country's agent gone or back). From that log, for each
target, the truth is when it was **down** by the documented rule (docs/alerts.md, "Rules"): more
than `failure_threshold` of its expected countries failed, a country whose agent is gone counting
as not failing. The judge holds what the product said (states sampled, incidents, notices
queued) against it:

- false down: an incident opened, or a `down` state seen, with no truthful outage to explain it;
- missed recovery: an outage over, the truth up for long enough, its incident still open (a
  late recovery: closed, but later than the bound below);
- stuck: at the end, after a quiet spell, a state other than `up` or an incident open;
- duplicate or missing notices: one `down` and one `recovered` notice per incident, one incident
  per outage long enough to be confirmed (shorter ones may have one or none). A monitor's
  incident that joined a flow incident (one mail-flow problem, issue 66) is told by its flow
  incident: one opening notice per channel for the flow incident, whatever the number of its
  monitors, and one end notice once all of them ended; notices per channel count flow
  incidents, not monitors (`pages`, `flow_incidents`);
- detection: outage start → down notice queued (the flow incident's opening or change notice
  that tells of it), p99 within the bound below;
- joins: an incident opening while the incident of a target it is related to (a shared server,
  a declared `dependsOn` either way, a host it depends on) is open joins that one's flow
  incident instead of opening (and paging) one of its own (the oldest such, so an outage related
  to two told flow incidents joins one of them); of a joint outage's targets' incidents open
  together, however close they opened, only one opens a flow incident (`split_flows`; a restart
  that closes them all and opens them again makes a second one, as it makes second incidents);
- report bursts: TLS-RPT reports about a mail domain arriving while a flow incident is open are
  attached to it as evidence (`reports_attached`), never a notice of their own (`report_pages`).

The bounds are what the rules promise, with `SLACK_S` for processing: a round is scheduled within
one interval of the outage's start, its check fails within the timeout, the confirmation round
runs at once (another timeout): `detect_bound` = interval + 2 * timeout + slack, plus the
flow incident's wait for others to join it (`group_wait`, or `group_interval` for a change
notice, whichever is longer). Recovery needs
`recover_after` passing rounds of the schedule: `recover_bound` = recover_after * interval +
timeout + slack. A monitor that logs in has its countries log in one after another,
`login_spacing` apart: its round takes that much longer, and so do its bounds.

An owner's steps are judged as well: a check-now right after a create gives a passing round in
every country at once (`Created`); an `apply` of an unchanged export writes nothing and loses no
delivery confirmation, one with a timeout changed updates that monitor alone (`Applied`); a
second organization's monitors at a tarpit are never up, and did saturate the country
(`Saturation`).
"""

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

SLACK_S = 5.0

# What the harness did: `failing` True from `at` on, False back. `country` None: every country
# (the server itself); a country: that country's path only. `agent` facts say a country's agent
# was gone (failing True) or back; `away` facts that the controller or NATS was (nobody checks,
# the truth is unchanged, but verdicts near it may come a round's closing later); `busy` facts that
# a country's agents were saturated by another organization (its rounds may be `missed`).
FactKind = Literal["server", "path", "agent", "away", "busy"]


@dataclass(frozen=True)
class Fact:
    at: float
    kind: FactKind
    target: str  # "" for agent facts
    country: str | None
    failing: bool


@dataclass(frozen=True)
class Span:
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Rules:
    interval: float
    timeout: float
    countries: tuple[str, ...]
    failure_threshold: float = 0.5
    down_after: int = 2
    recover_after: int = 2
    # a credentialed round's countries log in one after another, this far apart
    login_spacing: float = 0.0
    # a flow incident's first notice waits this long for others to join; a change this long
    # after the notice before (INCIDENT_GROUP_WAIT_SECONDS, INCIDENT_GROUP_INTERVAL_SECONDS)
    group_wait: float = 0.0
    group_interval: float = 0.0

    @property
    def round_s(self) -> float:
        """How long a round takes at most: the timeout, after the last country's login turn."""
        return self.timeout + (len(self.countries) - 1) * self.login_spacing

    @property
    def confirm_bound(self) -> float:
        """By when an outage is confirmed (its incident opens): what makes it owed one."""
        return self.interval + 2 * self.round_s + SLACK_S

    @property
    def detect_bound(self) -> float:
        """By when its notice is queued: confirmed, then the flow incident's wait."""
        return self.confirm_bound + max(self.group_wait, self.group_interval)

    @property
    def held(self) -> float:
        """How much later a round is judged when a country's agent is gone: once it closes."""
        return self.interval + self.round_s + SLACK_S

    @property
    def recover_bound(self) -> float:
        return self.recover_after * self.interval + self.round_s + SLACK_S


@dataclass(frozen=True)
class Incident:
    id: int
    target: str
    started_at: float
    opened_at: float
    ended_at: float | None
    flow: int | None = None  # the flow incident it joined
    flow_ended_at: float | None = None


@dataclass(frozen=True)
class Notice:
    target: str
    incident_id: int | None
    kind: str  # down, recovered, reminder, no_data
    at: float
    flow: int | None = None  # the flow incident of its incident
    key: str = ""  # its dedupe key: `flow:F:changed-N…` for a flow incident's change
    channel: str = "email"
    source: str = "outage"  # the budget it draws on: `report` for a report finding's

    @property
    def opening(self) -> bool:
        """A `down` notice that opened its incident, not a flow incident's change notice."""
        return self.kind == "down" and ":changed-" not in self.key


@dataclass(frozen=True)
class Joint:
    """A joint outage the harness made: `targets` down together from `at` to `end`."""

    at: float
    end: float
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Burst:
    """Reports posted from `at` to `end` (`accepted` of `posted` answered 200)."""

    at: float
    end: float
    posted: int
    accepted: int


@dataclass(frozen=True)
class Evidence:
    """A finding attached to flow incident `flow` at `at` (`source`: finding, report)."""

    at: float
    flow: int
    source: str


@dataclass(frozen=True)
class Created:
    """A target created through the API during the history and checked at once: when, the
    check-now's HTTP status, and each country's first result (stored at, status)."""

    target: str
    at: float
    trigger_status: int
    first: dict[str, tuple[float, str]]


@dataclass(frozen=True)
class Applied:
    """An `apply` of an exported file, unchanged (`changed_target` "") or with one target's
    timeout changed: its exit code and summary line, the monitors whose stored row it changed
    and the round trips whose delivery confirmation it lost."""

    at: float
    changed_target: str
    exit_code: int
    summary: str
    rows_changed: tuple[str, ...]
    confirmations_lost: tuple[str, ...]


@dataclass(frozen=True)
class Saturation:
    """A second organization's monitors at a tarpit, saturating a country: its results as
    counts of (status, error kind), and how many of the first organization's were `saturated`."""

    noisy: dict[tuple[str, str], int]
    ours_saturated: int


@dataclass
class Observed:
    """What the product said: `states[target]` as (sampled at, state), in time order."""

    states: dict[str, list[tuple[float, str]]]
    incidents: list[Incident]
    notices: list[Notice]
    final_states: dict[str, str]
    created: list[Created] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    saturation: Saturation | None = None
    joints: list[Joint] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)


# What went wrong: each a list of lines on `Figures`, by field, and how its count reads. `WRONG`
# are verdicts held against the truth, `LATE` timings past a bound the rules promise.
WRONG = {
    "false_down": "false down",
    "missed_recoveries": "missed recoveries",
    "stuck": "stuck",
    "duplicate_notices": "duplicate notices",
    "missing_notices": "missing notices",
    "check_now_wrong": "wrong check-now",
    "apply_wrong": "wrong apply",
    "saturation_wrong": "wrong saturation",
    "split_flows": "split flow incidents",
    "report_pages": "report pages",
}
LATE = {"late_recoveries": "late recoveries", "check_now_late": "late check-now"}


@dataclass
class Figures:
    outages: int = 0  # truthful outages long enough to be confirmed
    blips: int = 0  # shorter ones: an incident allowed, not required
    false_down: list[str] = field(default_factory=list)
    missed_recoveries: list[str] = field(default_factory=list)  # never closed
    late_recoveries: list[str] = field(default_factory=list)  # closed past recover_bound
    stuck: list[str] = field(default_factory=list)
    duplicate_notices: list[str] = field(default_factory=list)
    missing_notices: list[str] = field(default_factory=list)
    detection_s: list[float] = field(default_factory=list)
    # outages starting near an agent restart: printed, out of the p99
    detection_near_restart_s: list[float] = field(default_factory=list)
    detection_p99_s: float = 0.0
    detect_bound_s: float = 0.0
    near_restart_bound_s: float = 0.0
    # created and checked at once: seconds from the create to each country's first result
    check_now_s: list[float] = field(default_factory=list)
    check_now_bound_s: float = 0.0
    check_now_wrong: list[str] = field(default_factory=list)
    check_now_late: list[str] = field(default_factory=list)  # right, but past its bound
    applies: int = 0
    apply_wrong: list[str] = field(default_factory=list)
    saturated_rounds: int = 0  # the noisy organization's rounds recorded `saturated`
    preempted_rounds: int = 0  # and those whose check was cancelled for our share (`preempted`)
    ours_saturated: int = 0
    saturation_wrong: list[str] = field(default_factory=list)
    # one mail-flow problem, one page: monitors' incidents, the flow incidents they made and
    # the opening notices per channel (as many as flow incidents told, not monitors)
    monitor_incidents: int = 0
    flow_incidents: int = 0
    pages: dict[str, int] = field(default_factory=dict)
    # incidents that joined a flow incident another target's outage opened; those that opened
    # their own while a related one was open, or a joint outage told as more than one
    joins: int = 0
    split_flows: list[str] = field(default_factory=list)
    joint_flows: list[int] = field(default_factory=list)  # flow incidents per joint outage
    # report bursts during an open flow incident: evidence rows attached, notices sent instead
    report_bursts: int = 0
    reports_attached: int = 0
    report_pages: list[str] = field(default_factory=list)

    def misses(self) -> list[str]:
        """Every target missed: the verdicts (`wrong`) and the bounds in seconds (`late`)."""
        return self.wrong() + self.late()

    def wrong(self) -> list[str]:
        """The verdicts held against the truth that are wrong, whatever the machine's speed."""
        return [f"{label} {len(items)}" for label, items in self._counted(WRONG)]

    def late(self) -> list[str]:
        """The timing targets missed: seconds past a bound the rules promise (`make soak`'s)."""
        found = [f"{label} {len(items)}" for label, items in self._counted(LATE)]
        if self.detection_p99_s > self.detect_bound_s:
            found.append(
                f"detection p99 {self.detection_p99_s:.1f} s > {self.detect_bound_s:.1f} s"
            )
        slowest = max(self.detection_near_restart_s, default=0.0)
        if slowest > self.near_restart_bound_s:
            found.append(
                f"detection next to a restart {slowest:.1f} s > {self.near_restart_bound_s:.1f} s"
            )
        return found

    def findings(self) -> list[tuple[str, list[str]]]:
        """Each list of what went wrong (`WRONG`, then `LATE`) by its field's name, with its
        lines."""
        return [(name, getattr(self, name)) for name in (*WRONG, *LATE)]

    def _counted(self, labels: Mapping[str, str]) -> list[tuple[str, list[str]]]:
        """The lists of `labels` that hold a line, each by its label."""
        return [(label, items) for name, label in labels.items() if (items := getattr(self, name))]


def _failing_spans(facts: Iterable[Fact], end: float) -> list[Span]:
    """Spans of `failing` True of one (kind, target, country) stream, overlapping facts merged
    (a fact repeated changes nothing)."""
    spans: list[Span] = []
    since: float | None = None
    for f in sorted(facts, key=lambda f: f.at):
        if f.failing and since is None:
            since = f.at
        elif not f.failing and since is not None:
            spans.append(Span(since, f.at))
            since = None
    if since is not None:
        spans.append(Span(since, end))
    return spans


def _inside(spans: Sequence[Span], at: float) -> bool:
    return any(s.start <= at < s.end for s in spans)


def down_spans(
    facts: Sequence[Fact], target: str, rules: Rules, end: float, *, owed: bool = False
) -> list[Span]:
    """When `target` was down by the rule: more than the threshold of its countries failing, a
    country without an agent counting as not failing. Adjacent spans are merged. `owed`: when
    it was down for sure, a saturated country (`busy`) counting as not failing too: its rounds
    may be `missed` / `saturated`, and a missed country is not a failing one."""
    server = _failing_spans([f for f in facts if f.kind == "server" and f.target == target], end)
    path = {
        cc: _failing_spans(
            [f for f in facts if f.kind == "path" and f.target == target and f.country == cc], end
        )
        for cc in rules.countries
    }
    kinds = ("agent", "busy") if owed else ("agent",)
    gone = {
        cc: [
            s
            for kind in kinds
            for s in _failing_spans([f for f in facts if f.kind == kind and f.country == cc], end)
        ]
        for cc in rules.countries
    }
    edges = sorted(
        {0.0, end}
        | {t for s in server for t in (s.start, s.end)}
        | {t for spans in (*path.values(), *gone.values()) for s in spans for t in (s.start, s.end)}
    )
    spans: list[Span] = []
    for start, stop in itertools.pairwise(edges):
        failing = sum(
            1
            for cc in rules.countries
            if not _inside(gone[cc], start) and (_inside(server, start) or _inside(path[cc], start))
        )
        if failing / len(rules.countries) > rules.failure_threshold:
            if spans and spans[-1].end == start:
                spans[-1] = Span(spans[-1].start, stop)
            else:
                spans.append(Span(start, stop))
    return spans


def merged(spans: Sequence[Span], gap: float) -> list[Span]:
    """`spans` with those less than `gap` apart joined: an agent gone mid-outage splits the
    truth into pieces of one outage. Its incident may stay open or, when rounds with that
    country missed and the other failing (`degraded`, passing) close it, one per piece."""
    out: list[Span] = []
    for s in spans:
        if out and s.start - out[-1].end < gap:
            out[-1] = Span(out[-1].start, s.end)
        else:
            out.append(s)
    return out


def agent_gaps(facts: Sequence[Fact], rules: Rules, end: float) -> list[Span]:
    """When some country's agent, the controller or NATS was gone."""
    gone = [f for f in facts if f.kind == "agent"]
    away = _failing_spans([f for f in facts if f.kind == "away"], end)
    return sorted(
        [
            *away,
            *(
                s
                for cc in rules.countries
                for s in _failing_spans([f for f in gone if f.country == cc], end)
            ),
        ],
        key=lambda s: s.start,
    )


def ran_from(away: Sequence[Span], due: float) -> float:
    """When a round due at `due` ran at the earliest. An incident starts at its first failing
    round's due time, but a round due while the controller or NATS was away is scheduled and
    run once they are back, still bearing that time: it saw the server as it was then."""
    return next((g.end for g in away if g.start <= due < g.end), due)


def _touches(gaps: Sequence[Span], start: float, stop: float) -> bool:
    return any(g.start < stop and g.end > start for g in gaps)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def _explains(spans: Sequence[Span], at: float, after: float) -> bool:
    """Whether a truthful outage covers `at`, give or take the slack before and `after` after."""
    return any(s.start - SLACK_S <= at <= s.end + after for s in spans)


def judge(
    facts: Sequence[Fact],
    observed: Observed,
    targets: Sequence[str],
    rules: Rules,
    end: float,
    per_target: Mapping[str, Rules] | None = None,
    related: Mapping[str, frozenset[str]] | None = None,
) -> Figures:
    """Every verdict, incident and notice of `targets` against the truth up to `end` (the run's
    end, after a quiet spell long enough for every outage to be over and recovered); a target in
    `per_target` by its own rules (a longer timeout, login turns), its detection figures less
    what its bound adds to `rules`'; `related[t]`: the targets whose outages are one mail-flow
    problem with `t`'s (shared server, declared dependencies)."""
    fig = Figures(
        detect_bound_s=rules.detect_bound, near_restart_bound_s=rules.detect_bound + rules.held
    )
    gaps = agent_gaps(facts, rules, end)
    away = _failing_spans([f for f in facts if f.kind == "away"], end)
    # what may have a country's rounds missed mid-outage: a restart, a saturated country
    splits = sorted(
        [*away, *_failing_spans([f for f in facts if f.kind == "busy"], end)],
        key=lambda s: s.start,
    )
    for target in targets:
        own = (per_target or {}).get(target, rules)
        pieces = down_spans(facts, target, own, end)
        truth = merged(pieces, own.recover_bound)
        # each incident from when its first failing round ran at the earliest
        mine = sorted(
            (
                replace(i, started_at=ran_from(away, i.started_at))
                for i in observed.incidents
                if i.target == target
            ),
            key=lambda i: i.started_at,
        )
        # its own notices, and its flow incidents' (queued under any of their monitors)
        flows = {i.flow for i in mine if i.flow is not None}
        notices = [
            n
            for n in observed.notices
            if n.target == target or (n.flow is not None and n.flow in flows)
        ]
        seen = Figures()
        owed = merged(down_spans(facts, target, own, end, owed=True), own.recover_bound)
        _judge_incidents(
            seen, target, truth, pieces, (gaps, splits), mine, notices, own, end, owed=owed
        )
        _judge_states(seen, target, truth, observed, own)
        _add(fig, seen, own.detect_bound - rules.detect_bound)
    fig.detection_p99_s = percentile(fig.detection_s, 99)
    _judge_flows(fig, observed, targets)
    _judge_joins(fig, observed, targets, related or {})
    latency = max((r.recover_bound for r in (per_target or {}).values()), default=0.0)
    _judge_reports(fig, observed, max(latency, rules.recover_bound))
    _judge_created(fig, observed.created, per_target or {}, rules)
    _judge_applied(fig, observed.applied)
    if observed.saturation is not None:
        _judge_saturation(fig, observed.saturation)
    return fig


def _kind(n: Notice) -> str:
    """A flow incident's change notice (queued as `down`) is `changed`: no second page."""
    return "changed" if n.kind == "down" and not n.opening else n.kind


def _told(inc: Incident, notices: Sequence[Notice]) -> list[Notice]:
    """The notices that told of `inc`: its own, or its flow incident's (the opening, changes
    and end, queued under whichever of its monitors)."""
    if inc.flow is None:
        return [n for n in notices if n.incident_id == inc.id]
    return [n for n in notices if n.flow == inc.flow]


def _judge_flows(fig: Figures, observed: Observed, targets: Sequence[str]) -> None:
    """Notices per channel count flow incidents, not monitors: each flow incident told at all
    has exactly one opening notice per channel."""
    mine = [i for i in observed.incidents if i.target in targets]
    fig.monitor_incidents = len(mine)
    flows = {i.flow for i in mine if i.flow is not None}
    fig.flow_incidents = len(flows)
    for flow in sorted(flows):
        openings = [n for n in observed.notices if n.flow == flow and n.opening]
        per_channel: dict[str, int] = {}
        for n in openings:
            per_channel[n.channel] = per_channel.get(n.channel, 0) + 1
            fig.pages[n.channel] = fig.pages.get(n.channel, 0) + 1
        for channel, count in per_channel.items():
            if count > 1:
                fig.duplicate_notices.append(
                    f"flow incident {flow}: {count} opening notices on {channel}"
                )


def _judge_joins(
    fig: Figures,
    observed: Observed,
    targets: Sequence[str],
    related: Mapping[str, frozenset[str]],
) -> None:
    """An incident that opened a flow incident of its own must not have had a related target's
    incident open then (by more than SLACK_S either side); a joint outage's incidents are one
    flow incident."""
    mine = sorted(
        (i for i in observed.incidents if i.target in targets and i.flow is not None),
        key=lambda i: (i.opened_at, i.id),
    )
    first: dict[int | None, Incident] = {}
    for i in mine:
        first.setdefault(i.flow, i)
    for b in mine:
        opener = first[b.flow]
        if opener is not b:
            fig.joins += opener.target != b.target
            continue
        for a in mine:
            if a.target not in related.get(b.target, frozenset()):
                continue
            if a.opened_at < b.opened_at - SLACK_S and _ends(a) > b.opened_at + SLACK_S:
                fig.split_flows.append(
                    f"{b.target}: incident {b.id} opened flow incident {b.flow} while"
                    f" {a.target}'s incident {a.id} (flow incident {a.flow}) was open"
                )
                break
    for j in observed.joints:
        joint = [
            i for i in mine if i.target in j.targets and j.at - SLACK_S <= i.started_at <= j.end
        ]
        fig.joint_flows.append(len({i.flow for i in joint}))
        # Open together, they cannot both have opened a flow incident of their own (one may
        # join an older one another related outage opened; a restart may close both and open
        # both again: two problems in turn).
        for a, b in itertools.combinations(joint, 2):
            together = min(_ends(a), _ends(b)) - max(a.opened_at, b.opened_at)
            both = first[a.flow] is a and first[b.flow] is b
            if a.target != b.target and both and together > SLACK_S:
                fig.split_flows.append(
                    f"joint outage of {', '.join(j.targets)}: {a.target}'s incident {a.id} and"
                    f" {b.target}'s {b.id}, open together, each opened a flow incident"
                    f" ({a.flow}, {b.flow})"
                )


def _ends(i: Incident) -> float:
    return math.inf if i.ended_at is None else i.ended_at


def _judge_reports(fig: Figures, observed: Observed, latency: float) -> None:
    """A burst of reports while a flow incident is open (from before it to after it, SLACK_S
    either side) is evidence: at least one row attached to a flow incident open then, no report
    notice queued meanwhile. An incident's `ended_at` is its outage's end, its close up to
    `latency` later (the recovery's rounds): the evidence may go to any flow incident that was
    still open as stored (the oldest of them)."""
    for b in observed.bursts:
        certainly = {
            i.flow
            for i in observed.incidents
            if i.flow is not None
            and i.opened_at <= b.at - SLACK_S
            and (math.inf if i.flow_ended_at is None else i.flow_ended_at) >= b.end + SLACK_S
        }
        if not certainly:
            continue
        possibly = {
            i.flow
            for i in observed.incidents
            if i.flow is not None
            and i.opened_at <= b.end + SLACK_S
            and (math.inf if i.flow_ended_at is None else i.flow_ended_at) + latency >= b.at
        }
        fig.report_bursts += 1
        if b.accepted < b.posted:
            fig.report_pages.append(f"burst at {b.at:.0f}: {b.accepted} of {b.posted} accepted")
        window = (b.at - SLACK_S, b.end + SLACK_S)
        attached = [
            e
            for e in observed.evidence
            if e.source == "report" and window[0] <= e.at <= window[1] and e.flow in possibly
        ]
        fig.reports_attached += len(attached)
        if not attached:
            fig.report_pages.append(f"burst at {b.at:.0f}: no evidence attached")
        paged = [
            n for n in observed.notices if n.source == "report" and window[0] <= n.at <= window[1]
        ]
        if paged:
            fig.report_pages.append(f"burst at {b.at:.0f}: {len(paged)} report notices queued")


def _add(fig: Figures, seen: Figures, extra_s: float) -> None:
    """`seen` (one target's figures) into `fig`, detection less `extra_s`."""
    fig.outages += seen.outages
    fig.blips += seen.blips
    for name, items in seen.findings():
        getattr(fig, name).extend(items)
    fig.detection_s += [d - extra_s for d in seen.detection_s]
    fig.detection_near_restart_s += [d - extra_s for d in seen.detection_near_restart_s]


def _judge_created(
    fig: Figures, created: Sequence[Created], per_target: Mapping[str, Rules], rules: Rules
) -> None:
    """Check-now right after a create: a 202, and in every country a round at once (within a
    round's time and the slack) that saw the server up, as it was."""
    fig.check_now_bound_s = rules.round_s + SLACK_S
    for c in created:
        own = per_target.get(c.target, rules)
        extra = own.round_s - rules.round_s
        if c.trigger_status != 202:
            fig.check_now_wrong.append(f"{c.target}: check-now answered {c.trigger_status}")
        for cc in own.countries:
            if cc not in c.first:
                fig.check_now_wrong.append(f"{c.target}: no result from {cc}")
                continue
            at, status = c.first[cc]
            fig.check_now_s.append(at - c.at - extra)
            if status != "up":
                fig.check_now_wrong.append(f"{c.target}: first round in {cc} {status}")
            elif at - c.at - extra > fig.check_now_bound_s:
                fig.check_now_late.append(
                    f"{c.target}: first round in {cc} {at - c.at:.1f} s after the create"
                )


# what `apply` prints last: (created, updated, deleted)
APPLY_SUMMARY = "{} created, {} updated, 0 deleted"


def _judge_applied(fig: Figures, applied: Sequence[Applied]) -> None:
    """An unchanged export applies as no change: nothing written, no confirmation lost; one with
    a timeout changed updates that monitor alone."""
    for a in applied:
        fig.applies += 1
        label = f"apply at {a.at:.1f}" + (
            f" ({a.changed_target}'s timeout changed)" if a.changed_target else " (unchanged)"
        )
        wanted_rows = (a.changed_target,) if a.changed_target else ()
        summary = APPLY_SUMMARY.format(0, len(wanted_rows))
        if a.exit_code != 0 or not a.summary.endswith(summary):
            fig.apply_wrong.append(f"{label}: exit {a.exit_code}, {a.summary!r}")
        if tuple(sorted(a.rows_changed)) != wanted_rows:
            fig.apply_wrong.append(f"{label}: rows changed {sorted(a.rows_changed)}")
        if a.confirmations_lost:
            fig.apply_wrong.append(f"{label}: confirmations lost {sorted(a.confirmations_lost)}")


def _judge_saturation(fig: Figures, s: Saturation) -> None:
    """The tarpit never greets: its monitors' rounds that ran are failures, those that found no
    slot `missed` / `saturated`, those cut short for another's share `missed` / `preempted`;
    never `up`, and a preempted check never a failure. The country must have been saturated."""
    fig.saturated_rounds = s.noisy.get(("missed", "saturated"), 0)
    fig.preempted_rounds = s.noisy.get(("missed", "preempted"), 0)
    fig.ours_saturated = s.ours_saturated
    ups = s.noisy.get(("up", ""), 0)
    if ups:
        fig.saturation_wrong.append(f"the tarpit's monitors up {ups} times")
    judged = sum(n for (status, kind), n in s.noisy.items() if kind == "preempted")
    if judged != fig.preempted_rounds:
        fig.saturation_wrong.append(f"a preempted check judged, not missed: {s.noisy}")
    if not fig.saturated_rounds + fig.preempted_rounds:
        fig.saturation_wrong.append(f"no round of the tarpit's monitors saturated: {s.noisy}")


def _judge_incidents(
    fig: Figures,
    target: str,
    truth: Sequence[Span],
    pieces: Sequence[Span],
    gaps_and_splits: tuple[Sequence[Span], Sequence[Span]],
    incidents: Sequence[Incident],
    notices: Sequence[Notice],
    rules: Rules,
    end: float,
    *,
    owed: Sequence[Span] = (),
) -> None:
    """`gaps`: agents, the controller or NATS away; `splits`: the controller or NATS away, or
    a country saturated; `owed`: the truth where it is down for sure (`down_spans`)."""
    gaps, splits = gaps_and_splits
    for inc in incidents:
        label = f"{target} incident {inc.id} started {inc.started_at:.1f}"
        if not _explains(truth, inc.started_at, 0.0):
            fig.false_down.append(f"{label}: no outage then")
        told = _told(inc, notices)
        ended = inc.ended_at if inc.flow is None else inc.flow_ended_at
        kinds = [_kind(n) for n in told if n.channel == "email"]
        for kind, wanted in (("down", 1), ("recovered", 0 if ended is None else 1)):
            count = kinds.count(kind)
            if count > wanted:
                fig.duplicate_notices.append(f"{label}: {count} {kind} notices")
            elif count < wanted:
                fig.missing_notices.append(f"{label}: no {kind} notice")
    held = rules.held
    for n, span in enumerate(truth):
        following = truth[n + 1].start if n + 1 < len(truth) else end
        during = [i for i in incidents if span.start - SLACK_S <= i.started_at <= span.end]
        label = f"{target} outage {span.start:.1f}-{span.end:.1f} ({span.length:.0f} s)"
        # what of it is owed an incident and timed: its longest part not in a saturated
        # country's spell (where a missed round and a failing one are `degraded`)
        sure = max(
            (
                Span(max(o.start, span.start), min(o.end, span.end))
                for o in owed
                if o.start < span.end and o.end > span.start
            ),
            key=lambda s: s.length,
            default=Span(span.start, span.start),
        )
        # next to a restart a country's round may be lost (a dead replica's waiting jobs, a
        # deferred login NATS could not take): failing with the other country missed is
        # `degraded`, which breaks the streak, so an incident is owed only past that bound
        near = _touches(gaps, sure.start - held, sure.start + rules.confirm_bound)
        # an agent gone mid-outage: its country missed and the other failing is `degraded`,
        # a passing round, so each piece of the truth may have its incident; so may a
        # country's rounds missed to a restart (`expired`) or to saturation (`saturated`):
        # each such spell may split the outage once more
        if len(during) > sum(span.start <= x.start < span.end for x in pieces) + sum(
            _touches([g], span.start, span.end) for g in splits
        ):
            fig.duplicate_notices.append(f"{label}: {len(during)} incidents")
        if sure.length < rules.confirm_bound + (rules.held if near else 0.0):
            fig.blips += 1
        else:
            fig.outages += 1
            if not during:
                fig.missing_notices.append(f"{label}: no incident")
            downs = [
                x.at
                for i in during
                for x in _told(i, notices)
                # a flow incident's notices before this monitor's incident told of others
                if x.kind == "down" and (i.flow is None or x.at >= i.opened_at - SLACK_S)
            ]
            # a round waiting on a gone agent's country is judged once it closes: detection
            # and recovery near an agent restart may take a round's closing longer
            # a down notice before the part owed one (found while its country was saturated)
            # was there already when it came to be owed
            if downs and near:
                fig.detection_near_restart_s.append(max(0.0, min(downs) - sure.start))
            elif downs:
                fig.detection_s.append(max(0.0, min(downs) - sure.start))
        owed_by = span.end + rules.recover_bound
        if _touches(gaps, span.end - held, owed_by):
            owed_by += held
        if following < owed_by:
            continue  # the next outage came too soon for a recovery to be owed
        for inc in during:
            if inc.ended_at is None:
                fig.missed_recoveries.append(f"{label}: incident {inc.id} never closed")
            elif inc.ended_at > owed_by:
                fig.late_recoveries.append(
                    f"{label}: incident {inc.id} closed {inc.ended_at - span.end:.0f} s after"
                )


def _judge_states(
    fig: Figures, target: str, truth: Sequence[Span], observed: Observed, rules: Rules
) -> None:
    # a `down` state with an incident open stands until the incident closes, `recover_after`
    # passing rounds after the outage (controller/alerting/rules.py), a round's closing more
    # next to a restart
    linger = rules.recover_bound + rules.held
    false = [at for at, state in observed.states.get(target, []) if state == "down"]
    false = [at for at in false if not _explains(truth, at, linger)]
    if false:
        fig.false_down.append(
            f"{target}: state down with no outage, {len(false)} samples from {false[0]:.1f}"
        )
    final = observed.final_states.get(target, "absent")
    if final != "up":
        fig.stuck.append(f"{target}: state {final} at the end")
    still_open = [i.id for i in observed.incidents if i.target == target and i.ended_at is None]
    if still_open:
        fig.stuck.append(f"{target}: incident {still_open} open at the end")
