"""Bearer-token authentication for `/api/*` and `POST /api/auth/login`."""

from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.params import JSONBody

from controller.api import validation
from controller.api.errors import ApiError
from controller.db import accounts
from controller.db.accounts import Principal
from controller.security import new_token, token_digest, verify_password
from shared.timefmt import iso_ms

_UNAUTHORIZED = "Unauthorized: send a valid token as `Authorization: Bearer <token>`"


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, _UNAUTHORIZED)
        pool: asyncpg.Pool = connection.app.state.pool
        async with pool.acquire() as conn:
            principal = await accounts.principal_for_token(conn, token_digest(token.strip()))
        if principal is None:
            raise ApiError(401, "Unauthorized: the token is unknown or expired")
        return AuthenticationResult(user=principal, auth=None)


async def login_token(
    pool: asyncpg.Pool, email: str, password: str, ttl_seconds: int
) -> tuple[str, datetime] | None:
    """A new bearer token and its expiry for these credentials; None when they are wrong."""
    async with pool.acquire() as conn:
        user = await accounts.user_for_login(conn, email.strip())
        # An unknown e-mail costs the same hashing as a wrong password: no probing for users.
        if not verify_password(user["password_hash"] if user else None, password) or not user:
            return None
        token, digest = new_token()
        return token, await accounts.issue_token(conn, user["id"], digest, ttl_seconds)


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


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post("/login", status_code=200, summary="Exchange e-mail and password for a bearer token")
    async def login(
        self, request: Request[Any, Any, Any], data: JSONBody[LoginRequest]
    ) -> LoginResponse:
        validation.no_nul(data, "")
        issued = await login_token(
            request.app.state.pool,
            data.email,
            data.password,
            request.app.state.settings.token_ttl_seconds,
        )
        if issued is None:
            raise ApiError(401, "Unauthorized: wrong e-mail or password", code="bad_credentials")
        token, expires_at = issued
        return LoginResponse(token=token, expires_at=iso_ms(expires_at))

    @get("/me", summary="The caller")
    async def me(self, request: Request[Principal, Any, Any]) -> Me:
        p = request.user
        return Me(
            public_id=str(p.user_public_id),
            email=p.email,
            organization_id=p.organization_id,
            role=p.role,
            is_global_supporter=p.is_global_supporter,
        )
