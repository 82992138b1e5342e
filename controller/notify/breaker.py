"""A notification channel's circuit breaker, per outbox worker: after `failures` sends in a row
that the channel did not take (no answer, unreachable, a failing answer) it opens, and its
notifications wait `open_s` without being tried (their attempts kept); then one send tries it
again (a channel has one send at a time): delivered closes the breaker, failed opens it again
for twice as long, up to `max_open_s`. Failures of mailprobe's own (its database away, its
own file descriptors used up) and refusals for good say nothing of whether the channel
answers, and are not counted.

Pure: the worker gives the time (seconds on its clock).
"""

from dataclasses import dataclass, field

FAILURES = 3
OPEN_S = 60.0
MAX_OPEN_S = 900.0


@dataclass(slots=True)
class _Channel:
    failures: int = 0  # in a row
    opened: int = 0  # times opened since it last took a send
    until: float = 0.0  # open until then


@dataclass
class Breakers:
    failures: int = FAILURES
    open_s: float = OPEN_S
    max_open_s: float = MAX_OPEN_S
    _channels: dict[int, _Channel] = field(default_factory=dict)

    def delivered(self, channel_id: int) -> None:
        self._channels.pop(channel_id, None)

    def failed(self, channel_id: int, now: float) -> None:
        """A send the channel did not take ended `now`."""
        c = self._channels.setdefault(channel_id, _Channel())
        c.failures += 1
        if c.failures >= self.failures:
            c.until = now + min(self.open_s * 2**c.opened, self.max_open_s)
            c.opened += 1
            c.failures = self.failures - 1  # its trial failing opens it again

    def open(self, now: float) -> list[int]:
        """The channels whose notifications wait `now`."""
        return [cid for cid, c in self._channels.items() if c.until > now]
