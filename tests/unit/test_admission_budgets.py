"""Admission's budgets in order (controller.scheduling.admission_budgets), as a table: each
budget takes what the jobs left by those before it need; a job one refuses (out of its round's
jobs) gives back what every budget before it gave it, and only those; a job a budget lets go
short (replaced, not removed) is no refusal; the budgets admission runs are the product's."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

import msgspec
import pytest
from nats.aio.client import Client as NATS

from controller.db.pool import Conn
from controller.scheduling.admission_budgets import (
    ApiCalls,
    LoginCap,
    RoundBudget,
    RoundTripMail,
    SideCheckBudget,
    release_all,
    reserve_all,
)
from controller.scheduling.plan import PlannedRound
from shared.clock import WALL
from shared.messages import CheckJob, SmtpConfig
from testkit.peers.jobs import make_job

NOW = datetime(2026, 11, 29, tzinfo=UTC)
NO_DB = cast(Conn, None)


@dataclass
class Ledger:
    """A budget of the table: refuses the jobs named in `refuses` (out of `jobs`, into
    `missed`), lets those in `shorts` go short (replaced), and notes what it is given back."""

    name: str
    refuses: set[str] = field(default_factory=set)
    shorts: set[str] = field(default_factory=set)
    released: list[str] = field(default_factory=list)

    async def reserve(self, conn: Conn, rounds: Sequence[PlannedRound], now: datetime) -> None:
        for r in rounds:
            r.jobs = [
                msgspec.structs.replace(job, api_calls=0) if job.job_id in self.shorts else job
                for job in r.jobs
                if job.job_id not in self.refuses
            ]
            r.deferred = [(d, job) for d, job in r.deferred if job.job_id not in self.refuses]

    async def release(self, conn: Conn, jobs: Sequence[CheckJob]) -> None:
        self.released += [job.job_id for job in jobs]


def _job(job_id: str) -> CheckJob:
    return make_job("smtp", 25, SmtpConfig(), job_id=job_id)


def _rounds() -> list[PlannedRound]:
    return [
        PlannedRound(1, NOW, None, jobs=[_job("a"), _job("b")]),
        PlannedRound(2, NOW, None, jobs=[_job("c")], deferred=[(30.0, _job("d"))]),
    ]


# Per budget in order: (refuses, shorts) → what each is given back, and the jobs left.
CASES = [
    ([(set(), set())] * 3, [[], [], []], "abcd"),
    ([({"a"}, set()), (set(), set()), (set(), set())], [[], [], []], "bcd"),
    ([(set(), set()), ({"b"}, set()), (set(), set())], [["b"], [], []], "acd"),
    ([(set(), set()), ({"b"}, set()), ({"a", "d"}, set())], [["b", "a", "d"], ["a", "d"], []], "c"),
    ([(set(), {"a"}), (set(), set()), ({"c"}, set())], [["c"], ["c"], []], "abd"),
    ([(set(), set()), (set(), {"a", "b", "c"}), (set(), set())], [[], [], []], "abcd"),
]


@pytest.mark.parametrize(("rules", "given_back", "left"), CASES)
async def test_a_job_refused_gives_back_what_the_budgets_before_gave_it(
    rules: list[tuple[set[str], set[str]]], given_back: list[list[str]], left: str
) -> None:
    budgets = [Ledger(f"b{n}", refuses, shorts) for n, (refuses, shorts) in enumerate(rules)]
    rounds = _rounds()
    refused = await reserve_all(budgets, NO_DB, rounds, NOW)
    assert [sorted(b.released) for b in budgets] == [sorted(ids) for ids in given_back]
    kept = [job.job_id for r in rounds for job in [*r.jobs, *(j for _, j in r.deferred)]]
    assert "".join(sorted(kept)) == left
    assert "".join(sorted(job.job_id for job in refused)) == "".join(
        sorted(set("abcd") - set(left))
    )


async def test_release_all_gives_back_to_every_budget_and_nothing_for_no_jobs() -> None:
    budgets = [Ledger("b0"), Ledger("b1")]
    await release_all(budgets, NO_DB, [])
    assert [b.released for b in budgets] == [[], []]
    await release_all(budgets, NO_DB, [_job("x")])
    assert [b.released for b in budgets] == [["x"], ["x"]]


def test_admission_runs_the_products_budgets_in_order() -> None:
    """The order is the rule: a round trip's message, the login, the API calls, then each side
    check's budget (a login refused gives its message back; nothing is taken of a later budget
    for a job an earlier one refused)."""
    from controller.fleet.live import LiveAgents
    from controller.scheduling.admission import Admission

    admission = Admission(
        LiveAgents(cast(NATS, None), wall=WALL.now)
    )  # not started: no connection used
    kinds = [type(b) for b in admission._budgets]
    assert kinds[:3] == [RoundTripMail, LoginCap, ApiCalls]
    assert kinds[3:] and set(kinds[3:]) == {SideCheckBudget}
    budgets: Sequence[RoundBudget] = admission._budgets
    assert len(budgets) == len(kinds)


def test_a_later_login_due_takes_its_login_then_its_message_again() -> None:
    """When a later login comes due it takes again, in order, its login and its message (that
    one not waiting for a round in flight); it holds the other budgets since its round went."""
    from controller.fleet.live import LiveAgents
    from controller.scheduling.admission import Admission

    admission = Admission(LiveAgents(cast(NATS, None), wall=WALL.now))
    login, mail = admission._due
    assert isinstance(login, LoginCap) and login is admission._budgets[1]
    assert isinstance(mail, RoundTripMail) and not mail.wait
