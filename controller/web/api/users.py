"""`/api/users`: owners and admins manage their organization's users and roles, disable and
enable them, and revoke their tokens.

Rules for acting on another user (disable, enable, revoke tokens): owners and admins only; a user
of another organization is a 404; only owners act on owners; nobody disables themselves; and an
organization always keeps an enabled owner (checked under a lock on the organization, so two owners
disabling each other at once cannot both succeed).
"""

from typing import Annotated
from uuid import UUID

import asyncpg
import msgspec
import structlog
from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from controller.access import accounts_store as accounts
from controller.access.accounts_store import ROLES, Principal
from controller.access.accounts_store import User as StoredUser
from controller.access.credentials import PasswordsBusy
from controller.db.pool import Conn
from controller.monitors import validation
from controller.web.api import guards
from controller.web.api.auth import Logins, busy
from controller.web.api.errors import ApiError, bad_request, forbidden, not_found
from controller.web.api.page import Page, published
from controller.web.authed_request import AuthedRequest
from controller.web.services import ClockDep, PoolDep
from shared.timefmt import iso_ms

log = structlog.get_logger(__name__)

PASSWORD_MIN = 10


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    password: str
    role: str = "member"


class UserUpdate(msgspec.Struct, forbid_unknown_fields=True):
    disabled: bool


class User(msgspec.Struct, rename="camel"):
    public_id: str
    organization_id: int
    email: str
    role: str
    is_global_supporter: bool
    created_at: str
    disabled: bool
    # One of the deployment's operators (set only by `python -m controller operator`).
    is_operator: bool = False


UserPage = Annotated[Page[User], published("UserPage")]


def _present(row: StoredUser) -> User:
    return User(
        public_id=str(row.public_id),
        organization_id=row.organization_id,
        email=row.email,
        role=row.role,
        is_global_supporter=row.is_global_supporter,
        created_at=iso_ms(row.created_at),
        disabled=row.disabled_at is not None,
        is_operator=row.is_operator,
    )


UserId = Annotated[str, PathParameter(name="userPublicId", description="public UUID")]


async def _target(conn: Conn, principal: Principal, raw_id: str) -> StoredUser:
    """The user of the caller's organization an admin acts on, under the rules above."""
    try:
        public_id = UUID(raw_id)
    except ValueError:
        raise bad_request("userPublicId", "user public ID (UUID) required") from None
    row = await accounts.user_in_organization(conn, public_id, principal.organization_id)
    if row is None:
        raise not_found("User not found")
    if row.role == "owner" and principal.role != "owner":
        raise forbidden("Forbidden: only owners may act on owners")
    return row


class UserController(Controller):
    path = "/api/users"
    tags = ["users"]

    @post("/", summary="Create a user in the caller's organization")
    async def create(
        self,
        request: AuthedRequest,
        logins: NamedDependency[Logins],
        pool: PoolDep,
        data: JSONBody[UserCreate],
    ) -> User:
        principal = request.user
        guards.requires_admin(principal)
        validation.no_nul(data, "")
        email = validation.email(data.email, "email")
        if email is None:
            raise bad_request("email", "email is required")
        if data.role not in ROLES:
            raise bad_request("role", f"role must be one of {', '.join(ROLES)}")
        if data.role == "owner" and principal.role != "owner":
            raise forbidden("Forbidden: only owners may create owners")
        if len(data.password) < PASSWORD_MIN:
            raise bad_request("password", f"password must have at least {PASSWORD_MIN} characters")
        try:
            with logins.passwords.reserve() as hashing:
                password_hash = await hashing.hash(data.password)
        except PasswordsBusy:
            raise busy() from None
        async with pool.acquire() as conn:
            try:
                row = await accounts.create_user(
                    conn, principal.organization_id, email, password_hash, data.role
                )
            except asyncpg.UniqueViolationError:
                raise ApiError(
                    409,
                    "a user with this email exists already",
                    code="email_taken",
                    fields=["email"],
                ) from None
        return _present(row)

    @get("/", summary="List the organization's users")
    async def list_users(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        page: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        per_page: Annotated[int, QueryParameter(name="perPage", ge=1, le=200)] = 50,
    ) -> UserPage:
        guards.requires_admin(request.user)
        async with pool.acquire() as conn:
            rows, total = await accounts.list_users(
                conn, request.user.organization_id, per_page, (page - 1) * per_page
            )
        return Page([_present(r) for r in rows], total, page, per_page)

    @patch("/{userPublicId:str}", summary="Disable or enable a user of the organization")
    async def update(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        clock: ClockDep,
        user_id: UserId,
        data: JSONBody[UserUpdate],
    ) -> User:
        """`{"disabled": true}`: the user's tokens stop working at once (they are deleted) and
        logins are refused; `false` lets them log in again."""
        principal = request.user
        guards.requires_admin(principal)
        async with pool.acquire() as conn, conn.transaction():
            await accounts.lock_organization(conn, principal.organization_id)
            target = await _target(conn, principal, user_id)
            if data.disabled and target.id == principal.user_id:
                raise bad_request("disabled", "you cannot disable yourself")
            if (
                data.disabled
                and target.role == "owner"
                and not await accounts.other_enabled_owners(
                    conn, principal.organization_id, target.id
                )
            ):
                raise ApiError(
                    409,
                    "the organization's last enabled owner cannot be disabled",
                    code="last_owner",
                    fields=["disabled"],
                )
            row = await accounts.set_disabled(conn, target.id, data.disabled, clock.now())
        log.info("user disabled" if data.disabled else "user enabled", user=row.email)
        return _present(row)

    @post(
        "/{userPublicId:str}/revoke-tokens",
        status_code=204,
        summary="Revoke every token of a user of the organization",
    )
    async def revoke_tokens(self, request: AuthedRequest, pool: PoolDep, user_id: UserId) -> None:
        guards.requires_admin(request.user)
        async with pool.acquire() as conn:
            target = await _target(conn, request.user, user_id)
            await accounts.revoke_user_tokens(conn, target.id)
        log.info("user tokens revoked", user=target.email)
