"""Which due notifications the outbox worker starts next: each organization's share of the
worker's senders, served fairly (the rule the agents' job queue follows, for notices).

Each organization's due notifications come in its own order (outage notices first, then the
oldest due: `controller.notify.outbox_store.due`). A free sender goes, one notification a
turn, to an organization under its cap (`share` of the senders) if one has notifications
waiting, else to any (a sender never idles while notifications wait): of those, the one
holding fewest senders, then the one whose sends held senders least lately (decayed
sender-seconds, retries included: an organization whose channels are slow or never answer
pays for them itself), then the one whose first notification comes first. A notification
channel has at most one send at a time (a channel that never answers holds one sender, never
more); a channel whose breaker is open, or already being sent to, waits.

Pure: no I/O, no clock; the worker owns the senders and gives the time.
"""

import math
from collections import OrderedDict, deque
from collections.abc import Collection, Mapping, Sequence

import msgspec

# Sender-seconds an organization used are halved this often.
USAGE_HALF_LIFE_S = 300.0


class Due(msgspec.Struct, frozen=True):
    """A notification due to be sent."""

    id: int
    organization_id: int
    channel_id: int | None  # a notification channel's row (one send at a time); None: e-mail, SMS


def org_cap(senders: int, share: float) -> int:
    """The senders one organization may hold while another organization's notifications wait:
    `share` of them, rounded down, at least one."""
    return max(1, math.floor(senders * share))


def choose(
    due: Sequence[Due],
    free: int,
    held: Mapping[int, int],
    cap: int,
    used: Mapping[int, float] | None = None,
    busy: Collection[int] = (),
) -> list[Due]:
    """The notifications of `due` (each organization's in its order) that take the `free`
    senders, in the order they take them, given the senders each organization `held`, its
    sender-seconds `used` lately and the channels `busy` (being sent to, or their breaker
    open)."""
    used = used or {}
    lanes: OrderedDict[int, deque[Due]] = OrderedDict()
    for d in due:
        lanes.setdefault(d.organization_id, deque()).append(d)
    holding = dict(held)
    taken_channels = set(busy)
    chosen: list[Due] = []
    while len(chosen) < free and lanes:
        under = [o for o in lanes if holding.get(o, 0) < cap] or list(lanes)
        turn = {o: i for i, o in enumerate(under)}
        org = min(under, key=lambda o: (holding.get(o, 0), used.get(o, 0.0), turn[o]))
        lane = lanes[org]
        d = lane.popleft()
        if not lane:
            del lanes[org]
        if d.channel_id is not None:
            if d.channel_id in taken_channels:
                continue
            taken_channels.add(d.channel_id)
        chosen.append(d)
        holding[org] = holding.get(org, 0) + 1
    return chosen


class Usage:
    """Each organization's sender-seconds, halved every `half_life_s`."""

    def __init__(self, half_life_s: float = USAGE_HALF_LIFE_S) -> None:
        self._rate = math.log(2) / half_life_s
        self._used: dict[int, tuple[float, float]] = {}  # organization: (seconds, as of)

    def charge(self, organization_id: int, seconds: float, now: float) -> None:
        self._used[organization_id] = (self.of(organization_id, now) + max(0.0, seconds), now)

    def of(self, organization_id: int, now: float) -> float:
        seconds, at = self._used.get(organization_id, (0.0, now))
        return seconds * math.exp(-self._rate * max(0.0, now - at))

    def all(self, now: float) -> dict[int, float]:
        """Every organization's, decayed to `now` (those below a millisecond forgotten)."""
        current = {o: self.of(o, now) for o in self._used}
        self._used = {o: (s, now) for o, s in current.items() if s >= 1e-3}
        return {o: s for o, s in current.items() if s >= 1e-3}
