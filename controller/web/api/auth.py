"""Bearer-token authentication for `/api/*`, `POST /api/auth/login` and `POST /api/auth/logout`.

Logging in (here and AlertSite's `POST /api/v3/access-tokens`, both through `login_token`) is
throttled per client address and per account (controller.access.throttle) and checks the password
in the
bounded `PasswordPool`, never on the event loop.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import msgspec
import structlog
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.params import JSONBody
from litestar.types import ASGIApp

from controller.access import accounts_store as accounts
from controller.access import throttle_store as logins
from controller.access.accounts_store import Principal
from controller.access.credentials import PasswordPool, PasswordsBusy, new_token, token_digest
from controller.access.throttle import Keys, Policy, retry_after_seconds
from controller.monitors import validation
from controller.settings import AccessSettings
from controller.web.api.errors import ApiError
from controller.web.authed_request import AuthedRequest
from controller.web.request_types import AnyConnection, AnyRequest
from shared.clock import Clock
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

_UNAUTHORIZED = "Unauthorized: send a valid token as `Authorization: Bearer <token>`"
LOGIN_PATHS = frozenset({"/api/auth/login", "/api/v3/access-tokens", "/console/login"})
# Each replica's own first line, in memory, before any database work: a flood from one address
# is refused here, so it cannot keep PostgreSQL connections (which the pipeline needs) busy.
FLOOD_FACTOR = 3


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    def __init__(self, app: ASGIApp, pool: asyncpg.Pool, clock: Clock, exclude: list[str]) -> None:
        super().__init__(app, exclude=exclude)
        self.pool = pool
        self.clock = clock

    async def authenticate_request(self, connection: AnyConnection) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, _UNAUTHORIZED)
        digest = token_digest(token.strip())
        async with self.pool.acquire() as conn:
            principal = await accounts.principal_for_token(conn, digest, self.clock.now())
        if principal is None:
            raise ApiError(401, "Unauthorized: the token is unknown, expired or revoked")
        return AuthenticationResult(user=principal, auth=digest)


@dataclass(frozen=True)
class Logins:
    """What logging in needs, made once per app (controller.web.services)."""

    passwords: PasswordPool
    keys: Keys
    policy: Policy
    clock: Clock  # the instant attempts, lockouts and tokens count from

    @classmethod
    def from_settings(cls, access: AccessSettings, secret: bytes, clock: Clock) -> "Logins":
        policy = Policy(
            address_per_minute=access.login_address_per_minute,
            account_failures=access.login_account_failures,
            lockout=timedelta(seconds=access.login_lockout_seconds),
            lockout_max=timedelta(seconds=access.login_lockout_max_seconds),
        )
        pool = PasswordPool(access.password_hash_workers, access.password_hash_queue)
        return cls(pool, Keys(secret), policy, clock)


def client_address(connection: AnyConnection) -> str:
    """The socket peer; behind API_TRUSTED_PROXIES, uvicorn has put the forwarded client there."""
    return connection.client.host if connection.client else "unknown"


def flood_guard(access: AccessSettings) -> RateLimitConfig:
    """Litestar's rate limiter on the login endpoints: every request per address, per replica."""

    # A coroutine function: Litestar runs a plain one in a worker thread, a hop through the
    # thread pool for every request the middleware sees (all of the API's).
    async def is_login(request: AnyRequest) -> bool:
        # POSTs only: opening the console's login form is not an attempt.
        return request.method == "POST" and request.scope["path"] in LOGIN_PATHS

    return RateLimitConfig(
        rate_limit=("minute", FLOOD_FACTOR * access.login_address_per_minute),
        identifier_for_request=client_address,
        check_throttle_handler=is_login,
    )


def _seconds(wait: timedelta | None) -> float | None:
    return None if wait is None else round(wait.total_seconds(), 3)


def _too_many(wait: timedelta) -> ApiError:
    seconds = retry_after_seconds(wait)
    return ApiError(
        429,
        f"Too many login attempts: try again in {seconds} s",
        code="too_many_requests",
        headers={"Retry-After": str(seconds)},
    )


def busy() -> ApiError:
    return ApiError(
        503,
        "Busy checking other passwords: try again in a moment",
        code="busy",
        headers={"Retry-After": "1"},
    )


async def login_token(
    pool: asyncpg.Pool,
    login: Logins,
    address: str,
    credentials: tuple[str, str],
    ttl_seconds: int,
) -> tuple[str, datetime] | None:
    """A new bearer token and its expiry for these credentials (e-mail, password) from the
    client at `address`; None when they are wrong or the user is disabled. Raises a 429 ApiError
    when throttled, a 503 one when the password threads are all busy."""
    email, password = credentials
    address_key = login.keys.address(address)
    try:
        with login.passwords.reserve() as hashing:
            async with pool.acquire() as conn:
                user = await accounts.user_for_login(conn, email.strip())
                known = user is not None and await logins.is_known_address(
                    conn, user.id, address, login.clock.now()
                )
                account_key = login.keys.account(email, address if known else None)
                wait = await logins.take(
                    conn, address_key, account_key, login.policy, login.clock.now()
                )
            if wait is not None:
                log.info("login throttled", address=address, retry_after_s=_seconds(wait))
                raise _too_many(wait)
            # An unknown e-mail costs the same hashing as a wrong password: no probing for users.
            ok = await hashing.verify(user.password_hash if user else None, password)
    except PasswordsBusy:
        log.warning("login refused: password threads busy", address=address)
        raise busy() from None
    if not ok or user is None or user.disabled_at is not None:
        async with pool.acquire() as conn:
            locked_for = await logins.failed(conn, account_key, login.policy, login.clock.now())
        log.info("login failed", address=address, locked_for_s=_seconds(locked_for))
        return None
    token, digest = new_token()
    async with pool.acquire() as conn, conn.transaction():
        now = login.clock.now()
        await logins.succeeded(conn, address_key, account_key, now)
        await logins.remember_address(conn, user.id, address, now)
        expires_at = await accounts.issue_token(conn, user.id, digest, ttl_seconds, now)
    return token, expires_at


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    password: str


class LoginResponse(msgspec.Struct, rename="camel"):
    token: str
    expires_at: str


class Me(msgspec.Struct, rename="camel"):
    public_id: str
    email: str
    organization_id: int
    role: str
    is_global_supporter: bool
    # One of the deployment's operators: reads every country's agents and health.
    is_operator: bool = False


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post("/login", status_code=200, summary="Exchange e-mail and password for a bearer token")
    async def login(
        self,
        request: AnyRequest,
        data: JSONBody[LoginRequest],
        pool: NamedDependency[asyncpg.Pool],
        logins: NamedDependency[Logins],
        access_settings: NamedDependency[AccessSettings],
    ) -> LoginResponse:
        validation.no_nul(data, "")
        issued = await login_token(
            pool,
            logins,
            client_address(request),
            (data.email, data.password),
            access_settings.token_ttl_seconds,
        )
        if issued is None:
            raise ApiError(401, "Unauthorized: wrong e-mail or password", code="bad_credentials")
        token, expires_at = issued
        return LoginResponse(token=token, expires_at=iso_ms(expires_at))

    @post("/logout", status_code=204, summary="Revoke the calling token")
    async def logout(
        self, request: Request[Principal, bytes, State], pool: NamedDependency[asyncpg.Pool]
    ) -> None:
        async with pool.acquire() as conn:
            await accounts.revoke_token(conn, request.auth)
        log.info("logged out", user=request.user.email)

    @get("/me", summary="The caller")
    async def me(self, request: AuthedRequest) -> Me:
        p = request.user
        return Me(
            public_id=str(p.user_public_id),
            email=p.email,
            organization_id=p.organization_id,
            role=p.role,
            is_global_supporter=p.is_global_supporter,
            is_operator=p.is_operator,
        )
