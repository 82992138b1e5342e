"""`/api/customers`: the customers monitors belong to (numeric `id` and public UUID)."""

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from controller.access import customers_store as customers
from controller.access.customers_store import Customer as StoredCustomer
from controller.monitors import validation
from controller.web.api import guards
from controller.web.api.errors import invalid_customer, not_found
from controller.web.api.page import Page, published
from controller.web.authed_request import AuthedRequest
from controller.web.services import PoolDep
from shared.timefmt import iso_ms


class CustomerCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class Customer(msgspec.Struct, rename="camel"):
    id: int
    public_id: str
    organization_id: int
    name: str
    created_at: str
    updated_at: str


CustomerPage = Annotated[Page[Customer], published("CustomerPage")]


def _present(row: StoredCustomer) -> Customer:
    return Customer(
        id=row.id,
        public_id=str(row.public_id),
        organization_id=row.organization_id,
        name=row.name,
        created_at=iso_ms(row.created_at),
        updated_at=iso_ms(row.updated_at),
    )


class CustomerController(Controller):
    path = "/api/customers"
    tags = ["customers"]

    @post("/", summary="Create a customer (owners and admins)")
    async def create(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        data: JSONBody[CustomerCreate],
    ) -> Customer:
        guards.requires_admin(request.user)
        validation.no_nul(data, "")
        name = validation.name(data.name)
        async with pool.acquire() as conn:
            row = await customers.create(conn, request.user.organization_id, name)
        return _present(row)

    @get("/", summary="List customers")
    async def list_customers(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        search: Annotated[str | None, QueryParameter(max_length=200)] = None,
        page: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        per_page: Annotated[int, QueryParameter(name="perPage", ge=1, le=200)] = 50,
    ) -> CustomerPage:
        validation.no_nul(search, "search")
        async with pool.acquire() as conn:
            rows, total = await customers.list_page(
                conn,
                guards.read_scope(request.user),
                search or None,
                per_page,
                (page - 1) * per_page,
            )
        return Page([_present(r) for r in rows], total, page, per_page)

    @get("/{customer_id:str}", summary="Get a customer by numeric id or public UUID")
    async def get_customer(
        self,
        request: AuthedRequest,
        pool: PoolDep,
        customer_id: FromPath[str],
    ) -> Customer:
        ident = customers.parse_ident(customer_id)
        if ident is None:
            raise invalid_customer()
        async with pool.acquire() as conn:
            row = await customers.find(conn, ident, guards.read_scope(request.user))
        if row is None:
            raise not_found("Customer not found")
        return _present(row)
