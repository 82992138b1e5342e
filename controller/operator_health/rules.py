"""When an operator health change is told, pure: a (name, country)'s health as last written
(`Stored`) moved to what was judged now (`step`)."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from controller.sidechecks.dns_canary import Health

# A new state is told once it has held this long: a resolver's bad minute is no notice.
HOLD: Final = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Stored:
    """A health in one country as last written: its `state` since `since`, and the state its
    organizations were last `told` of."""

    state: str
    reason: str
    since: datetime
    told: str


Change = Literal["unhealthy", "recovered"]


def step(
    before: Stored | None, now: Health, at: datetime, hold: timedelta = HOLD, quiet: bool = False
) -> tuple[Stored, Change | None]:
    """Move one name in one country to `now` at `at`: the state and reason as judged, `since`
    kept while the state stays, or stays not healthy (unhealthy and unknown in turns are one
    bad spell); told (`unhealthy`: it is not healthy any more, `recovered`: healthy again) once
    the new state has held `hold`, and only when the organizations were told otherwise: one
    notice per change, none for a flap shorter than `hold`. `unknown` counts as not healthy
    (nothing it says is believed); `unchecked` is never told. `quiet`: a change not told now
    (its root cause is told instead), what was told kept, so one that outlasts the root cause
    is told then."""
    if before is None:
        before = Stored("healthy", "", at, "healthy")
    same = before.state == now.state or (_bad(before.state) and _bad(now.state))
    since = before.since if same else at
    stored = Stored(now.state, now.reason, since, before.told)
    if quiet or now.state == "unchecked" or at - since < hold:
        return stored, None
    bad = now.state != "healthy"
    if bad and before.told == "healthy":
        return Stored(now.state, now.reason, since, now.state), "unhealthy"
    if not bad and before.told != "healthy":
        return Stored(now.state, now.reason, since, "healthy"), "recovered"
    return stored, None


def _bad(state: str) -> bool:
    return state not in ("healthy", "unchecked")


__all__ = ["HOLD", "Change", "Health", "Stored", "step"]
