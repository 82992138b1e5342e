"""The bytes of report bodies the HTTPS address holds at once, bounded overall and per
organization; pure (one event loop's bookkeeping, no I/O).

A report posted to a domain's TLS-RPT address is held in memory from its first byte until it
is taken or refused: while it arrives (up to `API_BODY_SECONDS`), waits for a parser and is
parsed. The address is public (it is published in DNS), and the rate limit is per client
address, so without a bound many connections, each holding a body all but its last byte, would
hold as many bodies. Each request reserves what it may hold before its body is read (its
Content-Length, or `MAX_PACKED` when it comes in chunks) and gives it back when it is answered;
a request past `MOST` overall, or past `PER_ORGANIZATION` bytes or `REQUESTS_PER_ORGANIZATION`
requests for its domain's organization, is refused unread (503 `reports_busy` with
`Retry-After`), so one organization's flood leaves the rest of the room, and of the parsers'
queue, to the others."""

from dataclasses import dataclass, field

from controller.reports.unpacking import MAX_PACKED

MOST = 3 * MAX_PACKED  # report bodies held at once, overall (30 MiB)
PER_ORGANIZATION = 2 * MAX_PACKED  # ... and for one organization's domains (20 MiB)
REQUESTS_PER_ORGANIZATION = 8  # ... in at most this many requests (its reporters post daily)


@dataclass
class InFlight:
    most: int = MOST
    per_organization: int = PER_ORGANIZATION
    requests_per_organization: int = REQUESTS_PER_ORGANIZATION
    held: int = 0
    by_organization: dict[int, tuple[int, int]] = field(default_factory=dict)  # bytes, requests

    def reserve(self, organization_id: int, size: int) -> bool:
        """Hold `size` bytes for one of the organization's reports; False past a bound."""
        mine, requests = self.by_organization.get(organization_id, (0, 0))
        if (
            self.held + size > self.most
            or mine + size > self.per_organization
            or requests >= self.requests_per_organization
        ):
            return False
        self.held += size
        self.by_organization[organization_id] = (mine + size, requests + 1)
        return True

    def release(self, organization_id: int, size: int) -> None:
        self.held -= size
        mine, requests = self.by_organization.pop(organization_id)
        if requests > 1:
            self.by_organization[organization_id] = (mine - size, requests - 1)


def reserved(content_length: str | None, chunked: bool) -> int:
    """What a request reserves: its declared length, at most `MAX_PACKED` (a larger one is
    refused unread by the body limit), or `MAX_PACKED` when it comes in chunks (a
    Transfer-Encoding frames the body whatever Content-Length says, RFC 9112 6.3)."""
    try:
        declared = MAX_PACKED if chunked or content_length is None else int(content_length)
    except ValueError:
        declared = MAX_PACKED
    return min(max(declared, 0), MAX_PACKED)


BODIES = InFlight()
