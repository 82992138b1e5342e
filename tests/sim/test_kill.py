"""The simulation's kills (testkit/sim/kill.py): which statement each takes, as a table of
statements sent by parts."""

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
