"""How many connections the API holds open: `API_MAX_CONNECTIONS` per replica (kept below the
process's open-files limit) and `API_MAX_CONNECTIONS_PER_ADDRESS` per source address.

The source is the socket's peer, an IPv6 peer counted by its /64 (controller.web.client_block).
A peer in API_TRUSTED_PROXIES carries many clients' requests, so it is held to the replica's cap
only: the proxy bounds each client (deploy/haproxy, the ingress). At the replica's cap a new
connection takes the place of the connection that has waited longest for a request (idle, or
its head not yet whole); with none waiting it is refused.
"""

import ipaddress
import resource
from collections import Counter
from collections.abc import Callable, Iterable
from enum import Enum
from typing import TypeVar

from controller.web.client_block import client_block

# Open files the process keeps for its own work (PostgreSQL and NATS connections, notices
# sent, mailboxes read, logs): the replica's cap stays this far below RLIMIT_NOFILE.
FD_RESERVE = 128


class Admit(Enum):
    YES = "yes"
    ADDRESS_FULL = "address_full"  # its source holds its cap: refused
    REPLICA_FULL = "replica_full"  # the replica holds its cap: another gives way, or refused


def replica_cap(wanted: int, nofile: int | None = None) -> int:
    """API_MAX_CONNECTIONS, lowered to leave FD_RESERVE of the open-files limit (`nofile`:
    RLIMIT_NOFILE's soft limit, read when not given) to the process."""
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, nofile - FD_RESERVE))


class ConnectionCaps:
    """The connections open per source address and in all, for one server."""

    def __init__(self, replica: int, per_address: int, trusted: list[str]) -> None:
        self.replica = replica
        self.per_address = per_address
        self._trusted = [ipaddress.ip_network(net) for net in trusted]
        self._open: Counter[str] = Counter()
        self.total = 0

    def admit(self, source: str) -> Admit:
        """Whether a connection from `source` is taken (counted when it is: `release` it)."""
        block = client_block(source)
        if self._open[block] >= self.per_address and not self._trusted_proxy(source):
            return Admit.ADDRESS_FULL
        if self.total >= self.replica:
            return Admit.REPLICA_FULL
        self._open[block] += 1
        self.total += 1
        return Admit.YES

    def held(self, block: str) -> int:
        """The connections open from `block` (an address as `client_block` names it); 0 for
        none."""
        return self._open.get(block, 0)

    def release(self, source: str) -> None:
        block = client_block(source)
        self._open[block] -= 1
        if self._open[block] <= 0:
            del self._open[block]
        self.total -= 1

    def _trusted_proxy(self, source: str) -> bool:
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(address in net for net in self._trusted)


T = TypeVar("T")


def giving_way(waiting: Iterable[T], held: Callable[[T], int]) -> T | None:
    """The connection that gives way to a new one when the replica is full: of the connections
    `waiting` for a request (the longest waiting first), the first whose address `held` the
    most connections; None when none waits."""
    return max(waiting, key=held, default=None)
