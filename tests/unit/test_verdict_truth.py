"""The verdict campaign's truth and judge (testkit.campaigns.verdict_truth) and its histories
(testkit.campaigns.verdict_history), as tables: what the harness did → when the rules say a monitor
is down, and what the product said → which figures count it as wrong."""

import pytest

from testkit.campaigns.verdict_history import EVENTS, OWNERS, Shape, draw
from testkit.campaigns.verdict_truth import (
    Applied,
    Burst,
    Created,
    Evidence,
    Fact,
    Incident,
    Joint,
    Notice,
    Observed,
    Rules,
    Saturation,
    Span,
    down_spans,
    judge,
    percentile,
)

RULES = Rules(interval=10, timeout=4, countries=("DE", "US"))
END = 1000.0


def server(at: float, failing: bool) -> Fact:
    return Fact(at, "server", "t", None, failing)


def path(at: float, cc: str, failing: bool) -> Fact:
    return Fact(at, "path", "t", cc, failing)


def agent(at: float, cc: str, gone: bool) -> Fact:
    return Fact(at, "agent", "", cc, gone)


@pytest.mark.parametrize(
    ("facts", "spans"),
    [
        ([], []),
        ([server(100, True), server(160, False)], [Span(100, 160)]),
        # one country of two failing is degraded: never down
        ([path(100, "DE", True), path(160, "DE", False)], []),
        # both countries' paths dropped: down while both are
        (
            [path(100, "DE", True), path(110, "US", True), path(150, "DE", False)],
            [Span(110, 150)],
        ),
        # a country without an agent counts as not failing
        (
            [
                server(100, True),
                agent(120, "DE", True),
                agent(125, "DE", False),
                server(160, False),
            ],
            [Span(100, 120), Span(125, 160)],
        ),
        # never undone: down to the end
        ([server(100, True)], [Span(100, END)]),
        # a repeated fact changes nothing
        ([server(100, True), server(110, True), server(160, False)], [Span(100, 160)]),
    ],
)
def test_the_truth_is_down_only_when_more_than_the_threshold_of_live_countries_fail(
    facts: list[Fact], spans: list[Span]
) -> None:
    assert down_spans(facts, "t", RULES, END) == spans


OUTAGE = [server(100, True), server(160, False)]
GOOD_INCIDENT = Incident(1, "t", 105, 115, 170)
GOOD_NOTICES = [Notice("t", 1, "down", 115), Notice("t", 1, "recovered", 180)]


def observed(
    incidents: list[Incident],
    notices: list[Notice],
    states: list[tuple[float, str]] | None = None,
    final: str = "up",
) -> Observed:
    return Observed({"t": states or []}, incidents, notices, {"t": final})


@pytest.mark.parametrize(
    ("facts", "seen", "bad"),
    [
        # the outage found, notified once each way, recovered: nothing wrong
        (OUTAGE, observed([GOOD_INCIDENT], GOOD_NOTICES), {}),
        # an incident with no outage
        ([], observed([GOOD_INCIDENT], GOOD_NOTICES), {"false_down": 1}),
        # a down state far from any outage
        (OUTAGE, observed([GOOD_INCIDENT], GOOD_NOTICES, [(500, "down")]), {"false_down": 1}),
        # down until a passing round lands after the outage: not false
        (OUTAGE, observed([GOOD_INCIDENT], GOOD_NOTICES, [(170, "down")]), {}),
        # one country's drop: any incident is false
        (
            [path(100, "DE", True), path(160, "DE", False)],
            observed([GOOD_INCIDENT], GOOD_NOTICES),
            {"false_down": 1},
        ),
        # never closed: a missed recovery, and stuck at the end
        (
            OUTAGE,
            observed([Incident(1, "t", 105, 115, None)], GOOD_NOTICES[:1], final="down"),
            {"missed_recoveries": 1, "stuck": 2},
        ),
        # closed much later than two rounds after the outage: late, a timing target
        (
            OUTAGE,
            observed([Incident(1, "t", 105, 115, 400)], GOOD_NOTICES),
            {"late_recoveries": 1},
        ),
        # two down notices for one incident
        (
            OUTAGE,
            observed([GOOD_INCIDENT], [*GOOD_NOTICES, Notice("t", 1, "down", 116)]),
            {"duplicate_notices": 1},
        ),
        # no recovered notice
        (OUTAGE, observed([GOOD_INCIDENT], GOOD_NOTICES[:1]), {"missing_notices": 1}),
        # an outage long enough for confirmation, and no incident
        (OUTAGE, observed([], []), {"missing_notices": 1}),
        # one outage, two incidents (it flapped)
        (
            OUTAGE,
            observed(
                [Incident(1, "t", 105, 115, 130), Incident(2, "t", 135, 140, 170)],
                [*GOOD_NOTICES, Notice("t", 2, "down", 140), Notice("t", 2, "recovered", 180)],
            ),
            {"duplicate_notices": 1},
        ),
        # a blip shorter than confirmation: an incident allowed, none owed
        ([server(100, True), server(102, False)], observed([], []), {}),
        (
            [server(100, True), server(102, False)],
            observed([Incident(1, "t", 100, 104, 110)], GOOD_NOTICES),
            {},
        ),
        # an agent gone mid-outage: still one outage, one incident
        (
            [*OUTAGE, agent(120, "DE", True), agent(125, "DE", False)],
            observed([GOOD_INCIDENT], GOOD_NOTICES),
            {},
        ),
        # a round due while the controller was away (93-99) runs once it is back, after the
        # outage began at 100, bearing its due time 94.5: its incident is the outage's (seed 3)
        (
            [*OUTAGE, Fact(93, "away", "", None, True), Fact(99, "away", "", None, False)],
            observed([Incident(1, "t", 94.5, 113, 170)], GOOD_NOTICES),
            {},
        ),
        # ... but one due as long before the outage with nobody away has no outage to explain it
        (
            OUTAGE,
            observed([Incident(1, "t", 94.5, 113, 170)], GOOD_NOTICES),
            {"false_down": 1, "missing_notices": 1},
        ),
    ],
)
def test_the_judge_counts_each_verdict_against_the_truth(
    facts: list[Fact], seen: Observed, bad: dict[str, int]
) -> None:
    fig = judge(facts, seen, ["t"], RULES, END)
    found = {name: len(items) for name, items in fig.findings() if items}
    assert found == bad
    assert (fig.misses() == []) == (bad == {})
    assert (fig.wrong() == []) == (set(bad) <= {"late_recoveries"})


def test_detection_is_outage_start_to_down_notice_and_its_p99_has_a_bound() -> None:
    slow = [Notice("t", 1, "down", 130), Notice("t", 1, "recovered", 180)]
    fig = judge(OUTAGE, observed([GOOD_INCIDENT], slow), ["t"], RULES, END)
    assert fig.detection_s == [30]
    assert fig.detect_bound_s == 10 + 2 * 4 + 5
    assert fig.misses() == ["detection p99 30.0 s > 23.0 s"]
    assert fig.wrong() == []  # a bound in seconds: make soak's, not make test's


@pytest.mark.parametrize(
    ("values", "p99"), [([], 0.0), ([3.0], 3.0), ([float(n) for n in range(1, 201)], 198.0)]
)
def test_percentile(values: list[float], p99: float) -> None:
    assert percentile(values, 99) == p99


def test_a_seed_draws_the_same_history_and_every_fault_is_undone() -> None:
    shape = Shape(interval=10, timeout=4, minutes=6)
    history = draw(7, ["a", "b"], ("DE", "US"), shape)
    assert history == draw(7, ["a", "b"], ("DE", "US"), shape)
    assert history != draw(8, ["a", "b"], ("DE", "US"), shape)
    for on, off in (("kill", "start"), ("freeze", "thaw"), ("drop", "undrop")):
        for target in ("a", "b"):
            ons = [s for s in history if s.action == on and s.target == target]
            offs = [s for s in history if s.action == off and s.target == target]
            assert len(ons) == len(offs)
            assert all(a.at < b.at for a, b in zip(ons, offs, strict=True))
    assert all(s.at <= 6 * 60 for s in history)


def test_an_outage_starting_while_the_controller_is_away_is_timed_apart() -> None:
    away = [Fact(95, "away", "", None, True), Fact(100, "away", "", None, False)]
    slow = [Notice("t", 1, "down", 130), Notice("t", 1, "recovered", 180)]
    fig = judge([*OUTAGE, *away], observed([GOOD_INCIDENT], slow), ["t"], RULES, END)
    assert down_spans([*OUTAGE, *away], "t", RULES, END) == [Span(100, 160)]
    assert (fig.detection_s, fig.detection_near_restart_s) == ([], [30])
    assert fig.misses() == []


def test_a_credentialed_target_is_judged_by_its_login_turns_and_timed_against_the_base() -> None:
    slow = Rules(interval=10, timeout=4, countries=("DE", "US"), login_spacing=5)
    assert slow.detect_bound == 10 + 2 * (4 + 5) + 5
    late = [Notice("t", 1, "down", 130), Notice("t", 1, "recovered", 190)]
    seen = observed([Incident(1, "t", 105, 125, 185)], late)
    assert judge(OUTAGE, seen, ["t"], RULES, END).missed_recoveries == []
    fig = judge(OUTAGE, seen, ["t"], RULES, END, {"t": slow})
    assert fig.detection_s == [30 - 10]  # less the 2 login turns its bound adds
    assert fig.misses() == []


def created(trigger: int, first: dict[str, tuple[float, str]]) -> Observed:
    seen = observed([], [])
    seen.created.append(Created("t", 100, trigger, first))
    return seen


@pytest.mark.parametrize(
    ("seen", "wrong", "late"),
    [
        (created(202, {"DE": (101.5, "up"), "US": (102, "up")}), 0, 0),
        (created(429, {"DE": (101.5, "up"), "US": (102, "up")}), 1, 0),
        # a country that never checked, or only a round later
        (created(202, {"DE": (101.5, "up")}), 1, 0),
        (created(202, {"DE": (101.5, "up"), "US": (111, "up")}), 0, 1),
        # the server was up: a first round that saw anything else is wrong
        (created(202, {"DE": (101.5, "down"), "US": (102, "missed")}), 2, 0),
    ],
)
def test_check_now_after_create_is_a_round_at_once_in_every_country(
    seen: Observed, wrong: int, late: int
) -> None:
    fig = judge([], seen, ["t"], RULES, END)
    assert (len(fig.check_now_wrong), len(fig.check_now_late)) == (wrong, late)
    assert fig.check_now_bound_s == 4 + 5


@pytest.mark.parametrize(
    ("applied", "wrong"),
    [
        (Applied(1, "", 0, "f.yaml: 0 created, 0 updated, 0 deleted", (), ()), 0),
        (Applied(1, "t", 0, "f.yaml: 0 created, 1 updated, 0 deleted", ("t",), ()), 0),
        # an unchanged file that wrote a row, or lost a round trip's confirmation
        (Applied(1, "", 0, "f.yaml: 0 created, 0 updated, 0 deleted", ("t",), ()), 1),
        (Applied(1, "", 0, "f.yaml: 0 created, 0 updated, 0 deleted", (), ("rt",)), 1),
        (Applied(1, "", 0, "f.yaml: 0 created, 1 updated, 0 deleted", (), ()), 1),
        # a changed timeout that touched another monitor too, or was refused
        (Applied(1, "t", 0, "f.yaml: 0 created, 1 updated, 0 deleted", ("t", "u"), ()), 1),
        (Applied(1, "t", 1, "f.yaml: 0 created, 1 updated, 0 deleted", ("t",), ()), 1),
    ],
)
def test_apply_of_an_export_changes_nothing_and_of_a_changed_file_only_that(
    applied: Applied, wrong: int
) -> None:
    seen = observed([], [])
    seen.applied.append(applied)
    assert len(judge([], seen, ["t"], RULES, END).apply_wrong) == wrong


@pytest.mark.parametrize(
    ("noisy", "wrong"),
    [
        ({("down", "timeout"): 5, ("missed", "saturated"): 20}, 0),
        ({("down", "timeout"): 5}, 1),  # the country never saturated: nothing tested
        ({("up", ""): 1, ("missed", "saturated"): 20}, 1),  # a tarpit is never up
        ({("down", "timeout"): 5, ("missed", "preempted"): 3}, 0),  # its checks cut short
        ({("missed", "preempted"): 3, ("down", "preempted"): 1}, 1),  # judged: never
    ],
)
def test_a_tarpit_organization_is_never_up_and_did_saturate(
    noisy: dict[tuple[str, str], int], wrong: int
) -> None:
    seen = observed([], [])
    seen.saturation = Saturation(noisy, 0)
    assert len(judge([], seen, ["t"], RULES, END).saturation_wrong) == wrong


def test_an_owners_step_is_moved_past_a_restart() -> None:
    shape = Shape(interval=10, timeout=4, minutes=6, restarts=("controller",), events=EVENTS)
    for seed in range(20):
        history = draw(seed, ["a"], ("DE", "US"), shape, created=("b",))
        kills = [s.at for s in history if s.action == "controller_kill"]
        starts = [s.at for s in history if s.action == "controller_start"]
        for step in history:
            if step.action in OWNERS:
                assert not any(
                    k - 12 <= step.at < s + 10 for k, s in zip(kills, starts, strict=True)
                )
        assert [s.action for s in history].count("create") == 1


def test_an_outage_next_to_a_restart_is_owed_an_incident_only_past_the_restart_bound() -> None:
    """A round lost to the restart (one country missed, the other failing) is `degraded`."""
    away = [Fact(95, "away", "", None, True), Fact(100, "away", "", None, False)]
    short = [server(100, True), server(130, False)]
    fig = judge([*short, *away], observed([], []), ["t"], RULES, END)
    assert (fig.outages, fig.blips, fig.misses()) == (0, 1, [])
    fig = judge(short, observed([], []), ["t"], RULES, END)
    assert fig.misses() == ["missing notices 1"]


@pytest.mark.parametrize(
    "spell",
    [
        [Fact(118, "away", "", None, True), Fact(124, "away", "", None, False)],
        [Fact(60, "busy", "", "DE", True), Fact(200, "busy", "", "DE", False)],
    ],
    ids=["restart", "saturated"],
)
def test_a_restart_or_saturation_mid_outage_may_split_it_into_two_incidents_not_three(
    spell: list[Fact],
) -> None:
    """One country's rounds missed (`expired` to a restart, `saturated`) and the other's
    failing are `degraded`: two of them close the incident, the next failing rounds open
    another (seed 5: rt-imap, DE saturated at one round, expired at the next)."""
    two = [Incident(1, "t", 105, 115, 125), Incident(2, "t", 136, 140, 170)]
    notes = [Notice("t", n, k, 0) for n in (1, 2) for k in ("down", "recovered")]
    assert judge([*OUTAGE, *spell], observed(two, notes), ["t"], RULES, END).misses() == []
    assert judge(OUTAGE, observed(two, notes), ["t"], RULES, END).duplicate_notices
    three = [*two, Incident(3, "t", 150, 152, 160)]
    notes += [Notice("t", 3, k, 0) for k in ("down", "recovered")]
    assert judge([*OUTAGE, *spell], observed(three, notes), ["t"], RULES, END).duplicate_notices


def test_an_outage_while_its_country_is_saturated_is_allowed_an_incident_not_owed_one() -> None:
    """A saturated country's rounds may be `missed` / `saturated`: with the other failing they
    are `degraded` (seed 101: imap-oauth2, DE saturated every other round, no incident). Past
    the spell the rest of the outage is owed one, timed from the spell's end."""
    busy = [Fact(50, "busy", "", "DE", True), Fact(200, "busy", "", "DE", False)]
    fig = judge([*OUTAGE, *busy], observed([], []), ["t"], RULES, END)
    assert (fig.outages, fig.blips, fig.misses()) == (0, 1, [])
    fig = judge([*OUTAGE, *busy], observed([GOOD_INCIDENT], GOOD_NOTICES), ["t"], RULES, END)
    assert fig.misses() == []
    early = [Fact(50, "busy", "", "DE", True), Fact(105, "busy", "", "DE", False)]
    late = [Notice("t", 1, "down", 125), Notice("t", 1, "recovered", 180)]
    fig = judge([*OUTAGE, *early], observed([GOOD_INCIDENT], late), ["t"], RULES, END)
    assert (fig.outages, fig.detection_s, fig.misses()) == (1, [20], [])
    assert judge([*OUTAGE, *early], observed([], []), ["t"], RULES, END).missing_notices
    sooner = [Notice("t", 1, "down", 103), Notice("t", 1, "recovered", 180)]
    fig = judge([*OUTAGE, *early], observed([GOOD_INCIDENT], sooner), ["t"], RULES, END)
    assert (fig.detection_s, fig.misses()) == ([0.0], [])


def test_an_agent_gone_mid_outage_may_split_it_into_two_incidents_not_three() -> None:
    """Its country missed and the other failing is `degraded`: passing rounds may close one."""
    split = [*OUTAGE, agent(120, "DE", True), agent(135, "DE", False)]
    two = [Incident(1, "t", 105, 115, 125), Incident(2, "t", 136, 140, 170)]
    notes = [Notice("t", n, k, 0) for n in (1, 2) for k in ("down", "recovered")]
    assert judge(split, observed(two, notes), ["t"], RULES, END).misses() == []
    three = [*two, Incident(3, "t", 150, 152, 160)]
    notes += [Notice("t", 3, k, 0) for k in ("down", "recovered")]
    assert judge(split, observed(three, notes), ["t"], RULES, END).duplicate_notices


SHARED = [Fact(100, "server", t, None, True) for t in ("a", "b")]
SHARED += [Fact(160, "server", t, None, False) for t in ("a", "b")]


def shared(incidents: list[Incident], notices: list[Notice]) -> Observed:
    return Observed({"a": [], "b": []}, incidents, notices, {"a": "up", "b": "up"})


FLOW_INCIDENTS = [
    Incident(1, "a", 105, 115, 170, flow=7, flow_ended_at=175),
    Incident(2, "b", 106, 116, 175, flow=7, flow_ended_at=175),
]


@pytest.mark.parametrize(
    ("notices", "bad"),
    [
        # one page and one recovery for the flow incident, under whichever monitor: right
        (
            [
                Notice("a", 1, "down", 120, 7, "incident:1:down:email"),
                Notice("a", 1, "recovered", 180, 7, "flow:7:end:email:x"),
            ],
            {},
        ),
        # ... a change notice when the second joined is no second page
        (
            [
                Notice("a", 1, "down", 120, 7, "flow:7:down:email:x"),
                Notice("b", 2, "down", 121, 7, "flow:7:changed-1:email:x"),
                Notice("b", 2, "recovered", 180, 7, "flow:7:end:email:x"),
            ],
            {},
        ),
        # a page per monitor: duplicates
        (
            [
                Notice("a", 1, "down", 120, 7, "flow:7:down:email:x"),
                Notice("b", 2, "down", 120, 7, "flow:7:down:email:y"),
                Notice("a", 1, "recovered", 180, 7, "flow:7:end:email:x"),
            ],
            {"duplicate_notices": 3},
        ),
        # no end notice: missing for each monitor's incident
        ([Notice("a", 1, "down", 120, 7, "flow:7:down:email:x")], {"missing_notices": 2}),
    ],
)
def test_notices_count_flow_incidents_not_monitors(
    notices: list[Notice], bad: dict[str, int]
) -> None:
    fig = judge(SHARED, shared(FLOW_INCIDENTS, notices), ["a", "b"], RULES, END)
    found = {name: len(items) for name, items in fig.findings() if items}
    assert found == bad
    assert (fig.monitor_incidents, fig.flow_incidents) == (2, 1)


def test_the_group_wait_is_part_of_the_detection_bound() -> None:
    waiting = Rules(interval=10, timeout=4, countries=("DE", "US"), group_wait=5)
    assert waiting.detect_bound == RULES.detect_bound + 5


RELATED = {"a": frozenset({"b"}), "b": frozenset({"a"})}
APART = [Fact(100, "server", t, None, True) for t in ("a", "b")]
APART += [Fact(200, "server", t, None, False) for t in ("a", "b")]
JOINT = [Joint(100, 200, ("a", "b"))]


def two(b_opened: float, b_flow: int, joints: list[Joint] | None = None) -> Observed:
    """`a`'s incident opening flow incident 7 at 115, `b`'s opening at `b_opened` in `b_flow`."""
    incidents = [
        Incident(1, "a", 105, 115, 210, flow=7, flow_ended_at=215),
        Incident(2, "b", b_opened - 10, b_opened, 215, flow=b_flow, flow_ended_at=215),
    ]
    notices = [
        Notice(i.target, i.id, k, 0, i.flow, f"flow:{i.flow}:{k}:email:x")
        for i in incidents
        for k in ("down", "recovered")
        if i.flow != 7 or i.target == "a"
    ]
    seen = Observed({"a": [], "b": []}, incidents, notices, {"a": "up", "b": "up"})
    seen.joints = joints or []
    return seen


@pytest.mark.parametrize(
    ("seen", "related", "joins", "split", "joint_flows"),
    [
        # related, b opening while a's is open, joining it: one flow incident
        (two(140, 7), RELATED, 1, 0, []),
        # ... opening one of its own: split
        (two(140, 8), RELATED, 0, 1, []),
        # unrelated: a flow incident of its own is right
        (two(140, 8), {}, 0, 0, []),
        # opening within SLACK_S of a's: either is right (which opened first is a race)
        (two(118, 8), RELATED, 0, 0, []),
        # a joint outage is one flow incident, however close the incidents opened
        (two(118, 7, JOINT), RELATED, 1, 0, [1]),
        (two(118, 8, JOINT), RELATED, 0, 1, [2]),
    ],
)
def test_related_outages_join_one_flow_incident(
    seen: Observed,
    related: dict[str, frozenset[str]],
    joins: int,
    split: int,
    joint_flows: list[int],
) -> None:
    fig = judge(APART, seen, ["a", "b"], RULES, END, related=related)
    assert (fig.joins, len(fig.split_flows), fig.joint_flows) == (joins, split, joint_flows)


def test_a_joint_outage_split_by_a_restart_may_be_two_flow_incidents_in_turn() -> None:
    """Both incidents closed together (an agent gone: the other country's failure is only
    `degraded`) and opened again together: two problems in turn, each one flow incident."""
    incidents = [
        Incident(1, "a", 105, 115, 140, flow=7, flow_ended_at=141),
        Incident(2, "b", 106, 116, 141, flow=7, flow_ended_at=141),
        Incident(3, "a", 150, 155, 210, flow=8, flow_ended_at=215),
        Incident(4, "b", 151, 156, 215, flow=8, flow_ended_at=215),
    ]
    notices = [
        Notice(i.target, i.id, k, 0, i.flow, f"flow:{i.flow}:{k}:email:x")
        for i in incidents[::2]
        for k in ("down", "recovered")
    ]
    seen = Observed({"a": [], "b": []}, incidents, notices, {"a": "up", "b": "up"})
    seen.joints = JOINT
    fig = judge(APART, seen, ["a", "b"], RULES, END, related=RELATED)
    assert (fig.joins, fig.split_flows, fig.joint_flows) == (2, [], [2])
    # ... but one incident of each open together in two flow incidents is a split
    seen.incidents = [*incidents[:3], Incident(4, "b", 151, 156, 215, flow=9, flow_ended_at=215)]
    fig = judge(APART, seen, ["a", "b"], RULES, END, related=RELATED)
    assert len(fig.split_flows) == 1


def test_a_joint_target_may_join_an_older_flow_incident_another_relation_opened() -> None:
    """`b` depends on `a` and on `c`: opening while both are open, in flow incidents of their
    own already told, it joins the older, `c`'s. Not a split."""
    incidents = [
        Incident(9, "c", 80, 90, 210, flow=6, flow_ended_at=215),
        Incident(1, "a", 105, 115, 210, flow=7, flow_ended_at=215),
        Incident(2, "b", 106, 118, 215, flow=6, flow_ended_at=215),
    ]
    seen = Observed({"a": [], "b": [], "c": []}, incidents, [], {t: "up" for t in "abc"})
    seen.joints = JOINT
    related = {"a": frozenset("b"), "b": frozenset("ac"), "c": frozenset("b")}
    fig = judge(APART, seen, ["a", "b", "c"], RULES, END, related=related)
    assert (fig.split_flows, fig.joint_flows, fig.joins) == ([], [2], 1)


def bursting(notices: list[Notice], evidence: list[Evidence], accepted: int = 4) -> Observed:
    seen = two(140, 7)
    seen.notices += notices
    seen.evidence = evidence
    seen.bursts = [Burst(150, 152, 4, accepted)]
    return seen


REPORT = Notice("a", None, "finding", 151, source="report")


def bursting_with_closing() -> Observed:
    """A flow incident 5 whose outage ended at 145 (closed up to a recovery later), beside the
    open flow incident 7: the evidence went to 5, the older."""
    seen = bursting([], [Evidence(151, 5, "report")])
    seen.incidents.append(Incident(3, "c", 60, 70, 145, flow=5, flow_ended_at=145))
    return seen


@pytest.mark.parametrize(
    ("seen", "bursts", "attached", "pages"),
    [
        # attached to the open flow incident, nothing sent: right
        (bursting([], [Evidence(151, 7, "report")] * 2), 1, 2, 0),
        # a report notice queued as well
        (bursting([REPORT], [Evidence(151, 7, "report")]), 1, 1, 1),
        # sent instead of attached
        (bursting([REPORT], []), 1, 0, 2),
        # attached to no open one (another flow incident's row)
        (bursting([], [Evidence(151, 9, "report")]), 1, 0, 1),
        # attached to one whose outage was over by then but not yet closed (the recovery's
        # rounds): the oldest open as stored, right
        (bursting_with_closing(), 1, 1, 0),
        # refused by the endpoint
        (bursting([], [Evidence(151, 7, "report")], accepted=3), 1, 1, 1),
    ],
)
def test_a_report_burst_during_an_open_incident_is_its_evidence(
    seen: Observed, bursts: int, attached: int, pages: int
) -> None:
    fig = judge(APART, seen, ["a", "b"], RULES, END, related=RELATED)
    assert (fig.report_bursts, fig.reports_attached, len(fig.report_pages)) == (
        bursts,
        attached,
        pages,
    )


def test_a_burst_with_no_incident_open_is_not_judged_as_one() -> None:
    seen = bursting([REPORT], [])
    seen.bursts = [Burst(500, 502, 4, 4)]
    fig = judge(APART, seen, ["a", "b"], RULES, END, related=RELATED)
    assert (fig.report_bursts, fig.report_pages) == (0, [])


def test_a_joint_outage_comes_first_and_together_with_its_burst_before_its_end() -> None:
    shape = Shape(10, 4, 3, events=("reports",))
    history = draw(
        5, ["s", "rt", "x"], ("DE", "US"), shape, legs=frozenset({"rt"}), joint=("s", "rt")
    )
    first = {t: min(s.at for s in history if s.target == t) for t in ("s", "rt")}
    assert first["s"] == first["rt"]
    down = [s for s in history if s.at == first["s"] and s.target in ("s", "rt")]
    assert {(s.target, s.action, s.leg) for s in down} == {
        ("s", "kill", ""),
        ("rt", "leg_down", "send"),
    }
    back = [s for s in history if s.target in ("s", "rt") and s.action in ("start", "leg_up")]
    end = min(s.at for s in back)
    assert all(s.at == end for s in back[:2])
    assert end - first["s"] >= shape.fault[0]
    (burst,) = [s for s in history if s.action == "report_burst"]
    assert first["s"] + shape.fault[0] - 10 < burst.at < end
    # each joint target's own faults come after the joint outage is over
    later = [s for s in history if s.target in ("s", "rt") and s.at > end]
    assert all(s.at >= end + shape.quiet[0] for s in later)
    # without it, a history is drawn as before
    assert draw(5, ["s", "rt", "x"], ("DE", "US"), shape, legs=frozenset({"rt"})) == draw(
        5, ["s", "rt", "x"], ("DE", "US"), shape, legs=frozenset({"rt"}), joint=()
    )


def test_the_short_campaigns_servers_at_one_address_are_one_server() -> None:
    """Its servers all listen at one address: whatever their ports, every target's outage is
    one mail-flow problem with every other's (controller.alerting.flows `same_server`)."""
    from testkit.campaigns.verdicts import SHORT

    related = SHORT.related()
    for t in SHORT.targets:
        assert related[t] == set(SHORT.targets) - {t}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_short_history_joint_outage_is_no_longer_than_the_other_faults(seed: int) -> None:
    """Its report burst waits for the incident, and its end for the burst (the harness), so
    the history draws it ending as the other faults do (a confirmed outage's length after the
    history's start, and up to 3 s more), its burst inside it."""
    from testkit.campaigns.verdicts import SHORT, history_of, shape

    history = history_of(SHORT, seed)
    low = shape(SHORT).fault[0]
    spans = {}
    for target in SHORT.targets:
        mine = [s.at for s in history if s.target == target and s.action not in OWNERS]
        if mine:
            spans[target] = (min(mine), max(mine))
    joint = [spans[t] for t in SHORT.joint]
    assert all(low <= end <= low + 3 for _, end in joint), joint
    (burst,) = [s for s in history if s.action == "report_burst"]
    assert all(start < burst.at < end for start, end in joint)
