"""Role rules as plain functions (`requires_*`): each raises a 403 `ApiError` or returns."""

from controller.access.accounts_store import Principal
from controller.web.api.errors import forbidden


def read_scope(principal: Principal) -> int | None:
    """The organization a caller reads in; None for global supporters, who read every one."""
    return None if principal.is_global_supporter else principal.organization_id


def requires_writer(principal: Principal) -> None:
    """Creating or deleting: not readonly users, not global supporters."""
    if principal.is_global_supporter:
        raise forbidden("Forbidden: global supporters may read but not change anything")
    if principal.role == "readonly":
        raise forbidden("Forbidden: readonly users may not create or delete")


def requires_updater(principal: Principal, fields: set[str]) -> None:
    """Updating: readonly users may change `status` only; global supporters nothing."""
    if principal.is_global_supporter:
        raise forbidden("Forbidden: global supporters may not update")
    if principal.role == "readonly" and fields - {"status"}:
        raise forbidden(
            "Forbidden: readonly users may only change status",
        )


def requires_admin(principal: Principal) -> None:
    """Managing users and customers: owners and admins of the organization."""
    if principal.is_global_supporter:
        raise forbidden("Forbidden: global supporters may read but not change anything")
    if principal.role not in ("owner", "admin"):
        raise forbidden("Forbidden: only owners and admins may do this")


def sees_every_country(principal: Principal) -> bool:
    """Whether the caller reads the agents and the fleet's and oracles' health of every country:
    the deployment's operators, and global supporters, who read everything; anyone else reads
    only their organization's countries (`fleet.health_store.countries_of`)."""
    return principal.is_operator or principal.is_global_supporter


def requires_admin_reader(principal: Principal) -> None:
    """Reading the deployment's own health (its agents, resolvers and lists: what owners are
    told of by `fleet` notices): the deployment's operators and global supporters (every
    country), owners and admins of an organization (its own countries)."""
    if sees_every_country(principal):
        return
    if principal.role not in ("owner", "admin"):
        raise forbidden("Forbidden: only owners and admins may read the fleet's health")
