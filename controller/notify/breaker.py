"""A notification channel's circuit breaker, shared by every controller (its state a row of
`notification_channel_state`, `controller.notify.channel_state_store`): after `failures` sends
in a row that the channel did not take (no answer, unreachable, a failing answer), whichever
controller sent them, it opens, and its notifications wait `open_s` without being tried (their
attempts kept); then one send tries it again (a channel has one send at a time across the
controllers): delivered closes the breaker, failed opens it again for twice as long, up to
`max_open_s`. Failures of mailprobe's own (its database away, its own file descriptors used
up) and refusals for good say nothing of whether the channel answers, and are not counted.

Pure: the worker gives the time.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

FAILURES = 3
OPEN_S = 60.0
MAX_OPEN_S = 900.0


class State(msgspec.Struct, frozen=True):
    """A channel's breaker; the default is closed."""

    failures: int = 0  # in a row
    opened: int = 0  # times opened since it last took a send
    open_until: datetime | None = None  # its notifications wait until then


CLOSED = State()


@dataclass(frozen=True)
class Breaker:
    failures: int = FAILURES
    open_s: float = OPEN_S
    max_open_s: float = MAX_OPEN_S

    def failed(self, state: State, now: datetime) -> State:
        """`state` after a send the channel did not take ended `now`."""
        if state.failures + 1 < self.failures:
            return msgspec.structs.replace(state, failures=state.failures + 1)
        wait = min(self.open_s * 2**state.opened, self.max_open_s)
        # its trial failing opens it again
        return State(self.failures - 1, state.opened + 1, now + timedelta(seconds=wait))


def is_open(state: State, now: datetime) -> bool:
    """Whether the channel's notifications wait `now`."""
    return state.open_until is not None and state.open_until > now
