"""The simulation's kills and failovers (testkit/sim/kill.py): which statement each takes or
strikes before, as tables of statements sent by parts."""

import pytest

from testkit.sim.kill import Killed, _Armed

# (case, [("arm", part, statement) or ("send", part)], the statements killed: their indexes)
RECORD, ALERTER = ("send", "record"), ("send", "alerter")
KILLS = [
    ("the Nth of its part", [("arm", "record", 2), RECORD, RECORD], [2]),
    (
        "another part's statements do not count",
        [("arm", "record", 1), ALERTER, ("send", "scheduler"), RECORD],
        [3],
    ),
    ("none while no part runs", [("arm", "record", 1), ("send", None), RECORD], [2]),
    (
        "counted over passes: an idle part strikes at its next statement",
        [("arm", "alerter", 3), ALERTER, RECORD, ALERTER, *[RECORD] * 5, ALERTER],
        [9],
    ),
    (
        "a kill armed while another waits does not replace it",
        [("arm", "record", 3), RECORD, ("arm", "record", 3), *[RECORD] * 5],
        [4, 6],
    ),
    (
        "two kills of two parts",
        [("arm", "record", 2), ("arm", "alerter", 1), RECORD, ALERTER, RECORD],
        [3, 4],
    ),
    (
        "the statement killed is not sent: it counts for no other kill",
        [("arm", "record", 1), ("arm", "record", 2), RECORD, RECORD, RECORD],
        [2, 4],
    ),
]


@pytest.mark.parametrize(("case", "steps", "killed"), KILLS, ids=[c[0] for c in KILLS])
def test_which_statements_kills_take(
    case: str, steps: list[tuple[str | int | None, ...]], killed: list[int]
) -> None:
    armed = _Armed()
    found: list[int] = []
    for i, step in enumerate(steps):
        if step[0] == "arm":
            armed.arm(str(step[1]), int(str(step[2])))
            continue
        armed.part = None if step[1] is None else str(step[1])
        try:
            armed.sent()
        except Killed:
            found.append(i)
    assert found == killed, case
    assert not armed.waiting, case


# (case, steps as above with ("fail", part): a failover armed, the statements a failover strikes
# before, the statements killed)
FAILOVERS = [
    ("before its part's next statement", [("fail", "alerter"), RECORD, ALERTER, ALERTER], [2], []),
    ("none while no part runs", [("fail", "record"), ("send", None), RECORD], [2], []),
    (
        "a kill takes the statement first, the failover the next",
        [("arm", "record", 1), ("fail", "record"), RECORD, RECORD],
        [3],
        [2],
    ),
    (
        "two armed for one part strike in turn",
        [("fail", "scheduler"), ("fail", "scheduler"), *[("send", "scheduler")] * 3],
        [2, 3],
        [],
    ),
]


@pytest.mark.parametrize(
    ("case", "steps", "struck", "killed"), FAILOVERS, ids=[c[0] for c in FAILOVERS]
)
def test_which_statements_failovers_strike_before(
    case: str, steps: list[tuple[str | int | None, ...]], struck: list[int], killed: list[int]
) -> None:
    armed = _Armed()
    found: list[int] = []
    dead: list[int] = []
    for i, step in enumerate(steps):
        if step[0] == "arm":
            armed.arm(str(step[1]), int(str(step[2])))
            continue
        if step[0] == "fail":
            armed.arm_failover(str(step[1]))
            continue
        armed.part = None if step[1] is None else str(step[1])
        try:
            if armed.sent():
                found.append(i)
        except Killed:
            dead.append(i)
    assert (found, dead) == (struck, killed), case
    assert not armed.failovers and not armed.waiting, case
