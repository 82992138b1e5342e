"""The settings of the `api` role's surfaces: where it listens, logins to mailprobe itself,
subscriptions to the public status pages."""

import ipaddress
from typing import Annotated

import msgspec
from msgspec import Meta

from shared.settings import check_tls


class ApiSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Where and how the `api` role listens."""

    api_host: Annotated[str, Meta(description="address the API listens on")] = "127.0.0.1"
    api_port: Annotated[int, Meta(ge=1, le=65535, description="port the API listens on")] = 8080
    instance_key: Annotated[
        str | None,
        Meta(
            description="a secret this controller proves it holds at `/instance-proof` (an HMAC of"
            " the caller's challenge), so that command-line tools check the server before sending"
            " it a token; `make run` sets it and keeps it in `.run/instance.key`. Unset: the path"
            " answers 404"
        ),
    ] = None
    receiver_domain: Annotated[
        str | None,
        Meta(
            description="the domain whose MX points at the agents' receivers: a heartbeat "
            "monitor's address is its local part at it. Unset: the API shows the local part "
            "and says the domain is not set",
        ),
    ] = None
    api_tls_cert_file: Annotated[
        str | None,
        Meta(
            description="PEM certificate (chain) file: the API serves HTTPS; "
            "needs `API_TLS_KEY_FILE`"
        ),
    ] = None
    api_tls_key_file: Annotated[
        str | None, Meta(description="PEM private key file of `API_TLS_CERT_FILE`")
    ] = None
    api_body_seconds: Annotated[
        int,
        Meta(
            ge=1,
            le=3600,
            description="a request body must arrive whole within this many seconds of its "
            "headers; past it 408 and the connection is closed",
        ),
    ] = 60
    api_head_seconds: Annotated[
        int,
        Meta(
            ge=1,
            le=3600,
            description="a request head (request line and headers) must arrive whole within this"
            " many seconds of the connection's start, or of its first byte on a kept-alive"
            " connection; past it 408 and the connection is closed",
        ),
    ] = 10
    api_write_seconds: Annotated[
        int,
        Meta(
            ge=1,
            le=3600,
            description="while an answer is not all taken by its client, the client must take"
            " 16 KiB more of it (or all that waits) every this many seconds; else the"
            " connection is reset and its buffers freed (also the kernel's own deadline,"
            " TCP_USER_TIMEOUT, for the tail of a closed connection)",
        ),
    ] = 30
    api_max_connections: Annotated[
        int,
        Meta(
            ge=1,
            description="connections the API holds open (lowered to leave 128 of the process's"
            " open-files limit to its own work); at it a new connection takes the place of one"
            " waiting for a request, from the address holding the most, the longest waiting of"
            " those, or is answered 503",
        ),
    ] = 1000
    api_requests_per_second_per_address: Annotated[
        float,
        Meta(
            ge=0,
            description="requests a second the API takes from one source address (an IPv6"
            " address: its /64), in bursts of `API_REQUEST_BURST_PER_ADDRESS`; past it 429 with"
            " Retry-After. 0: no bound",
        ),
    ] = 50.0
    api_request_burst_per_address: Annotated[
        int,
        Meta(
            ge=1,
            description="requests one source address may make at once before"
            " `API_REQUESTS_PER_SECOND_PER_ADDRESS` holds it",
        ),
    ] = 200
    api_max_connections_per_address: Annotated[
        int,
        Meta(
            ge=1,
            description="connections the API holds open from one source address (the socket's"
            " peer, an IPv6 peer by its /64; one in `API_TRUSTED_PROXIES` is held to"
            " `API_MAX_CONNECTIONS` only); past it 503 and the connection is closed",
        ),
    ] = 64
    api_trusted_proxies: Annotated[
        str,
        Meta(
            description="reverse proxies (addresses or CIDR networks, comma-separated) whose "
            "`X-Forwarded-For` names the client; empty: the client is the socket peer"
        ),
    ] = ""

    @property
    def trusted_proxies(self) -> list[str]:
        """API_TRUSTED_PROXIES as uvicorn's `forwarded_allow_ips` takes them."""
        found = []
        for proxy in (p.strip() for p in self.api_trusted_proxies.split(",")):
            if not proxy:
                continue
            try:
                found.append(str(ipaddress.ip_network(proxy, strict=False)))
            except ValueError:
                raise ValueError(
                    f"API_TRUSTED_PROXIES: {proxy!r} is not an IP address or CIDR network"
                ) from None
        return found

    def __post_init__(self) -> None:
        self.trusted_proxies  # noqa: B018  # raises ValueError naming the setting
        check_tls(self, "API_TLS_CERT_FILE", "API_TLS_KEY_FILE")


class AccessSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Logins to mailprobe itself: tokens, throttling, lockouts, password hashing."""

    token_ttl_seconds: Annotated[
        int, Meta(ge=60, description="lifetime of a bearer token from login or the CLI")
    ] = 30 * 24 * 3600
    login_address_per_minute: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,
            description="login attempts (both login endpoints) one client address may make per "
            "minute that do not succeed, shared by the replicas; past it 429. Each replica also "
            "refuses more than three times as many requests of any kind before any other work",
        ),
    ] = 20
    login_account_failures: Annotated[
        int,
        Meta(
            ge=1,
            le=1000,
            description="failed logins to one account before it is locked for "
            "`LOGIN_LOCKOUT_SECONDS` (doubling with each further failure); counted apart for "
            "addresses that logged in to that account in the last 30 days",
        ),
    ] = 5
    login_lockout_seconds: Annotated[
        int, Meta(ge=1, le=86_400, description="first lockout of an account after its failures")
    ] = 30
    login_lockout_max_seconds: Annotated[
        int, Meta(ge=1, le=86_400, description="longest lockout of an account (the cap)")
    ] = 900
    password_hash_workers: Annotated[
        int,
        Meta(
            ge=1,
            le=64,
            description="threads hashing and verifying passwords (argon2, 64 MiB each) off the "
            "event loop, at a lower CPU priority (nice 10, Linux) so the loop goes first",
        ),
    ] = 2
    password_hash_queue: Annotated[
        int,
        Meta(
            ge=0,
            le=10_000,
            description="password checks waiting for a thread; past it logins answer 503 with "
            "`Retry-After`",
        ),
    ] = 16

    def __post_init__(self) -> None:
        if self.login_lockout_max_seconds < self.login_lockout_seconds:
            raise ValueError("LOGIN_LOCKOUT_MAX_SECONDS must be at least LOGIN_LOCKOUT_SECONDS")


class StatusPageSettings(msgspec.Struct, rename="upper", frozen=True, kw_only=True):
    """Subscriptions to customers' public status pages."""

    status_subscribe_per_page_per_hour: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="confirmation e-mails one public status page sends per hour at most for "
            "anonymous subscription requests; more are a 429",
        ),
    ] = 20
    status_subscribe_per_address_per_day: Annotated[
        int,
        Meta(
            ge=1,
            le=1000,
            description="confirmation e-mails one address gets per 24 hours at most, over every "
            "status page; further requests answer as usual but mail nothing",
        ),
    ] = 3
