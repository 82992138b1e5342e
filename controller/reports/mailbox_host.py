"""Whether a report mailbox's host may be read, judged when it is set (`PUT /api/report-mailbox`)
by the rules notification channels' endpoints are judged by (controller.notify.endpoint_url,
controller.notify.egress): a DNS name, a dotted-quad IPv4 or an IPv6 address (no numeric
shorthand a resolver reads otherwise), no address that is not public (private, loopback,
link-local or reserved, `shared.addresses.is_blocked`). A name is also looked up, once, and
refused when one of its addresses is not public, so a mailbox the reader would refuse is
refused at once rather than in `lastError` a minute later; a name that does not resolve yet is
accepted (the reader says so). The reader checks again at every connection, on the addresses it
dials. REPORTS_MAILBOX_ALLOW_PRIVATE lifts the address rule (labs and tests)."""

import asyncio
import ipaddress
import socket

from controller.notify import endpoint_url
from shared.addresses import is_blocked

LOOKUP_S = 5.0
ALLOW = "REPORTS_MAILBOX_ALLOW_PRIVATE"


async def problem(host: str, port: int, *, allow_private: bool) -> str | None:
    """What keeps `host` (as `validation.hostname` returns it) from being read, or None."""
    if why := endpoint_url.host_problem(host):
        return f"is {why}"
    if allow_private:
        return None
    try:
        addresses = [str(ipaddress.ip_address(host))]
        said = "is"
    except ValueError:
        addresses, said = await _lookup(host, port), "resolves to"
    blocked = sorted({a for a in addresses if is_blocked(a)})
    if blocked:
        return (
            f"{said} {', '.join(blocked[:3])}, which is not public (private, loopback,"
            f" link-local or reserved; {ALLOW} allows it)"
        )
    return None


async def _lookup(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to; none when it does not (yet)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), LOOKUP_S
        )
    except (OSError, TimeoutError):
        return []
    return [str(i[4][0]) for i in infos]
