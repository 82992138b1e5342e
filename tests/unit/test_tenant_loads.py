"""agent.tenant_loads: what the heartbeat says of each tenant, the checks that ended counted
beside their slot-seconds (usage / checks: how long a tenant's checks hold a slot)."""

from agent.tenant_loads import TenantUsage
from shared.messages import TenantLoad


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
