"""Access tokens from a grant's token endpoint, with authlib's httpx OAuth2 client.

Every call is bounded: one timeout for the whole call, a response body of at most
`BODY_MAX` bytes, no redirects, no proxies from the environment, and the endpoint's host
resolved and connected to only at public addresses (shared.addresses, the rule checks follow),
the one it checked, so a name that resolves elsewhere between the check and the connection
changes nothing. What the endpoint says is kept to its OAuth2 error code and a bounded
description; a secret never appears in an error or a log line.
"""

import asyncio
import socket
import ssl
import warnings
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

# authlib prefers httpx2 and warns when it falls back to httpx, the client the rest of mailprobe
# uses; its module of warnings turns them on for good when imported, so it goes first.
import authlib.deprecate
import httpcore
import httpx
import structlog

from controller.monitors.oauth2_grants import JWT_BEARER_GRANT, Grant, endpoint, normal_host, scopes
from controller.oauth2 import assertion
from controller.settings import OAuth2Settings
from shared.addresses import is_blocked
from shared.guards import BrokenInvariant
from shared.http_backend import FlowBackend
from shared.tls import system_trust

with warnings.catch_warnings():
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.httpx_client import AsyncOAuth2Client

log = structlog.get_logger(__name__)

TIMEOUT_S: Final = 10.0
# Of the call's timeout, what connecting and then the TLS handshake may each take (httpx's
# connect timeout): a handshake that hangs ends there, inside httpx, which closes its socket;
# cancelled from outside by the call's timeout, the socket would stay open until collected.
CONNECT_SHARE: Final = 0.4
BODY_MAX: Final = 64 * 1024
DESCRIPTION_MAX: Final = 300


@dataclass(frozen=True)
class Issued:
    """An access token and what came with it (`refresh_token`: a rotated one, or None)."""

    access_token: str
    expires_in: float | None
    refresh_token: str | None
    scope: str | None


class TokenError(Exception):
    """The endpoint gave no token: `error` an OAuth2 error code (`invalid_grant`, ...) when it
    refused, else `unreachable` / `bad_response` / `blocked_endpoint`; `message` says it in
    words (the endpoint's description, bounded)."""

    def __init__(self, error: str, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.error = error
        self.refused = refused  # the endpoint answered and refused (a 4xx with an error)


class _GuardedBackend(FlowBackend):
    """Connects only to addresses the rule allows, to the address it checked."""

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self.blocked: str | None = None  # why a connection was refused

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise httpcore.ConnectError(f"{host} does not resolve")
        if not self._allow_private and any(is_blocked(a) for a in addresses):
            self.blocked = f"{host} resolves to a private or reserved address"
            raise httpcore.ConnectError(self.blocked)
        return await self.connect_any(addresses, port, timeout, local_address, socket_options)


class _BoundedTransport(httpx.AsyncBaseTransport):
    """httpx's transport over the guarded backend; a body over BODY_MAX bytes is an error."""

    def __init__(self, verify: ssl.SSLContext, allow_private: bool) -> None:
        self._inner = httpx.AsyncHTTPTransport(verify=verify, trust_env=False, retries=0)
        self.backend = _GuardedBackend(allow_private)
        # httpx takes no network backend of its own: the pool it builds is replaced by one on
        # the guarded backend, with the same TLS context.
        self._inner._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify, max_connections=10, network_backend=self.backend
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > BODY_MAX:
            await response.aclose()
            raise _TooLarge(f"the token endpoint's answer is over {BODY_MAX} bytes")
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            raise BrokenInvariant(
                "fetcher._BoundedTransport.handle_async_request: an async transport's stream"
                " is an AsyncByteStream"
            )
        response.stream = _Capped(stream)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _TooLarge(httpx.TransportError):
    pass


class _Capped(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > BODY_MAX:
                raise _TooLarge(f"the token endpoint's answer is over {BODY_MAX} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _clean(text: object) -> str:
    said = " ".join(str(text or "").split())
    return said[:DESCRIPTION_MAX]


class TokenFetcher:
    """Fetches access tokens; `verify`: the TLS trust (the system's, plus OAUTH2_CA_FILE)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | None = None,
        allow_private: bool = False,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self._verify = verify or system_trust()
        self._allow_private = allow_private
        self._timeout_s = timeout_s

    @classmethod
    def from_settings(cls, oauth2: OAuth2Settings) -> "TokenFetcher":
        """OAUTH2_CA_FILE trusted besides the system's CAs; private endpoints as
        OAUTH2_ALLOW_PRIVATE_ENDPOINTS says."""
        context = system_trust()
        if oauth2.oauth2_ca_file:
            context = ssl.create_default_context()
            context.load_verify_locations(cafile=oauth2.oauth2_ca_file)
        return cls(verify=context, allow_private=oauth2.oauth2_allow_private_endpoints)

    async def fetch(self, grant: Grant, protocol: str, user: str, now: datetime) -> Issued:
        """A token for the grant (its secrets opened), asked with the scopes for `protocol` at
        `now` (a JWT assertion's issue time); TokenError when there is none."""
        url = endpoint(grant)
        wanted = scopes(grant, protocol)
        bound = log.bind(endpoint=normal_host(httpx.URL(url).host), grant=grant.grant)
        secret = grant.client_secret.reveal() or None
        transport = _BoundedTransport(self._verify, self._allow_private)
        client = AsyncOAuth2Client(
            client_id=grant.client_id,
            client_secret=secret,
            scope=" ".join(wanted),
            token_endpoint_auth_method="client_secret_post" if secret else "none",
            transport=transport,
            timeout=httpx.Timeout(self._timeout_s, connect=self._timeout_s * CONNECT_SHARE),
            trust_env=False,
            follow_redirects=False,
        )
        body: dict[str, str] = {"scope": " ".join(wanted)}
        if grant.grant == "refresh_token":
            body["refresh_token"] = grant.refresh_token.reveal()
        elif grant.grant == "jwt_bearer":
            subject = grant.subject or user
            body["assertion"] = assertion.signed(
                grant.private_key.reveal(), grant.client_id, subject, url, wanted, now
            )
        kind = JWT_BEARER_GRANT if grant.grant == "jwt_bearer" else grant.grant
        try:
            async with asyncio.timeout(self._timeout_s), client:
                token = await client.fetch_token(url, grant_type=kind, **body)
        except OAuthError as exc:
            bound.info("token endpoint refused", error=_clean(exc.error))
            raise TokenError(
                _clean(exc.error) or "refused", _clean(exc.description), refused=True
            ) from None
        except _TooLarge as exc:
            raise TokenError("bad_response", str(exc), refused=False) from None
        except httpx.ConnectError as exc:
            if transport.backend.blocked:
                raise TokenError(
                    "blocked_endpoint", transport.backend.blocked, refused=False
                ) from None
            raise TokenError("unreachable", _clean(exc), refused=False) from None
        except (TimeoutError, httpx.TimeoutException):
            raise TokenError(
                "unreachable", f"no answer within {self._timeout_s:g} s", refused=False
            ) from None
        except httpx.HTTPStatusError as exc:
            raise TokenError(
                "unreachable", f"HTTP {exc.response.status_code}", refused=False
            ) from None
        except ValueError as exc:
            raise TokenError("bad_response", _clean(exc), refused=False) from None
        except (httpx.HTTPError, OSError) as exc:
            bound.info("token endpoint unreachable", error=type(exc).__name__)
            why = _clean(exc) or type(exc).__name__
            raise TokenError("unreachable", why, refused=False) from None
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise TokenError("bad_response", "the answer holds no access_token", refused=False)
        expires = token.get("expires_in")
        rotated = token.get("refresh_token")
        return Issued(
            access_token=access,
            expires_in=float(expires) if isinstance(expires, int | float) else None,
            refresh_token=rotated if isinstance(rotated, str) and rotated else None,
            scope=token.get("scope") if isinstance(token.get("scope"), str) else None,
        )
