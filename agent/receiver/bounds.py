"""The receiver's bounds on strangers, pure: connections at once (in all, per source address)
and messages per receiving address in a sliding window. Time comes from the caller's monotonic
clock."""

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class Connections:
    """Connections held now, in all and per source address: `admit` says whether one more may
    be held (and counts it), `release` gives it back."""

    total_max: int
    per_source_max: int
    total: int = 0
    by_source: dict[str, int] = field(default_factory=dict)

    def admit(self, source: str) -> bool:
        held = self.by_source.get(source, 0)
        if self.total >= self.total_max or held >= self.per_source_max:
            return False
        self.total += 1
        self.by_source[source] = held + 1
        return True

    def release(self, source: str) -> None:
        held = self.by_source.get(source, 0)
        if held <= 1:
            self.by_source.pop(source, None)
        else:
            self.by_source[source] = held - 1
        self.total = max(0, self.total - 1)


@dataclass(slots=True)
class PerAddress:
    """Messages per receiving address within the last `window_s` seconds: `take` says whether
    one more may come now (and counts it). Memory: at most `most` times per address, for the
    addresses the book holds."""

    most: int
    window_s: float
    taken: dict[str, deque[float]] = field(default_factory=dict)

    def take(self, address: str, now: float) -> bool:
        times = self.taken.setdefault(address, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.most:
            return False
        times.append(now)
        return True

    def forget(self, address: str) -> None:
        self.taken.pop(address, None)
