"""Every write of a monitor row: create, update (a status change is one), delete.

The native API, the AlertSite-compatible API and the console write monitors only through here
(`apply` goes through the native API), each with a complete write: the request's body of the
write model (`controller.monitors.write_model`), authorized and converted by the surface
before it calls in. `write_values` checks it and turns it into columns, each write in one
transaction that
- for a create: resolves the customer the write names (or the organization's default one),
  admits one more monitor (`fair_use.admit_new_monitor`, under the organization's row lock),
  inserts it;
- for an update: reads the row locked, refuses a write built on a monitor that has changed
  since (`read_at`: `Stale`, so the surface builds it again), clears the due time when the
  interval or status is set (`monitor_change_rules`), refuses a change that moves a stored
  secret the request did not send again (`SecretMoved`: the surface names the fields its
  way), keeps a secret sent again as stored and a config that says what the stored one says
  (`config.same`), resolves a new customer, and writes nothing at all when nothing changes;
- for both: admits the checks, slot-seconds and account logins the write adds
  (`fair_use.admit_checks`; a refusal rolls the write back), naming the request's fields as the
  surface spells them (`budget`: column → field), and the names it lists for the blocklists
  (`fair_use.admit_blocklist_names`);
- for a delete: deletes the row.

The surface reads the monitor first (`get`: another organization's monitor is a 404 before any
403 or 400) and authorizes the caller; nothing here calls back into it. Refusals are
`controller.monitors.errors.Refused`; each surface shows them its own way (JSON, AlertSite's
shape, a page).
"""

import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
import structlog
from msgspec import UNSET, UnsetType

from controller.access import customers_store as customers
from controller.db.pool import Conn
from controller.monitors import change_rules as rules
from controller.monitors import config as config_rules
from controller.monitors import fair_use, kinds, secret_binding, write_values
from controller.monitors import store as monitors
from controller.monitors.errors import NotFound, SecretMoved, Stale, invalid
from controller.monitors.store import Monitor
from controller.monitors.write_model import UPDATES, MonitorCreate, MonitorUpdate
from controller.secrets.box import SecretBox, SecretBoxError
from shared.clock import Clock
from shared.sidechecks.heartbeat_mail import LOOKS_MAX

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Lookup:
    """Which monitor a write is for, as the surface may see it."""

    ident: UUID | int
    types: Sequence[str]
    scope: int | None  # the caller's organization; None: any (a global supporter)
    missing: str = "Not found"  # the surface's words for none (a `NotFound`)


@dataclass(frozen=True)
class MonitorWrites:
    pool: asyncpg.Pool
    box: SecretBox
    limits: fair_use.Limits
    clock: Clock  # a write's `updated_at`; when a flow incident a deletion leaves ends
    token_hosts: Sequence[str] = ()  # OAUTH2_TOKEN_HOSTS: a custom token endpoint's hosts

    async def get(self, lookup: Lookup) -> Monitor:
        """The monitor a write is for, as it is now (the surface's 404 when there is none)."""
        async with self.pool.acquire() as conn:
            return await _get(conn, lookup, for_update=False)

    async def create(
        self,
        organization_id: int,
        write: MonitorCreate,
        *,
        budget: Mapping[str, str],
        default_customer: str | None = None,
    ) -> Monitor:
        """Insert the monitor `write` asks for (checked before the customer is resolved) within
        fair use; `default_customer`: the write names none, and the monitor goes to the
        organization's default customer of that name, created with it on first use."""
        values = write_values.create_values(write, self.box, self.token_hosts)
        org, lim = organization_id, self.limits
        async with self.pool.acquire() as conn, conn.transaction():
            await _dependencies(conn, org, values.get("depends_on"), None)
            values["customer_id"] = (
                await _customer(conn, write.customer_id, org)
                if default_customer is None
                else await customers.default_for(conn, org, default_customer)
            )
            await fair_use.admit_new_monitor(conn, lim, org)
            monitor = await monitors.insert(conn, org, values, self.clock.now())
            await fair_use.admit_checks(
                conn, lim, org, monitor.id, fair_use.NOTHING, rules.creating(budget)
            )
            listed = fair_use.listed_names(monitor.reputation)
            await fair_use.admit_blocklist_names(conn, lim, org, frozenset(), listed)
        log.info("monitor created", monitor=str(monitor.public_id), organization=org)
        return monitor

    async def update(
        self,
        lookup: Lookup,
        write: MonitorUpdate,
        *,
        budget: Mapping[str, str],
        read_at: datetime | None = None,
    ) -> Monitor:
        """Apply `write` to the monitor; the monitor as it is afterwards (unchanged, and not
        written, when the write changes nothing). `read_at`: the `updated_at` of the monitor
        the write was built from, when it was (`Stale` if it has changed since)."""

        def columns(monitor: Monitor) -> write_values.Json:
            return write_values.update_values(write, monitor, self.box, self.token_hosts)

        customer = write.customer_id
        return await self._update(lookup, columns, budget, read_at, customer)

    async def set_status(self, lookup: Lookup, status: str, budget: Mapping[str, str]) -> Monitor:
        """Pause (`disabled`), resume (`active`) or hold (`maintenance`) the monitor: an
        update of its status alone (the monitor's other values are not checked again)."""

        def columns(monitor: Monitor) -> write_values.Json:
            update = UPDATES[kinds.of_type(monitor.type)]
            return write_values.common_values(update(status=status))

        return await self._update(lookup, columns, budget, None, UNSET)

    async def _update(
        self,
        lookup: Lookup,
        columns_of: Callable[[Monitor], write_values.Json],
        budget: Mapping[str, str],
        read_at: datetime | None,
        customer: int | str | UnsetType,
    ) -> Monitor:
        async with self.pool.acquire() as conn, conn.transaction():
            monitor = await _get(conn, lookup, for_update=True)
            if read_at is not None and monitor.updated_at != read_at:
                raise Stale("the monitor changed while this write was made; send it again")
            changes = rules.with_due_reset(columns_of(monitor))
            stored = monitors.stored_values(monitor)
            moved = secret_binding.moved_each(
                secret_binding.Target.of(stored), secret_binding.Target.of({**stored, **changes})
            )
            if moved:
                raise SecretMoved(_type_after(monitor, changes), moved)
            keep_unchanged_secrets(monitor, changes, self.box)
            keep_unchanged_config(monitor, changes)
            org, lim = monitor.organization_id, self.limits
            if not isinstance(customer, UnsetType):
                changes["customer_id"] = await _customer(conn, customer, org)
            if rules.changes_nothing(stored, changes):
                return monitor
            await _dependencies(conn, org, changes.get("depends_on"), monitor.public_id)
            before = await fair_use.checks_of(conn, lim, org, monitor.id)
            updated = await monitors.update(conn, monitor.id, changes, self.clock.now())
            fields = fair_use.budget_fields(changes, budget)
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

    async def insert_row(
        self, organization_id: int, customer: int | str, values: Mapping[str, object]
    ) -> Monitor:
        """Insert a monitor whose columns the caller built and checked (a heartbeat monitor:
        controller.monitors.heartbeats), within fair use; `customer` by id or public UUID."""
        org = organization_id
        async with self.pool.acquire() as conn, conn.transaction():
            customer_id = await _customer(conn, customer, org)
            await _mailbox(conn, org, values.get("config"), None)
            await fair_use.admit_new_monitor(conn, self.limits, org)
            monitor = await monitors.insert(
                conn, org, {**values, "customer_id": customer_id}, self.clock.now()
            )
        log.info("monitor created", monitor=str(monitor.public_id), organization=org)
        return monitor

    async def update_row(
        self, lookup: Lookup, changes: Mapping[str, object], read_at: datetime
    ) -> Monitor:
        """Write the columns the caller built from the monitor as it read it at `read_at` (a
        heartbeat monitor's, which run no checks and hold no secrets); `Stale` if it has
        changed since."""
        async with self.pool.acquire() as conn, conn.transaction():
            monitor = await _get(conn, lookup, for_update=True)
            if monitor.updated_at != read_at:
                raise Stale("the monitor changed while this write was made; send it again")
            values = dict(changes)
            if rules.changes_nothing(monitors.stored_values(monitor), values):
                return monitor
            await _mailbox(conn, monitor.organization_id, values.get("config"), monitor.public_id)
            updated = await monitors.update(conn, monitor.id, values, self.clock.now())
        log.info("monitor updated", monitor=str(monitor.public_id), columns=sorted(values))
        return updated

    async def delete(self, lookup: Lookup) -> None:
        """Delete the monitor; a flow incident it was the last open outage of ends."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                monitor = await _get(conn, lookup, for_update=True)
                await monitors.delete(conn, monitor.id)
            async with conn.transaction():
                await monitors.end_flows_gone(conn, monitor.organization_id, self.clock.now())
        log.info("monitor deleted", monitor=str(monitor.public_id))


async def _customer(conn: Conn, ident: int | str, org: int) -> int:
    """The organization's customer the write names by id or public UUID."""
    parsed = customers.parse_ident(ident)
    if parsed is None:
        raise invalid("customerId", "Invalid Customer identifier", "invalid_customer_id")
    found = await customers.find(conn, parsed, org)
    if found is None:
        raise NotFound("Customer not found", code="customer_not_found", fields=["customerId"])
    return found.id


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


MAILBOX_FIELD = "heartbeatConfig.mailboxMonitorId"


async def _mailbox(conn: Conn, org: int, config: object, own: UUID | None) -> None:
    """A heartbeat's `mailboxMonitorId` names an IMAP, POP3 or round-trip monitor of the
    organization that fewer than LOOKS_MAX other heartbeats read (a 400 naming the field,
    never a hint of another organization's monitors)."""
    named = config.get("mailboxMonitorId") if isinstance(config, Mapping) else None
    if not named:
        return
    try:
        public_id = UUID(str(named))
    except ValueError:
        raise invalid(MAILBOX_FIELD, "not a monitor id (a UUID)") from None
    found = await monitors.mailbox_of(conn, org, public_id, own)
    if found is None:
        raise invalid(MAILBOX_FIELD, f"no monitor of the organization has the id {public_id}")
    if found.type not in kinds.MAILBOX_TYPES:
        raise invalid(
            MAILBOX_FIELD,
            f"a {found.type} monitor reads no mailbox: name an IMAP/POP or round-trip monitor",
        )
    if found.readers >= LOOKS_MAX:
        raise invalid(
            MAILBOX_FIELD, f"{LOOKS_MAX} heartbeats already read that monitor's mailbox, the most"
        )


async def _get(conn: Conn, lookup: Lookup, *, for_update: bool) -> Monitor:
    found = await monitors.get(
        conn, lookup.ident, lookup.types, lookup.scope, for_update=for_update
    )
    if found is None:
        raise NotFound(lookup.missing)
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
