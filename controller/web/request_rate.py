"""How many requests one source address may make of a replica: a token bucket per address,
`API_REQUEST_BURST_PER_ADDRESS` requests at once, refilled at `API_REQUESTS_PER_SECOND_PER_ADDRESS`
(0: no bound). Past it 429 with `Retry-After`, before any of the application runs.

- Every request counts, whatever its path (a 404 as much as a page), with or without a token:
  the bound is on what an address costs before anyone knows who it is.
- The address is the client's (behind `API_TRUSTED_PROXIES`, the forwarded one uvicorn puts in
  the scope); a request whose address is still a trusted proxy's (it forwarded none) is not
  held here: the proxy bounds its clients. An IPv6 address counts by its /64
  (controller.web.client_block), so one client cannot take a fresh bucket per address.
- Memory is bounded by construction: at most `ADDRESSES` buckets, the address seen least
  recently forgotten first (it comes back with a full bucket, as a new address does).
"""

import asyncio
import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send

from controller.observability import metrics
from controller.web.body_bounds import declares_body
from controller.web.client_block import client_block

ADDRESSES = 65_536  # buckets kept at most: about 18 MiB


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # the monotonic instant its tokens were counted


class RequestRate:
    """The buckets of one server's source addresses; `take` with the instant (monotonic
    seconds) of each request."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        addresses: int = ADDRESSES,
        trusted: list[str] | None = None,
    ) -> None:
        self.per_second = per_second
        self.burst = max(1, burst)
        self.addresses = addresses
        self._trusted = [ipaddress.ip_network(net) for net in trusted or []]
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, address: str, now: float) -> float:
        """0 when a request from `address` at `now` is within its bound (then counted), else the
        seconds until it would be."""
        if self._trusted and _within(address, self._trusted):
            return 0.0
        key = client_block(address)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.addresses:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.per_second)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.per_second


def _within(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


class _TooMany(msgspec.Struct, rename="camel"):
    status_code: int
    code: str
    message: str
    fields: list[str]


def bounded(app: ASGIApp, rate: RequestRate) -> ASGIApp:
    """`app` answering 429 to a request past its address's bound (a request with a body: the
    connection closed after it, the body unread)."""
    if rate.per_second <= 0:
        return app

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        client = scope.get("client")
        wait = rate.take(client[0] if client else "", asyncio.get_running_loop().time())
        if not wait:
            await app(scope, receive, send)
            return
        metrics.api_throttled()
        seconds = max(1, math.ceil(wait))
        body = msgspec.json.encode(
            _TooMany(
                status_code=429,
                code="too_many_requests",
                message=f"Too many requests from this address: retry in {seconds} s",
                fields=[],
            )
        )
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(seconds).encode()),
        ]
        if declares_body(scope):
            headers.append((b"connection", b"close"))
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 429,
            "headers": headers,
        }
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return middleware
