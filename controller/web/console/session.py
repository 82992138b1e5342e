"""Console sessions: a cookie holding an API token of the user, issued by the same throttled
login as `POST /api/auth/login` and revoked on logout, so a session has exactly the user's role
and expires, and disabling the user ends it.

The cookie is HttpOnly (no script reads it), Secure (never sent over plain HTTP, but browsers
treat `localhost` as secure), SameSite=Lax and scoped to `/console`; every POST under `/console`
also carries a CSRF token (`csrf_config`).
"""

import asyncpg
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import Cookie
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Middleware,
    Receive,
    Scope,
    Send,
)

from controller.access import accounts_store as accounts
from controller.access.credentials import token_digest
from controller.secrets.box import SecretBox
from controller.web.request_types import AnyConnection
from shared.clock import Clock

COOKIE = "mp_session"
PREFIX = "/console"
LOGIN_PATH = f"{PREFIX}/login"
CSRF_PURPOSE = "console-csrf"
# Paths a visitor without a session may open: the login form and the console's own assets.
_OPEN = (LOGIN_PATH, f"{PREFIX}/static/")


def session_cookie(token: str, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=token,
        path=PREFIX,
        max_age=max_age,
        secure=True,
        httponly=True,
        samesite="lax",
    )


def expired_cookie() -> Cookie:
    return Cookie(
        key=COOKIE, value="", path=PREFIX, max_age=0, secure=True, httponly=True, samesite="lax"
    )


def csrf_middleware(box: SecretBox) -> DefineMiddleware:
    """Litestar's double-submit CSRF check (HMAC-signed token in an HttpOnly cookie and in each
    form's `_csrf_token` field) on every unsafe request under `/console`."""
    secret = box.subkeys(CSRF_PURPOSE)[0].hex()
    config = CSRFConfig(
        secret=secret,
        cookie_name="mp_csrf",
        cookie_path=PREFIX,
        cookie_secure=True,
        cookie_httponly=True,
        cookie_samesite="strict",
    )
    return DefineMiddleware(CSRFMiddleware, config=config)


def _token_of(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, token = part.strip().partition("=")
            if key == COOKIE and token:
                return token
    return None


def session_auth(pool: asyncpg.Pool, clock: Clock) -> Middleware:
    """Put the session's `Principal` (looked up in `pool`) in `scope["user"]` (and the token's
    digest in `scope["auth"]`); without a valid session, a redirect to the login form (303 for
    a page, 401 for the live-update fetches, which must not follow a redirect into HTML)."""
    return lambda app: _session_auth(app, pool, clock)


def _session_auth(app: ASGIApp, pool: asyncpg.Pool, clock: Clock) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"].startswith(_OPEN):
            await app(scope, receive, send)
            return
        token = _token_of(scope)
        principal = None
        if token is not None:
            digest = token_digest(token)
            async with pool.acquire() as conn:
                principal = await accounts.principal_for_token(conn, digest, clock.now())
        if principal is None:
            await _to_login(scope, send)
            return
        scope["user"] = principal
        scope["auth"] = digest
        await app(scope, receive, send)

    return middleware


async def _to_login(scope: Scope, send: Send) -> None:
    headers: list[tuple[bytes, bytes]] = [(b"cache-control", b"no-store")]
    if scope["path"].endswith(".part"):
        status = 401
    else:
        status = 303
        headers.append((b"location", LOGIN_PATH.encode()))
    if _token_of(scope) is not None:  # an expired or revoked session: forget it
        headers.append((b"set-cookie", expired_cookie().to_header(header="").encode()))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": headers,
    }
    await send(start)
    body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}
    await send(body)


def principal_of(request: AnyConnection) -> accounts.Principal:
    principal: accounts.Principal = request.scope["user"]
    return principal
