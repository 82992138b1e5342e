"""The side checks that store their facts their own way, by name (the others keep one row per
job in their table: controller.sidechecks.facts_store). A store takes the facts that arrived in
the results' transaction. Apart from the registry so that the registry stays pure (the
planner's rules read it). A store returns how many results' facts it took (a redelivered
result's are not: they are counted once)."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from controller.db.pool import Conn
from controller.sidechecks.blocklists import store as blocklists
from controller.sidechecks.frame import Arrived
from controller.sidechecks.readiness import store as readiness_store

Facts = Sequence[Arrived[Any]]
Store = Callable[[Conn, Facts], Awaitable[int]]
Keeper = Callable[[Conn, Facts], Awaitable[None]]

STORES: Final[dict[str, Store]] = {
    # answers per list, name and country (shared by every organization), names per monitor
    "blocklists": blocklists.record,
}

# The side checks that keep their rows and more beyond them, by name: called with the facts that
# arrived, in the results' transaction, before their rows are written, so what a keeper adds to
# them (what changed since an earlier round, since when a key is published) is stored and
# judged with them.
KEEPERS: Final[dict[str, Keeper]] = {"readiness": readiness_store.keep}
