"""Outbound HTTP of the notification channels: a POST to an endpoint a user of an organization
typed in, so it must not become a way into the operator's network.

- Only `https://` to hosts whose every address is public, judged by the rule checks use
  (`shared.addresses.is_blocked`), at connect time on the addresses actually dialled (no
  second lookup a rebinding name could answer differently). The operator grants private
  networks per organization (`NOTIFY_PRIVATE_NETWORK_GRANTS`): a channel reaches the networks
  of its own organization's grant (and of the `*` grant), and plain `http://` goes only there.
  What one organization may reach is `Egress.of(organization_id)`; nothing posts without one.
- No redirects, no proxies from the environment, a timeout per request, and at most
  `MAX_BODY` bytes of an answer read.
- Errors name the host and what failed, never the URL's path or query (a Slack or Teams URL is
  its own credential) nor a header. A send that failed for want of this process's own
  resources (file descriptors, buffers, memory) says so and is retried soon: the endpoint was
  never tried, so it is not its fault.
"""

import asyncio
import ipaddress
import socket
import ssl
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpcore
import httpx

from controller.notify import DeliveryError, endpoint_url
from controller.notify.shortage import not_sent, own_shortage
from shared.addresses import is_blocked
from shared.http_backend import FlowBackend
from shared.tls import system_trust

MAX_BODY = 64 * 1024
TIMEOUT_S = 10.0
GRANTS = "NOTIFY_PRIVATE_NETWORK_GRANTS"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Networks by organization id; `*` for every organization.
Grants = Mapping[int | Literal["*"], Sequence[Network]]


class AddressRefused(Exception):
    """The endpoint is not public and the organization's grant does not hold it."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes  # at most MAX_BODY bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _allowed(address: str, networks: Sequence[Network]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return any(ip in net for net in networks)


def literal_problem(host: str | None, networks: Sequence[Network], *, plain: bool) -> str | None:
    """What is wrong with `host` when it is an IP address the rules refuse, or None (a name
    is judged on its addresses at connect time)."""
    try:
        ip = ipaddress.ip_address((host or "").split("%", 1)[0])
    except ValueError:
        return None
    if _allowed(str(ip), networks):
        return None
    if plain:
        return (
            f"reaches {host}, outside the private networks granted to this organization ({GRANTS})"
        )
    if is_blocked(str(ip)):
        return (
            f"reaches {host}, which is not public (private, loopback, link-local or reserved) and"
            f" not in the networks granted to this organization ({GRANTS})"
        )
    return None


class GuardedBackend(FlowBackend):
    """The HTTPS clients' backend (shared.http_backend), dialling only addresses the rules
    allow: the host is resolved here once and one of those checked addresses is connected to;
    TLS still verifies the host's name. `plain`: only the granted networks (plain http)."""

    def __init__(self, networks: Sequence[Network], *, plain: bool = False) -> None:
        self._networks = list(networks)
        self._plain = plain

    def permitted(self, address: str) -> bool:
        if _allowed(address, self._networks):
            return True
        return not self._plain and not is_blocked(address)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's signature
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout or TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {type(exc).__name__}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses or not all(self.permitted(a) for a in addresses):
            if self._plain:
                raise AddressRefused(
                    f"endpoint {host}: plain http:// only to the private networks granted to"
                    f" this organization ({GRANTS})"
                )
            raise AddressRefused(
                f"{host} resolves to an address that is not public (private, loopback, link-local"
                f" or reserved) and not in the networks granted to this organization ({GRANTS})"
            )
        return await self.connect_any(addresses, port, timeout, local_address, socket_options)


class Egress:
    """The process's outbound rules: the operator's grants (`NOTIFY_PRIVATE_NETWORK_GRANTS`),
    the timeout and the trust store (`ssl_context` replaces the system's: tests, an in-house
    CA). `of` gives what one organization's channels may reach."""

    def __init__(
        self,
        grants: Grants | None = None,
        *,
        timeout_s: float = TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._grants = {org: tuple(nets) for org, nets in (grants or {}).items()}
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context or system_trust()

    def of(self, organization_id: int) -> "OrgEgress":
        networks = self._grants.get("*", ()) + self._grants.get(organization_id, ())
        return OrgEgress(networks, self._timeout_s, self._ssl_context)


class OrgEgress:
    """POSTs of one organization's channels, under the rules above and its grant."""

    def __init__(
        self, networks: Sequence[Network], timeout_s: float, ssl_context: ssl.SSLContext
    ) -> None:
        self._networks = list(networks)
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context

    @property
    def networks(self) -> list[Network]:
        """The private networks this organization's endpoints may be in."""
        return list(self._networks)

    def url_problem(self, url: str) -> str | None:
        """What is wrong with `url` as an endpoint before any lookup, or None: the API's check,
        on the URL as the sender parses it (`endpoint_url`); an address typed in is judged
        here, a name's addresses when it is dialled."""
        if problem := endpoint_url.problem(url):
            return problem
        parts = urlsplit(url)
        if parts.scheme == "http" and not self._networks:
            return (
                "must be an https:// URL (plain http only to private networks granted to this"
                f" organization, {GRANTS})"
            )
        return literal_problem(parts.hostname or "", self._networks, plain=parts.scheme == "http")

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POST `body`; the answer, or DeliveryError (permanent when the endpoint is refused)."""
        if problem := self.url_problem(url):
            raise DeliveryError(f"endpoint {problem}", permanent=True)
        host = urlsplit(url).hostname or "?"
        backend = GuardedBackend(self._networks, plain=urlsplit(url).scheme == "http")
        transport = httpx.AsyncHTTPTransport(verify=self._ssl_context, trust_env=False)
        # The transport's own pool, rebuilt on the guarded backend (httpx has no parameter
        # for a network backend).
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=self._ssl_context, network_backend=backend, max_connections=1
        )
        try:
            async with (
                asyncio.timeout(2 * self._timeout_s),  # the whole call, however slow the drip
                httpx.AsyncClient(
                    transport=transport,
                    timeout=self._timeout_s,
                    follow_redirects=False,
                    trust_env=False,
                ) as client,
                client.stream("POST", url, content=body, headers=dict(headers)) as response,
            ):
                data = bytearray()
                async for chunk in response.aiter_raw():
                    data += chunk
                    if len(data) >= MAX_BODY:
                        break
                return Answer(response.status_code, bytes(data[:MAX_BODY]))
        except AddressRefused as exc:
            raise DeliveryError(str(exc), permanent=True) from None
        except httpx.InvalidURL:
            raise DeliveryError(f"endpoint {host}: not a valid URL", permanent=True) from None
        except (httpx.TimeoutException, TimeoutError):
            raise DeliveryError(f"{host} did not answer within {self._timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            if (own := own_shortage(exc)) is not None:
                raise DeliveryError(not_sent(own, host), soon=True) from None
            raise DeliveryError(f"{host} unreachable: {type(exc).__name__}") from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"TLS with {host} failed: {exc.reason or 'error'}") from None
