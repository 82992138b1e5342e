"""Every write of a monitor row: create, update (a status change is one), delete.

The native API, the AlertSite-compatible API and the console write monitors only through here
(`apply` goes through the native API), each taking the write model
(`controller.monitors.write_model.MonitorWrite`), which `write_values` checks and turns into
columns, each write in one transaction that
- for a create: resolves the customer, admits one more monitor (`fair_use.admit_new_monitor`,
  under the organization's row lock), inserts it;
- for an update: reads the row locked, lets the surface turn its request into the write model,
  clears the due time when the interval or status is set (`monitor_change_rules`), refuses a
  change that moves a stored secret the request did not send again (`secret_binding`: the
  surface names the fields its way), keeps a secret sent again as stored and a config that
  says what the stored one says (`config.same`), resolves a new customer, and writes nothing
  at all when nothing changes;
- for both: admits the checks, slot-seconds and account logins the write adds
  (`fair_use.admit_checks`; a refusal rolls the write back), naming the request's fields as the
  surface spells them (`budget`: column → field), and the names it lists for the blocklists
  (`fair_use.admit_blocklist_names`);
- for a delete: reads the row, lets the surface check the caller may, deletes it.

Refusals are `controller.monitors.errors.Refused` (or the surface's own, from its callbacks);
each surface shows them its own way (JSON, AlertSite's shape, a page).
"""

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from litestar import Request

from controller.db.pool import Conn
from controller.monitors import change_rules as rules
from controller.monitors import config as config_rules
from controller.monitors import fair_use, kinds, secret_binding, write_values
from controller.monitors import store as monitors
from controller.monitors.errors import NotFound, Refused, invalid
from controller.monitors.store import Monitor
from controller.monitors.write_model import MonitorWrite
from controller.monitors.write_values import MonitorValues
from controller.secrets.box import SecretBox, SecretBoxError

log = structlog.get_logger(__name__)

# The surface's customer for the row, resolved inside the write's transaction.
CustomerOf = Callable[[Conn], Awaitable[int]]
# The surface's 400 for a change that moves stored secrets without them, given the monitor's
# type after the change and, by secret path, the fields that moved it
# (`secret_binding.moved_each`).
SecretRefusal = Callable[[str, Mapping[str, list[str]]], Exception]


@dataclass(frozen=True)
class Lookup:
    """Which monitor a write is for, as the surface may see it."""

    ident: UUID | int
    types: Sequence[str]
    scope: int | None  # the caller's organization; None: any (a global supporter)
    missing: Callable[[], Exception] = lambda: _not_found()  # the surface's 404


@dataclass
class Edit:
    """What an update request changes, as the write model, and how its surface names
    refusals."""

    write: MonitorWrite
    refuse_moved_secret: SecretRefusal
    customer: CustomerOf | None = None  # a new customer, resolved after the binding check
    budget: Mapping[str, str] = field(default_factory=dict)  # column → the request's field


# The surface turns its request into an `Edit` once the row is read (locked); role checks and
# request validation that need the monitor happen in it, so another organization's monitor is a
# 404 before any 403 or 400.
EditOf = Callable[[Conn, Monitor], Awaitable[Edit]]


@dataclass(frozen=True)
class MonitorWrites:
    pool: asyncpg.Pool
    box: SecretBox
    limits: fair_use.Limits
    token_hosts: Sequence[str] = ()  # OAUTH2_TOKEN_HOSTS: a custom token endpoint's hosts

    @classmethod
    def of(cls, request: Request[Any, Any, Any]) -> "MonitorWrites":
        state = request.app.state
        settings = state.settings
        return cls(state.pool, state.secret_box, fair_use.Limits.of(settings), settings.token_hosts)

    async def create(
        self,
        organization_id: int,
        write: MonitorWrite,
        *,
        customer: CustomerOf,
        budget: Mapping[str, str],
    ) -> Monitor:
        """Insert the monitor `write` asks for (checked before the customer is resolved) within
        fair use."""
        values = write_values.create_values(write, self.box, self.token_hosts).columns()
        org, lim = organization_id, self.limits
        async with self.pool.acquire() as conn, conn.transaction():
            await _dependencies(conn, org, values.get("depends_on"), None)
            row_values = {**values, "customer_id": await customer(conn)}
            await fair_use.admit_new_monitor(conn, lim, org)
            monitor = await monitors.insert(conn, org, row_values)
            await fair_use.admit_checks(
                conn, lim, org, monitor.id, fair_use.NOTHING, rules.creating(budget)
            )
            listed = fair_use.listed_names(monitor.reputation)
            await fair_use.admit_blocklist_names(conn, lim, org, frozenset(), listed)
        log.info("monitor created", monitor=str(monitor.public_id), organization=org)
        return monitor

    async def update(self, lookup: Lookup, edit_of: EditOf) -> Monitor:
        """Apply the surface's edit to the monitor; the monitor as it is afterwards (unchanged,
        and not written, when the edit changes nothing)."""
        return await self._update(lookup, edit_of, self._columns)

    def _columns(self, write: MonitorWrite, monitor: Monitor) -> MonitorValues:
        return write_values.update_values(write, monitor, self.box, self.token_hosts)

    async def _update(
        self,
        lookup: Lookup,
        edit_of: EditOf,
        columns_of: Callable[[MonitorWrite, Monitor], MonitorValues],
    ) -> Monitor:
        async with self.pool.acquire() as conn, conn.transaction():
            monitor = await _get(conn, lookup, for_update=True)
            edit = await edit_of(conn, monitor)
            changes = rules.with_due_reset(columns_of(edit.write, monitor).columns())
            stored = monitors.stored_values(monitor)
            moved = secret_binding.moved_each(
                secret_binding.Target.of(stored), secret_binding.Target.of({**stored, **changes})
            )
            if moved:
                raise edit.refuse_moved_secret(_type_after(monitor, changes), moved)
            keep_unchanged_secrets(monitor, changes, self.box)
            keep_unchanged_config(monitor, changes)
            if edit.customer is not None:
                changes["customer_id"] = await edit.customer(conn)
            if rules.changes_nothing(stored, changes):
                return monitor
            org, lim = monitor.organization_id, self.limits
            await _dependencies(conn, org, changes.get("depends_on"), monitor.public_id)
            before = await fair_use.checks_of(conn, lim, org, monitor.id)
            updated = await monitors.update(conn, monitor.id, changes)
            fields = fair_use.budget_fields(changes, edit.budget)
            await fair_use.admit_checks(conn, lim, org, monitor.id, before, fields)
            if "reputation" in changes:
                await fair_use.admit_blocklist_names(
                    conn,
                    lim,
                    org,
                    fair_use.listed_names(monitor.reputation),
                    fair_use.listed_names(updated.reputation),
                )
        log.info("monitor updated", monitor=str(monitor.public_id), columns=sorted(changes))
        return updated

    async def set_status(self, lookup: Lookup, status: str, budget: Mapping[str, str]) -> Monitor:
        """Pause (`disabled`), resume (`active`) or hold (`maintenance`) the monitor: an
        update of its status alone."""

        async def edit_of(conn: Conn, monitor: Monitor) -> Edit:
            write = MonitorWrite(kind=kinds.of_type(monitor.type).name, status=status)
            return Edit(write, _never_moves, budget=budget)

        # The status alone: the monitor's other values are not checked again.
        return await self._update(
            lookup, edit_of, lambda write, _: write_values.common_values(write)
        )

    async def delete(self, lookup: Lookup, allowed: Callable[[Monitor], None]) -> None:
        """Delete the monitor; `allowed` raises when the caller may not (after the lookup, so
        another organization's monitor is a 404, never a 403)."""
        async with self.pool.acquire() as conn, conn.transaction():
            monitor = await _get(conn, lookup, for_update=False)
            allowed(monitor)
            await monitors.delete(conn, monitor.id)
        log.info("monitor deleted", monitor=str(monitor.public_id))


async def _dependencies(conn: Conn, org: int, declared: object, own: UUID | None) -> None:
    """Each monitor `dependsOn` names is another monitor of the organization (a 400 naming
    the field, never a hint of another organization's monitors)."""
    if not isinstance(declared, list):
        return
    ids = []
    for entry in declared:
        try:
            ids.append(UUID(entry))
        except ValueError:
            continue  # a host name
    if own in ids:
        raise invalid("dependsOn", "a monitor cannot depend on itself")
    missing = set(ids) - await monitors.of_organization(conn, org, ids)
    if missing:
        raise invalid("dependsOn", f"no monitor of the organization has the id {min(missing)}")


def _not_found() -> NotFound:
    return NotFound("Not found")


def _never_moves(monitor_type: str, moved: Mapping[str, list[str]]) -> Refused:
    """A status change moves no secret; kept for the type."""
    raise AssertionError(f"a status change moved a secret: {dict(moved)}")


async def _get(conn: Conn, lookup: Lookup, *, for_update: bool) -> Monitor:
    found = await monitors.get(
        conn, lookup.ident, lookup.types, lookup.scope, for_update=for_update
    )
    if found is None:
        raise lookup.missing()
    return found


def keep_unchanged_secrets(monitor: Monitor, changes: dict[str, object], box: SecretBox) -> None:
    """After the binding check: a secret sent again with the value already stored keeps its
    stored ciphertext, so sending it again (`apply` does, every run: it cannot see whether a
    secret changed) changes nothing: the credentials are not new (a login back-off goes on)."""
    config = changes.get("config")
    if not isinstance(config, dict):
        return
    kind = kinds.of_type(_type_after(monitor, changes))
    for path in (*kind.secrets, *kind.grant_secrets):
        *parents, leaf = path.split(".")
        new_holder: object = config
        old_holder: object = monitors.stored_config(monitor)
        for step in parents:
            new_holder = new_holder.get(step) if isinstance(new_holder, dict) else None
            old_holder = old_holder.get(step) if isinstance(old_holder, dict) else None
        if not (isinstance(new_holder, dict) and isinstance(old_holder, dict)):
            continue
        new, old = new_holder.get(leaf), old_holder.get(leaf)
        if isinstance(new, str) and isinstance(old, str) and new != old and _same(box, new, old):
            new_holder[leaf] = old


def keep_unchanged_config(monitor: Monitor, changes: dict[str, object]) -> None:
    """After `keep_unchanged_secrets`: a config that says what the stored one says, spelt
    another way (a default left out or spelt out, keys in another order), keeps the stored one,
    so the write changes nothing it need not (`updated_at`, a round trip's confirmed mailbox)."""
    new = changes.get("config")
    if new is None or _type_after(monitor, changes) != monitor.type:
        return
    if new != monitor.config_as_sent and config_rules.same(
        monitor.type, monitor.config_as_sent, new
    ):
        changes["config"] = monitor.config_as_sent


def _type_after(monitor: Monitor, changes: Mapping[str, object]) -> str:
    """The monitor's type once `changes` are written (a write may change it)."""
    return str(changes.get("type", monitor.type))


def _same(box: SecretBox, a: str, b: str) -> bool:
    """Whether two sealed secrets hold the same value (False when either does not open)."""
    try:
        return hmac.compare_digest(box.open(a).encode(), box.open(b).encode())
    except SecretBoxError:
        return False
