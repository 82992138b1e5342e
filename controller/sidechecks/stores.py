"""The side checks that store their facts their own way, by name (the others keep one row per
job in their table: controller.sidechecks.facts_store). A store takes the facts that arrived in
the results' transaction. Apart from the registry so that the registry stays pure (the
planner's rules read it)."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from controller.db.pool import Conn
from controller.sidechecks.blocklists import store as blocklists
from controller.sidechecks.frame import Arrived

Store = Callable[[Conn, Sequence[Arrived[Any]]], Awaitable[None]]

STORES: Final[dict[str, Store]] = {
    # answers per list, name and country (shared by every organization), names per monitor
    "blocklists": blocklists.record,
}
