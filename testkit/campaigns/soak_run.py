"""How a fault campaign runs on its rig (testkit.campaigns.soak on soak_rig's, ha_soak on
ha_rig's): the rig's folder, healthy SMTP monitors seeded with a recipient, the agents and the
controllers started together, a warm-up once every monitor's first round is stored (its second
half the no-fault baseline window), then each fault in turn, its window running until the next
one begins. The campaigns read their figures from the windows.
"""

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from controller.db.pool import connect
from testkit.campaigns.soak_figures import Window
from testkit.campaigns.soak_rig import Rig, now
from testkit.common import seed_monitors

Say = Callable[[str], None]
BASELINE = "no fault (end of the warm-up)"
INTERVAL = 10
CHECK_TIMEOUT_S = 5


class Fault(Protocol):
    @property
    def name(self) -> str: ...

    # the scheduling path (controller, NATS or PostgreSQL) was down meanwhile: rounds due then
    # coalesce by design
    @property
    def away(self) -> bool: ...

    # seconds the fault is watched once applied, before the next one
    @property
    def observe_s(self) -> float: ...


F = TypeVar("F", bound=Fault)


@contextmanager
def folder(prefix: str, say: Say) -> Iterator[Path]:
    """The rig's temporary folder (its servers' data, the processes' logs); kept with
    SOAK_KEEP=1."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        if os.environ.get("SOAK_KEEP"):
            say(f"  logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def seed_healthy(
    rig: Rig, count: int, countries: Sequence[str], port: int | None = None
) -> list[str]:
    """`count` SMTP monitors every INTERVAL seconds of the rig's healthy server (or `port`'s),
    checked from `countries`, each with a recipient so that a false alert is queued and
    counted; their public ids."""
    ids = await seed_monitors(
        rig.database_url,
        count,
        interval=INTERVAL,
        countries=list(countries),
        hostname="localhost",
        port=port or rig.smtp_port,
        timeout_seconds=CHECK_TIMEOUT_S,
        config={"ignoreTls": True},
    )
    conn = await connect(rig.database_url)
    try:
        await conn.execute("UPDATE monitors SET notification_email = 'oncall@example.com'")
    finally:
        await conn.close()
    return ids


def fault_windows(
    rig: Rig,
    *,
    monitors: int,
    agents: Sequence[tuple[str, str]],
    controllers: Sequence[str],
    warmup_s: float,
    faults: Sequence[F],
    apply: Callable[[F], float],
    say: Say,
) -> list[Window]:
    """Start `agents` (name, country) and `controllers`, warm up, apply each fault in turn
    (`apply` returns when its part was back); the baseline window and one window per fault."""
    countries = {country for _, country in agents}
    rig.add_agents(agents)
    rig.wait_heartbeats(countries)
    rig.start_controllers(controllers)
    rig.start_sampling()
    rig.wait_first_rounds(monitors * len(countries))
    # The baseline is the warm-up's second half, at least an interval long: every monitor has
    # a round due in it (a shorter one could hold none, and then it judges nothing). It starts
    # half an interval after the first rounds at least: a monitor's grid starts more than half
    # an interval after its first round (`first_grid_round`), and `grid` counts every point.
    quiet_s = max(warmup_s / 2, INTERVAL)
    settle_s = max(warmup_s / 2, INTERVAL / 2)
    say(f"  rig up ({rig.tmp}); warming up {settle_s + quiet_s:.0f} s")
    quiet_from = now() + settle_s
    time.sleep(settle_s + quiet_s)
    windows = [Window(BASELINE, quiet_from, quiet_from, now(), False)]
    for fault in faults:
        start = now()
        say(f"  fault: {fault.name}")
        returned = apply(fault)
        time.sleep(fault.observe_s)
        windows.append(Window(fault.name, start, returned, now(), fault.away))
    return windows
