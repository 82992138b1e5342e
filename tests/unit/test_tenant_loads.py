"""agent.tenant_loads (what a heartbeat says of each tenant) and the scheduler's own admissions
(controller.scheduling.admission_ledger), on a clock the test moves."""

from datetime import UTC, datetime, timedelta

import pytest

from agent.tenant_loads import TenantUsage
from controller.fleet.load import CountryLoad
from controller.jobs.result_kinds import SATURATED
from controller.scheduling.admission_ledger import Admissions
from shared.messages import CheckJob, SmtpCheckJob, TenantLoad
from shared.timefmt import iso_ms


def test_ended_checks_are_counted_and_halved_with_the_usage() -> None:
    usage = TenantUsage(half_life_s=60.0)
    usage.started("light", 0.0)
    usage.ended("light", 0.0, 0.002)
    usage.started("hang", 0.0)
    usage.sample(1.0)
    assert usage.checks("light") == 1.0 and usage.usage("light") == 0.002
    assert usage.checks("hang") == 0.0 and usage.usage("hang") == 1.0  # running, none ended
    usage.sample(61.0)
    assert usage.checks("light") == 0.5 and usage.usage("light") == 0.001  # one half-life
    # A millisecond check is remembered for many half-lives: the tenant stays known light.
    assert usage.checks("light") > 0


def test_the_beat_lists_those_holding_jobs_then_the_lightest() -> None:
    usage = TenantUsage()
    for tenant, seconds in (("heavy", 30.0), ("light", 0.003), ("mid", 2.0)):
        usage.started(tenant, 0.0)
        usage.ended(tenant, 0.0, seconds)
    usage.sample(30.0)
    assert usage.loads({"busy": 2}) == [
        TenantLoad("busy", 2, 0.0, 0.0),
        TenantLoad("light", 0, 0.003, 1.0),
        TenantLoad("mid", 0, 2.0, 1.0),
        TenantLoad("heavy", 0, 30.0, 1.0),
    ]


def test_hanging_checks_are_heavy_and_quick_ones_light() -> None:
    usage = TenantUsage()
    for second in range(30):
        now = float(second)
        if second == 0:
            usage.started("noisy", now)
        for k in range(10):  # ten 10 ms checks a second
            usage.started("quick", now + k * 0.1)
            usage.ended("quick", now + k * 0.1, now + k * 0.1 + 0.01)
        usage.sample(now + 1)
    assert usage.usage("noisy") == pytest.approx(30 * 0.85, rel=0.1)  # decayed a little
    assert usage.usage("quick") == pytest.approx(3 * 0.85, rel=0.1)
    assert usage.usage("quick") / usage.checks("quick") == pytest.approx(0.01, abs=0.001)
    assert usage.checks("noisy") == 0.0  # not ended yet
    loads = {load.tenant: load for load in usage.loads({"noisy": 1})}
    assert loads["noisy"].held == 1 and loads["quick"].held == 0


def test_an_idle_tenant_is_forgotten() -> None:
    usage = TenantUsage(half_life_s=1.0)
    usage.started("a", 0.0)
    usage.ended("a", 0.0, 1.0)
    usage.sample(1.0)
    assert usage.loads({})
    usage.sample(60.0)
    assert usage.loads({}) == []


def _job(tenant: str, at: datetime, timeout: float = 30.0, n: int = 0) -> CheckJob:
    return SmtpCheckJob(
        job_id=f"{tenant}-{n}",
        monitor_id="00000000-0000-0000-0000-000000000001",
        hostname="mx.example",
        country="DE",
        scheduled_at=iso_ms(at),
        expires_at=iso_ms(at + timedelta(seconds=10)),
        timeout_seconds=timeout,
        tenant=tenant,
    )


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_own_admissions_count_until_the_beats_show_them_or_a_quick_check_has_ended() -> None:
    clock = Clock()
    beats = {"load": CountryLoad(2, {}, {"quick": 0.01}, heard_at=99.0, checks={"quick": 1.0})}
    admissions = Admissions(lambda cc: beats["load"], clock)
    at = datetime(2026, 11, 26, 12, tzinfo=UTC)
    # A tenant never timed weighs its timeout: the quick one keeps the reserve's slot, and
    # each admission holds a slot until a beat shows it.
    taken = admissions.take([_job("new", at, n=i) for i in range(3)], at)
    assert len(taken.admitted) == 1 and taken.waiting == 2
    clock.t += 0.5
    assert not admissions.retry(at).admitted
    # A quick tenant's admission is over after its usual time: the slot is free again.
    beats["load"] = CountryLoad(
        3, {"new": 2}, {"new": 5.0, "quick": 0.01}, heard_at=100.4, checks={"quick": 1.0}
    )
    taken = admissions.take([_job("quick", at, n=i) for i in range(2)], at)
    assert [j.tenant for j in taken.admitted] == ["quick"]
    clock.t += 0.3
    taken = admissions.retry(at)
    assert [j.tenant for j in taken.admitted] == ["quick"], "the quick check's slot is back"
    # A job that can no longer start in time is refused, saying so.
    later = at + timedelta(seconds=9)
    taken = admissions.retry(later)
    assert taken.refused and taken.refused[0].error_kind == SATURATED
    assert "your organization held" in taken.refused[0].message
    assert "could no longer start in time" in taken.refused[0].message
    assert admissions.waiting() == 0


def test_jobs_admitted_but_not_published_wait_again_first() -> None:
    """A pass whose publish failed (NATS away) puts its admitted jobs back: they are asked
    again, ahead of those that waited behind them, and not lost."""
    clock = Clock()
    beats = {"load": CountryLoad(1, {"busy": 1}, {"busy": 9.0}, heard_at=99.0)}
    admissions = Admissions(lambda cc: beats["load"], clock)
    at = datetime(2026, 11, 26, 12, tzinfo=UTC)
    first, second = _job("a", at, timeout=1.0, n=1), _job("b", at, timeout=1.0, n=2)
    assert admissions.take([first, second], at).waiting == 2
    beats["load"] = CountryLoad(3, {}, {}, heard_at=200.0)
    clock.t = 300.0
    taken = admissions.retry(at)
    assert [j.job_id for j in taken.admitted] == ["a-1", "b-2"]
    admissions.put_back(taken.admitted)
    assert admissions.waiting() == 2
    beats["load"] = CountryLoad(1, {}, {}, heard_at=400.0)
    clock.t = 500.0
    again = admissions.retry(at)
    assert [j.job_id for j in again.admitted] == ["a-1"] and admissions.waiting() == 1
