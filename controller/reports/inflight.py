"""The bytes of report bodies the HTTPS address holds at once, bounded overall and per
organization, and the requests reading them, bounded per organization and per source; pure
(one event loop's bookkeeping, no I/O).

A report posted to a domain's TLS-RPT address is held in memory from its first byte until it
is taken or refused: while it arrives (up to `API_BODY_SECONDS`), waits for a parser and is
parsed. The address is public (it is published in DNS), and the rate limit is per client
address, so without a bound many connections, each holding a body all but its last byte, would
hold as many bodies.

| Bound | Counts | Past it |
|---|---|---|
| `MOST` | bytes received of every body held | the request is refused mid-body |
| `PER_ORGANIZATION` | bytes received for one organization's domains | refused mid-body |
| `REQUESTS_PER_ORGANIZATION` | requests held for one organization's domains | refused unread |
| `REQUESTS_PER_SOURCE` | requests held from one client address | refused unread |

A refusal is 503 `reports_busy` with `Retry-After`. Bytes are counted as they arrive, never
from a declared length, so a slow sender holds only what it sent and its own request slot: one
organization's flood, or one address's, leaves the rest of the room, and of the parsers' queue,
to the others."""

from dataclasses import dataclass, field

from controller.reports.unpacking import MAX_PACKED

MOST = 3 * MAX_PACKED  # report bodies held at once, overall (30 MiB)
PER_ORGANIZATION = 2 * MAX_PACKED  # ... and for one organization's domains (20 MiB)
REQUESTS_PER_ORGANIZATION = 8  # ... in at most this many requests (its reporters post daily)
REQUESTS_PER_SOURCE = 2  # ... and from one client address


@dataclass
class InFlight:
    most: int = MOST
    per_organization: int = PER_ORGANIZATION
    requests_per_organization: int = REQUESTS_PER_ORGANIZATION
    requests_per_source: int = REQUESTS_PER_SOURCE
    held: int = 0
    by_organization: dict[int, tuple[int, int]] = field(default_factory=dict)  # bytes, requests
    by_source: dict[str, int] = field(default_factory=dict)  # requests

    def admit(self, organization_id: int, source: str) -> bool:
        """Take a request slot for one of the organization's reports from `source`; False when
        the organization's or the source's slots are all taken."""
        mine, requests = self.by_organization.get(organization_id, (0, 0))
        theirs = self.by_source.get(source, 0)
        if requests >= self.requests_per_organization or theirs >= self.requests_per_source:
            return False
        self.by_organization[organization_id] = (mine, requests + 1)
        self.by_source[source] = theirs + 1
        return True

    def grow(self, organization_id: int, size: int) -> bool:
        """Hold `size` more bytes received for an admitted report; False past a bound."""
        mine, requests = self.by_organization[organization_id]
        if self.held + size > self.most or mine + size > self.per_organization:
            return False
        self.held += size
        self.by_organization[organization_id] = (mine + size, requests)
        return True

    def leave(self, organization_id: int, source: str, size: int) -> None:
        """Give back an admitted report's slot and the `size` bytes it grew by."""
        self.held -= size
        mine, requests = self.by_organization.pop(organization_id)
        if requests > 1:
            self.by_organization[organization_id] = (mine - size, requests - 1)
        theirs = self.by_source.pop(source)
        if theirs > 1:
            self.by_source[source] = theirs - 1


BODIES = InFlight()
