"""`/api/users`: owners and admins manage their organization's users and roles."""

from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, get, post
from litestar.params import JSONBody, QueryParameter

from controller.api import guards, validation
from controller.api.errors import ApiError, bad_request, forbidden
from controller.db import accounts
from controller.db.accounts import ROLES, Principal
from controller.security import hash_password
from shared.timefmt import iso_ms

PASSWORD_MIN = 10


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    password: str
    role: str = "member"


class User(msgspec.Struct, rename="camel"):
    public_id: str
    organization_id: int
    email: str
    role: str
    is_global_supporter: bool
    created_at: str


class UserPage(msgspec.Struct, rename="camel"):
    items: list[User]
    total: int
    page: int
    per_page: int


def _present(row: asyncpg.Record) -> User:
    return User(
        public_id=str(row["public_id"]),
        organization_id=row["organization_id"],
        email=row["email"],
        role=row["role"],
        is_global_supporter=row["is_global_supporter"],
        created_at=iso_ms(row["created_at"]),
    )


class UserController(Controller):
    path = "/api/users"
    tags = ["users"]

    @post("/", summary="Create a user in the caller's organization")
    async def create(
        self, request: Request[Principal, Any, Any], data: JSONBody[UserCreate]
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
        async with request.app.state.pool.acquire() as conn:
            try:
                row = await accounts.create_user(
                    conn, principal.organization_id, email, hash_password(data.password), data.role
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
        request: Request[Principal, Any, Any],
        page: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        per_page: Annotated[int, QueryParameter(name="perPage", ge=1, le=200)] = 50,
    ) -> UserPage:
        guards.requires_admin(request.user)
        async with request.app.state.pool.acquire() as conn:
            rows, total = await accounts.list_users(
                conn, request.user.organization_id, per_page, (page - 1) * per_page
            )
        return UserPage([_present(r) for r in rows], total, page, per_page)
